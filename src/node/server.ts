/**
 * The Node runtime: HTTP on the main thread, the engine in a worker thread (src/node/runner-worker.ts) with its
 * own connection. Used by `npm start` (src/node.ts) and `npm run demo` (src/cli/demo.ts).
 *
 * The main thread owns a second client for the small things: start-up checks and registration, snapshot
 * reads when the worker has published nothing fresh (idle), and control writes. The worker publishes
 * snapshots by message; control routes write through the main client and then ask the worker to refresh;
 * `/api/tick` and dry-runs are forwarded to the worker, so no long statement ever runs on the HTTP thread.
 */
import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import { hostname } from "node:os";
import { Worker } from "node:worker_threads";
import { serve } from "@hono/node-server";
import { createApp } from "../app.ts";
import type { ServiceConfig } from "../config.ts";
import type { DryRunOptions, DryRunReport } from "../engine/controls.ts";
import { createControls, createRunner } from "../engine/engine.ts";
import { classifyError } from "../engine/errors.ts";
import type { SliceResult } from "../engine/runner.ts";
import { SchedulerStoppedError } from "../engine/scheduler.ts";
import { StateStore } from "../engine/state-store.ts";
import { fleetStatus } from "../fleet/fleet.ts";
import { FleetViewCache } from "../fleet/view.ts";
import { type MigrationDefinition, resolveMigration } from "../migrations/define.ts";
import { buildSnapshot, type Snapshot, SnapshotCache } from "../progress/snapshot.ts";
import { appConfig } from "../routes/deps.ts";
import { type Env, SETTINGS_VARIABLES } from "../settings.ts";
import { loadNodeConfig } from "./config.ts";
import { databaseConfig, openDatabase } from "./database.ts";
import { readFleetFile, tenantOpener } from "./fleet.ts";
import type { FromWorker, ToWorker, WorkerConfig } from "./protocol.ts";

export interface NodeServerOptions {
  /** Default: `process.env`. Read by src/settings.ts, as on every runtime. */
  readonly env?: Env;
  /** A migrations file in place of `TRICKLE_CONFIG` (src/node/config.ts). */
  readonly configFile?: string;
  /** Stop gracefully and exit 0 on SIGTERM/SIGINT. */
  readonly handleSignals?: boolean;
  /** One line per state change. Default: stdout. */
  readonly log?: (line: string) => void;
  /** The engine worker died, or stopping failed. Default: log and exit 1. */
  readonly onFatal?: (message: string) => void;
}

export interface NodeServer {
  readonly port: number;
  /** `http://localhost:<port>/`, the status page. */
  readonly url: string;
  /** Stops serving, stops the engine (in-flight step finishes, lease released), closes the clients. */
  stop(): Promise<void>;
}

/** How long `stop()` waits for the worker before terminating it (a step is ~35 ms; this is a safety net). */
const WORKER_STOP_TIMEOUT_MS = 10_000;

