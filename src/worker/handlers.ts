/**
 * The Cloudflare Workers handlers, built by `createWorker(available)`. The entry (src/worker.ts) only exports
 * `createWorker()` as its default: workerd treats every named export of the main module as an entrypoint, so
 * the factory and its constants live here, where test entries (test/edge/fixtures/) can import them too.
 *
 * - The database is remote libSQL over HTTP (`@libsql/client/web`): Turso, sqld, or any server speaking Hrana.
 *   Each step is one `client.batch(…, "write")`, i.e. one HTTP round trip that holds the write lock only while
 *   the server runs it. Or, when `DATABASE_BINDING` names one, a Cloudflare D1 binding (./d1-client.ts): each
 *   step is then one `db.batch([...])`, fenced like every other. Or, when `TRICKLE_FLEET` lists them, a fleet
 *   of tenant databases, advanced a share at a time by each cron invocation (./fleet-worker.ts).
 * - One service per isolate, created on the first event from the isolate's `env` (bindings do not exist at
 *   module load, and workerd forbids random values and timers outside a handler). The cron isolate and the
 *   isolates serving requests are usually different ones, so each keeps its own snapshot cache: read routes
 *   read `_async_migrations` at most once per `TRICKLE_SNAPSHOT_TTL_MS` per isolate.
 * - `scheduled` (the cron trigger) runs ONE slice of at most `TRICKLE_SLICE_BUDGET_MS` under `ctx.waitUntil`.
 *   Cron invocations on the paid plan may use 30 s of CPU for schedules under an hour (15 min for hourly or
 *   slower ones); the default budget of 15 s of wall time stays well inside that, and a slice spends most of
 *   its time waiting on the network. The free plan allows 10 ms of CPU per invocation: steps are I/O-bound,
 *   but JSON and routing still cost CPU, so keep batches small there (`TRICKLE_STEP_TARGET_MS`) and expect
 *   slices to be cut short.
 * - The runner's lease outlives the slice (`TRICKLE_LEASE_TTL_MS`, default 3 × the budget), so overlapping
 *   cron invocations, a second isolate, or a Node process ticking the same database are fenced off.
 * - User-defined migrations: `TRICKLE_CONFIG` holds the JSON itself (text starting with `{`, or an object in
 *   `[vars]`), since a Worker has no file system to read a path from. See the README, "Backfill your own table".
 * - No timer loop: nothing ticks between cron invocations (a Worker only runs while it handles an event).
 *   `/api/tick` (Bearer `CRON_SECRET`) runs one slice on demand as well.
 *
 * Nothing Node-only is reachable from here (design invariant 9): `wrangler deploy --dry-run` bundles it, and
 * test/edge/bundle.test.ts checks the bundle.
 */
import type { Client } from "@libsql/client";
import type { ExecutionContext, Hono } from "hono";
import { createApp } from "../app.ts";
import { type Env, inlineMigrations, loadConfig, type ServiceConfig } from "../config.ts";
import { moved, type SliceResult } from "../engine/runner.ts";
import type { MigrationDefinition } from "../migrations/define.ts";
import { BUILTIN_MIGRATIONS } from "../migrations/registry.ts";
import { appConfig } from "../routes/deps.ts";
import { PROBLEM_CONTENT_TYPE, problemBody } from "../routes/problem.ts";
import { createService, type Service } from "../service.ts";
import { openD1Client } from "./d1-client.ts";
import { createFleetIsolate, fleetLogLine } from "./fleet-worker.ts";
import { openRemoteClient } from "./remote-client.ts";

/** Slice budget of a cron invocation unless `TRICKLE_SLICE_BUDGET_MS` says otherwise, ms of wall time. */
export const WORKER_SLICE_BUDGET_MS = 15_000;
/** Lease lifetime unless `TRICKLE_LEASE_TTL_MS` says otherwise: a few slice budgets. */
export const WORKER_LEASE_TTL_MS = 45_000;

/** The Workers `ExecutionContext` (`waitUntil`, `passThroughOnException`), as Hono types it. */
export type WorkerContext = ExecutionContext;

/** The parts of the Workers `ScheduledController` this entry uses. */
export interface WorkerScheduledController {
  readonly cron: string;
  readonly scheduledTime: number;
}

/**
 * Bindings: `[vars]` from wrangler.toml and secrets (`wrangler secret put`). Strings are read as the settings
 * (src/settings.ts); `TRICKLE_CONFIG` may also be an object (a `[vars.TRICKLE_CONFIG]` table).
 */
export type WorkerEnv = Readonly<Record<string, unknown>>;

export interface WorkerHandlers {
  fetch(request: Request, env: WorkerEnv, ctx: WorkerContext): Promise<Response>;
  scheduled(controller: WorkerScheduledController, env: WorkerEnv, ctx: WorkerContext): Promise<void>;
}

/**
 * Builds the handlers. `available` is the catalogue `TRICKLE_MIGRATIONS` picks from (default: the built-in
 * migrations); a test entry passes its own.
 */
export function createWorker(available: readonly MigrationDefinition[] = BUILTIN_MIGRATIONS): WorkerHandlers {
  let isolate: IsolateService | undefined;

  /** The isolate's service; a configuration error is thrown again on every event until it is fixed. */
  function serviceFor(env: WorkerEnv): IsolateService {
    isolate ??= buildService(env, available);
    return isolate;
  }

  return {
    async fetch(request, env, ctx) {
      let current: IsolateService;
      try {
        current = serviceFor(env);
      } catch (error) {
        return misconfigured(error);
      }
      return current.app.fetch(request, env, ctx);
    },

    async scheduled(controller, env, ctx) {
      const current = serviceFor(env);
      const work = current.cron(controller);
      // waitUntil keeps the invocation alive until the slice has released its lease; awaiting the same promise
      // makes a failed slice show up as a failed cron event.
      ctx.waitUntil(work);
      await work;
      // Lifecycle webhooks are sent in the background; keep the invocation alive until they are delivered.
      ctx.waitUntil(current.idle());
    },
  };
}

