#!/usr/bin/env node
/**
 * The `trickle` command of the npm package (`bin` in package.json → dist/bin/trickle.js): the compiled CLI,
 * exactly what `npm run trickle -- <cmd>` runs from the sources. The program is src/cli/main.ts.
 */
import "../cli/main.ts";