export async function startNodeServer(options: NodeServerOptions = {}): Promise<NodeServer> {
  const env = options.env ?? process.env;
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  // Every setting and every migration definition is checked here, before anything is opened or written.
  const config = await loadNodeConfig(env, { configFile: options.configFile });
  const database = databaseConfig(config);
  const fleet = fleetView(config);

  const client = await openDatabase(database);
  try {
    // Static problems in a definition (a key that is not an integer…) stop the start here, before serving.
    const runner = createRunner({ client, settings: config, migrations: config.migrations });
    await retryTransient(() => runner.init(), START_UP_RETRY_MS);
  } catch (error) {
    const classified = classifyError(error);
    if (classified.kind !== "transient") {
      client.close();
      throw error;
    }
    // Still locked or unreachable (a remote database starting): serve anyway. /api/healthz answers 503 with the
    // reason until the state can be read, and the engine worker retries init() every tick.
    log(`trickle: database not reachable at start-up, serving 503 until it is: ${classified.message}`);
  }

  const names = config.migrations.map((m) => m.name);
  const store = new StateStore(client);
  let fromWorker: Snapshot | undefined;
  const snapshots = new SnapshotCache({
    ttlMs: config.snapshotTtlMs,
    // While the worker is idle it publishes nothing; read here, keeping the activity it last sent.
    read: async () =>
      buildSnapshot(await store.list(), {
        names,
        takenAt: Date.now(),
        stuckAfterMs: config.stuckAfterMs,
        activity: fromWorker?.activity,
      }),
  });

  let fatal: ((message: string) => void) | undefined;
  const engine = new EngineWorker(
    {
      // The worker loads the same settings from the same variables (the defaults the caller passed included).
      env: Object.fromEntries(
        SETTINGS_VARIABLES.flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]]])),
      ),
      configFile: options.configFile,
      migrationNames: names,
      owner: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
    },
    {
      onSnapshot: (snapshot) => {
        fromWorker = snapshot;
        snapshots.publish(snapshot);
      },
      log,
      onUnexpectedExit: (code) => fatal?.(`trickle: the engine worker exited unexpectedly (code ${code})`),
    },
  );

  const controls = createControls({
    client,
    settings: config,
    migrations: config.migrations,
    source: "http",
    onChange: () => {
      snapshots.invalidate();
      engine.refresh();
    },
    dryRun: (name, options) => engine.dryRun(name, options),
  });

  const app = createApp({
    config: appConfig(config),
    snapshots,
    controls,
    tick: (budgetMs) => engine.tick(budgetMs),
    ...(fleet ? { fleet } : {}),
  });

  let server: Server;
  let port: number;
  try {
    ({ server, port } = await listen(app.fetch, config.port));
  } catch (error) {
    await engine.stop();
    client.close();
    throw error;
  }
  const url = `http://localhost:${port}/`;
  log(`trickle: serving on ${url} (migrations: ${names.join(", ") || "none"})`);
  await hintMissingTables(store, config.migrations, log);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      // Stop accepting first; requests in progress still get their answers from the main client.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await engine.stop();
      client.close();
      await Promise.race([closed, delay(1000)]);
      server.closeAllConnections();
    })();
    return stopping;
  };

  fatal =
    options.onFatal ??
    ((message) => {
      log(message);
      void stop().finally(() => process.exit(1));
    });

  if (options.handleSignals) {
    const onSignal = (signal: NodeJS.Signals) => {
      log(`trickle: ${signal} received; finishing the step in flight and releasing leases`);
      stop().then(
        () => {
          log("trickle: stopped");
          process.exit(0);
        },
        (error: unknown) => {
          log(`trickle: stopping failed: ${(error as Error)?.message ?? String(error)}`);
          process.exit(1);
        },
      );
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }

  return { port, url, stop };
}

/** Fleet reads open every tenant: at most one per this long, however often the page asks. */
const FLEET_MIN_TTL_MS = 5_000;

/** `/api/fleet`'s source when `TRICKLE_FLEET_DATABASES` names a fleet file (read and checked at start-up). */
function fleetView(config: ServiceConfig): FleetViewCache | undefined {
  const path = config.fleetDatabases;
  if (path === undefined) return undefined;
  let urls: string[];
  try {
    urls = readFleetFile(path);
  } catch (error) {
    throw new Error(`TRICKLE_FLEET_DATABASES ${path}: ${(error as Error).message}`);
  }
  const open = tenantOpener(config);
  const names = config.migrations.map((m) => m.name);
  return new FleetViewCache({
    read: () => fleetStatus({ urls, open, names }),
    ttlMs: Math.max(config.snapshotTtlMs, FLEET_MIN_TTL_MS),
  });
}

/** How long an idle keep-alive connection stays open, ms (what load balancers commonly expect: 60 s or more). */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

function listen(
  fetch: (request: Request) => Response | Promise<Response>,
  port: number,
): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port }, (info) => {
      server.off("error", reject);
      resolve({ server: server as Server, port: info.port });
    }) as Server;
    // Idle keep-alive connections stay open longer than clients keep them (Node's default is 5 s, undici's
    // pool reuses a socket for up to the server's hint minus a second): a client on a busy machine must not
    // send a request on a socket the server is closing at that moment ("other side closed").
    server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1_000;
    server.once("error", reject);
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * Starts the worker thread. Under tsx (`tsx src/node.ts`, as the tests run it) the entry is TypeScript, and on
 * Node 20 the loader that tsx passes through `execArgv` is not yet active when a worker resolves its entry
 * module, so a tiny bootstrap registers tsx's ESM loader inside the worker first and then imports the entry.
 */
