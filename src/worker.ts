/**
 * Cloudflare Workers entry (`main` in wrangler.toml): `export default { fetch, scheduled }`.
 *
 * `fetch` serves the shared Hono app; `scheduled` (the cron trigger) runs one time-budgeted slice against the
 * remote libSQL database named by `DATABASE_URL`. How it works and which variables it reads:
 * src/worker/handlers.ts. Nothing else is exported: workerd treats every named export of the main module as an
 * entrypoint.
 */
import { createWorker, type WorkerHandlers } from "./worker/handlers.ts";

// Typed explicitly so the published declarations (JSR's "no slow types", the npm package's .d.ts) name it.
const worker: WorkerHandlers = createWorker();

export default worker;