/** What one isolate keeps between events. */
interface IsolateService {
  /** The app the Worker serves, with a tick that suits Workers (see `singleDatabase`). */
  readonly app: Hono;
  /** One cron invocation's work, with its log line. */
  cron(controller: WorkerScheduledController): Promise<void>;
  /** Resolves once background work started by events (webhook deliveries) has ended. */
  idle(): Promise<void>;
}

function buildService(env: WorkerEnv, available: readonly MigrationDefinition[]): IsolateService {
  const vars = withWorkerDefaults(stringBindings(env));
  // No file system here: user-defined migrations come as inline JSON text or as an object binding.
  const config = loadConfig(vars, available, inlineMigrations(env.TRICKLE_CONFIG));
  if (config.fleet !== undefined) {
    const fleet = createFleetIsolate(config, config.fleet);
    return {
      app: fleet.app,
      cron: async (controller) => {
        console.log(fleetLogLine(controller.cron, await fleet.run(undefined, controller.scheduledTime)));
      },
      idle: () => Promise.resolve(),
    };
  }
  return singleDatabase(env, config);
}

/** One database: the D1 binding `DATABASE_BINDING` names, or the remote libSQL database at `DATABASE_URL`. */
function singleDatabase(env: WorkerEnv, config: ServiceConfig): IsolateService {
  const client = openWorkerClient(env, config);
  const service = createService({ client, config });
  // Nothing may run outside an event: workerd drops the timers and I/O a finished event left behind, so a read
  // the publisher started from an event listener as an invocation ended would never settle, and every later
  // refresh would wait on it. Snapshots are published by `runSliceAndPublish` instead, inside the event; the
  // publisher's recorder still keeps the step history the snapshots show.
  service.publisher.stop();
  service.runner.on((event) => service.publisher.recorder.record(event));
  // The service's own app ticks through its scheduler, which shares one AbortSignal among all its slices and
  // lets a tick join a slice already in flight. Neither works across Workers events: workerd refuses to let one
  // event touch a signal (or await I/O) another event created ("Cannot perform I/O on behalf of a different
  // request"). So `/api/tick` here runs a slice of its own in its own request, like the cron handler; a tick
  // that overlaps another slice in the same isolate takes the lease over with a new epoch and the fence stops
  // the older slice.
  const app = createApp({
    config: appConfig(config),
    snapshots: service.snapshots,
    controls: service.controls,
    tick: (budgetMs) => runSliceAndPublish(service, budgetMs),
  });
  return {
    app,
    cron: async (controller) => logSlice(controller, await runSliceAndPublish(service)),
    idle: () => service.hooksIdle(),
  };
}

/** The Worker's database: the D1 binding `DATABASE_BINDING` names, else the remote libSQL `DATABASE_URL`. */
function openWorkerClient(env: WorkerEnv, config: ServiceConfig): Client {
  if (config.databaseBinding !== undefined) return openD1Client(env, config.databaseBinding);
  if (config.databaseUrl === undefined) {
    throw new Error(
      "DATABASE_URL is required on Cloudflare Workers unless DATABASE_BINDING names a D1 binding: a remote libSQL URL such as libsql://<db>-<org>.turso.io",
    );
  }
  return openRemoteClient(config.databaseUrl, config.databaseAuthToken, "Cloudflare Workers");
}

/** One slice, then one state read inside the same event so the isolate's read routes show what it did. */
async function runSliceAndPublish(service: Service, budgetMs?: number): Promise<SliceResult> {
  const result = await service.runner.runSlice(budgetMs);
  service.snapshots.invalidate();
  await service.snapshots.get();
  return result;
}

/** A one-line summary per cron invocation that did something (never per step). */
function logSlice(controller: WorkerScheduledController, result: SliceResult): void {
  if (moved(result) || result.outcomes.some((o) => o.outcome === "failed")) {
    const outcomes = result.outcomes.map((o) => `${o.name}=${o.outcome}`).join(" ");
    console.log(`trickle: cron ${controller.cron}: ${result.steps} steps, ${result.rows} rows; ${outcomes}`);
  }
}

function stringBindings(env: WorkerEnv): Env {
  const vars: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (typeof value === "string") vars[name] = value;
  return vars;
}

/** The Worker's own defaults for the slice budget and lease, where the bindings leave them unset. */
function withWorkerDefaults(vars: Env): Env {
  const unset = (name: string) => (vars[name] ?? "").trim() === "";
  return {
    ...vars,
    ...(unset("TRICKLE_SLICE_BUDGET_MS") ? { TRICKLE_SLICE_BUDGET_MS: String(WORKER_SLICE_BUDGET_MS) } : {}),
    ...(unset("TRICKLE_LEASE_TTL_MS") ? { TRICKLE_LEASE_TTL_MS: String(WORKER_LEASE_TTL_MS) } : {}),
  };
}

function misconfigured(error: unknown): Response {
  // Configuration messages name the variable and never repeat a secret or the database URL.
  const message = error instanceof Error ? error.message : String(error);
  console.error(`trickle: cannot start: ${message}`);
  return new Response(JSON.stringify(problemBody(500, `trickle is misconfigured: ${message}`)), {
    status: 500,
    headers: { "Content-Type": PROBLEM_CONTENT_TYPE },
  });
}
