/**
 * The Node server as a library (`import { startNodeServer } from "trickle-backfill/node"`): HTTP on the calling
 * thread, the engine in a worker thread with its own connection, so no step ever runs on the thread that serves
 * requests. This is what `npm start` (src/node.ts) and the Docker image run; embed it to get the same process
 * inside your own program. Node-only (it imports `node:*` and the embedded libSQL client); the portable library
 * is the package's main entry (src/index.ts).
 */
export { loadNodeConfig, readMigrationsConfig } from "./config.ts";
export {
  type DatabaseConfig,
  DEFAULT_DATABASE_URL,
  databaseConfig,
  databaseConfigFromEnv,
  openDatabase,
} from "./database.ts";
export { type NodeServer, type NodeServerOptions, startNodeServer } from "./server.ts";
