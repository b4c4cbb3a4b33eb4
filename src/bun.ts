/**
 * Bun entry: the shared app on `Bun.serve`, ticked by the in-process timer loop (src/engine/scheduler.ts).
 *
 *   bun src/bun.ts
 *
 * Configuration is the same environment as on Node (src/settings.ts; user-defined migrations through
 * `TRICKLE_CONFIG`, src/node/config.ts), and so is the database: `DATABASE_URL`
 * `file:…` (default `file:data/trickle.db`, the embedded libSQL client through Bun's Node-API support) or a
 * remote `libsql://`/`https://` URL. Unlike Node (src/node.ts), the runner is not moved to a worker thread: on an
 * embedded database every step runs on the thread that also serves requests, so keep `TRICKLE_STEP_TARGET_MS`
 * small. SIGTERM/SIGINT stop it gracefully (the step in flight finishes, leases are released, exit 0).
 */
import type { ServiceConfig } from "./config.ts";
import { loadNodeConfig } from "./node/config.ts";
import { databaseConfig, openDatabase } from "./node/database.ts";
import { createService } from "./service.ts";

/** The parts of the `Bun` namespace this entry uses (typed here: the project compiles with Node's types). */
interface BunApi {
  serve(options: { port: number; fetch: (request: Request) => Response | Promise<Response> }): {
    readonly port: number;
    stop(closeActiveConnections?: boolean): Promise<void>;
  };
}

const bun = (globalThis as unknown as { Bun: BunApi }).Bun;

function fail(message: string): never {
  // Configuration errors name the variable; nothing here prints a secret or the database URL.
  process.stderr.write(`trickle: cannot start: ${message}\n`);
  process.exit(1);
}

let config: ServiceConfig;
let client: Awaited<ReturnType<typeof openDatabase>>;
try {
  config = await loadNodeConfig(process.env);
  client = await openDatabase(databaseConfig(config));
} catch (error) {
  fail((error as Error).message);
}
const service = createService({ client, config });
const names = config.migrations.map((m) => m.name);
try {
  await service.start();
} catch (error) {
  fail(`cannot open the migration state: ${(error as Error).message}`);
}

const server = bun.serve({ port: config.port, fetch: service.app.fetch });
console.log(
  `trickle: serving on http://localhost:${server.port}/ (migrations: ${names.join(", ") || "none"})`,
);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log(`trickle: ${signal} received; finishing the step in flight and releasing leases`);
    service
      .stop()
      .then(() => server.stop())
      .then(
        () => {
          client.close();
          console.log("trickle: stopped");
          process.exit(0);
        },
        (error: unknown) => {
          console.error(`trickle: stopping failed: ${(error as Error)?.message ?? String(error)}`);
          process.exit(1);
        },
      );
  });
}
