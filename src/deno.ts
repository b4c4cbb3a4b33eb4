/**
 * Deno entry: the shared app on `Deno.serve`, ticked by an in-process timer loop and by `Deno.cron`.
 *
 *   deno run --unstable-cron --allow-net --allow-env --allow-read --allow-write --allow-ffi src/deno.ts
 *
 * Configuration is the same environment as on Node (src/settings.ts), user-defined migrations (`TRICKLE_CONFIG`: a
 * JSON file, a module, or inline JSON) included, read by the same loader (src/node/config.ts). `DATABASE_URL`:
 * - `file:…` (default `file:data/trickle.db`): the embedded libSQL client, Node's native addon loaded through
 *   Deno's npm compatibility (needs `--allow-ffi`, `--allow-read`, `--allow-write`). Every step then runs on the
 *   thread that also serves requests; keep `TRICKLE_STEP_TARGET_MS` small.
 * - `libsql://`, `https://`, `http://`: `@libsql/client/web`, no native code — the only choice on Deno Deploy,
 *   which has neither a persistent file system nor native addons.
 *
 * Two schedulers drive the same single-flight tick, and the lease fences them against each other and against
 * any other process: the timer loop (src/engine/scheduler.ts) runs slices back to back while the process
 * lives, and `Deno.cron` (unstable, hence `--unstable-cron`; UTC; `TRICKLE_DENO_CRON`, default every minute)
 * wakes the app on Deno Deploy, where an isolate only lives while it has work. A cron run is one slice of
 * `TRICKLE_SLICE_BUDGET_MS`.
 */
import type { Client } from "@libsql/client";
import type { ServiceConfig } from "./config.ts";
import { loadNodeConfig } from "./node/config.ts";
import { createService } from "./service.ts";
import { openRemoteClient } from "./worker/remote-client.ts";

/** The parts of the `Deno` namespace this entry uses (typed here: the project compiles with Node's types). */
interface DenoApi {
  readonly env: { toObject(): Record<string, string> };
  serve(
    options: {
      port: number;
      hostname?: string;
      signal?: AbortSignal;
      onListen?: (address: { hostname: string; port: number }) => void;
    },
    handler: (request: Request) => Response | Promise<Response>,
  ): { readonly finished: Promise<void> };
  /** Resolves when the cron is closed, not when it is registered. */
  cron?: (name: string, schedule: string, handler: () => Promise<void>) => Promise<void>;
  addSignalListener(signal: "SIGINT" | "SIGTERM", handler: () => void): void;
  exit(code?: number): never;
}

const deno = (globalThis as unknown as { Deno: DenoApi }).Deno;

function fail(message: string): never {
  // Configuration errors name the variable; nothing here prints a secret or the database URL.
  console.error(`trickle: cannot start: ${message}`);
  return deno.exit(1);
}

async function openClient(config: ServiceConfig): Promise<Client> {
  const url = config.databaseUrl;
  if (url === undefined || /^file:/i.test(url)) {
    // Imported only for files: the Node entry of @libsql/client loads its native addon as soon as it is imported.
    const { databaseConfig, openDatabase } = await import("./node/database.ts");
    return openDatabase(databaseConfig(config));
  }
  return openRemoteClient(url, config.databaseAuthToken, "Deno");
}

let config: ServiceConfig;
try {
  config = await loadNodeConfig(deno.env.toObject());
} catch (error) {
  fail((error as Error).message);
}
if (typeof deno.cron !== "function") {
  fail('Deno.cron is unavailable: run with --unstable-cron (or set `unstable: ["cron"]` in deno.json)');
}
const cronSchedule = config.denoCron;

let client: Client;
try {
  client = await openClient(config);
} catch (error) {
  fail((error as Error).message);
}
const service = createService({ client, config });
const names = config.migrations.map((m) => m.name);

// Deno Deploy requires crons to be registered while the module is evaluated, before it serves. The promise
// Deno.cron returns settles only when the cron is closed, so it is not awaited.
try {
  deno
    .cron("trickle tick", cronSchedule, async () => {
      // The engine publishes after every slice that moved something.
      await service.tick();
    })
    .catch((error: unknown) =>
      console.error(`trickle: Deno.cron stopped: ${(error as Error)?.message ?? error}`),
    );
} catch (error) {
  fail(`TRICKLE_DENO_CRON: ${(error as Error).message}`);
}

try {
  await service.start();
} catch (error) {
  fail(`cannot open the migration state: ${(error as Error).message}`);
}

const abort = new AbortController();
const server = deno.serve(
  {
    port: config.port,
    signal: abort.signal,
    onListen: ({ port }) =>
      console.log(
        `trickle: serving on http://localhost:${port}/ (migrations: ${names.join(", ") || "none"}; Deno.cron "${cronSchedule}")`,
      ),
  },
  service.app.fetch,
);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  deno.addSignalListener(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log(`trickle: ${signal} received; finishing the step in flight and releasing leases`);
    void service
      .stop()
      .then(() => {
        abort.abort();
        return server.finished;
      })
      .then(
        () => {
          client.close();
          console.log("trickle: stopped");
          deno.exit(0);
        },
        (error: unknown) => {
          console.error(`trickle: stopping failed: ${(error as Error)?.message ?? String(error)}`);
          deno.exit(1);
        },
      );
  });
}
