/**
 * `npm run trickle -- <command>`: seed a CoreScope-shaped database, run and control migrations, inspect them.
 * The program is src/cli/program.ts; this entry only hands it the process's arguments and environment.
 */
import { err } from "./output.ts";
import { main } from "./program.ts";

main(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    err(`trickle: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  },
);
