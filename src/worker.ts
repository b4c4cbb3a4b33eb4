/**
 * Cloudflare Workers entry (`main` in wrangler.toml): `export default { fetch, scheduled }`.
 *
 * `fetch` serves the shared Hono app; `scheduled` (the cron trigger) runs one time-budgeted slice against the
 * remote libSQL database named by `DATABASE_URL`. How it works and which variables it reads:
 * src/worker/handlers.ts. Nothing else is exported: workerd treats every named export of the main module as an
 * entrypoint.
 */
import { createWorker } from "./worker/handlers.ts";

export default createWorker();