function startWorker(entry: URL, config: WorkerConfig): Worker {
  const options = { workerData: config, execArgv: [...process.execArgv] };
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, options);
  const loader = import.meta.resolve("tsx/esm/api");
  const bootstrap = `import(${JSON.stringify(loader)})
    .then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })
    .catch((error) => { console.error(error); process.exit(1); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

/**
 * The worker's entry module, beside this one: `runner-worker.ts` in the sources (development, under tsx), and
 * `runner-worker.js` in the compiled package (`dist/node/`, what `npm start` and the `trickle` bin run).
 */
function workerEntry(): URL {
  const compiled = !new URL(import.meta.url).pathname.endsWith(".ts");
  return new URL(compiled ? "./runner-worker.js" : "./runner-worker.ts", import.meta.url);
}

/** The engine worker seen from the main thread: request/response over messages, and a graceful stop. */
class EngineWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (value: never) => void; reject: (error: Error) => void }>();
  #nextId = 1;
  #stopping = false;
  readonly #exited: Promise<number>;
  readonly #stopped: Promise<void>;

  constructor(
    config: WorkerConfig,
    handlers: {
      onSnapshot: (snapshot: Snapshot) => void;
      log: (line: string) => void;
      onUnexpectedExit: (code: number) => void;
    },
  ) {
    this.#worker = startWorker(workerEntry(), config);
    let markStopped!: () => void;
    this.#stopped = new Promise((resolve) => {
      markStopped = resolve;
    });
    this.#worker.on("message", (message: FromWorker) => {
      switch (message.type) {
        case "snapshot":
          handlers.onSnapshot(message.snapshot);
          return;
        case "log":
          handlers.log(message.line);
          return;
        case "tick-result":
          this.#settle(message.id, message.result);
          return;
        case "dry-run-result":
          this.#settle(message.id, message.report);
          return;
        case "request-failed":
          this.#fail(message.id, message.stopping ? new SchedulerStoppedError() : new Error(message.message));
          return;
        case "stopped":
          markStopped();
          return;
        case "ready":
          return;
      }
    });
    this.#worker.on("error", (error) => handlers.log(`trickle: engine worker error: ${error.message}`));
    this.#exited = new Promise((resolve) => {
      this.#worker.once("exit", (code) => {
        markStopped();
        for (const id of [...this.#pending.keys()]) this.#fail(id, new SchedulerStoppedError());
        if (!this.#stopping) handlers.onUnexpectedExit(code);
        resolve(code);
      });
    });
  }

  tick(budgetMs: number): Promise<SliceResult> {
    return this.#request<SliceResult>((id) => ({ type: "tick", id, budgetMs }));
  }

  dryRun(name: string, options: DryRunOptions): Promise<DryRunReport> {
    // Tuning is the worker runner's own; only plain request options cross the thread boundary.
    const { tuning: _tuning, ...plain } = options;
    return this.#request<DryRunReport>((id) => ({ type: "dry-run", id, name, options: plain }));
  }

  refresh(): void {
    if (!this.#stopping) this.#worker.postMessage({ type: "refresh" } satisfies ToWorker);
  }

  /** Asks the worker to stop and waits for it (terminating it after a timeout). */
  async stop(): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      this.#worker.postMessage({ type: "stop" } satisfies ToWorker);
    }
    const finished = await Promise.race([
      this.#stopped.then(() => true),
      delay(WORKER_STOP_TIMEOUT_MS).then(() => false),
    ]);
    if (!finished) await this.#worker.terminate();
    await Promise.race([this.#exited, delay(1000)]);
  }

  #request<T>(message: (id: number) => ToWorker): Promise<T> {
    if (this.#stopping) return Promise.reject(new SchedulerStoppedError());
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: never) => void, reject });
      this.#worker.postMessage(message(id));
    });
  }

  #settle(id: number, value: unknown): void {
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    pending?.resolve(value as never);
  }

  #fail(id: number, error: Error): void {
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    pending?.reject(error);
  }
}

/** How long start-up retries a locked or unreachable database before serving without it (healthz 503). */
const START_UP_RETRY_MS = 2_000;

/**
 * Runs `operation`, retrying transient errors (a live application holding the write lock at start-up, a remote
 * database restarting) with back-off until `withinMs` has passed; deterministic errors are thrown at once.
 */
async function retryTransient<T>(operation: () => Promise<T>, withinMs: number): Promise<T> {
  const giveUpAt = Date.now() + withinMs;
  for (let delayMs = 25; ; delayMs = Math.min(delayMs * 2, 1_000)) {
    try {
      return await operation();
    } catch (error) {
      if (classifyError(error).kind !== "transient" || Date.now() + delayMs > giveUpAt) throw error;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

/**
 * On a database without the tables its migrations need (a fresh clone's data/trickle.db), says how to get one:
 * the migrations wait quietly otherwise, and a newcomer sees an empty status page. Best effort.
 */
async function hintMissingTables(
  store: StateStore,
  migrations: readonly MigrationDefinition[],
  log: (line: string) => void,
): Promise<void> {
  const tables = [...new Set(migrations.flatMap((m) => resolveMigration(m).requires))];
  const existing = await store.existingTables(tables).catch(() => undefined);
  if (existing === undefined) return;
  const missing = tables.filter((t) => !existing.has(t));
  if (missing.length === 0) return;
  log(
    `trickle: this database has no table ${missing.join(", ")}, so the migrations wait. To watch a backfill: ` +
      "`npm run demo` (a CoreScope-shaped database), or `npm run trickle -- seed` into this one; for your own " +
      'tables, DATABASE_URL and TRICKLE_CONFIG (README "Backfill your own table").',
  );
}
