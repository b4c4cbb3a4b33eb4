/**
 * A Worker that advances a fleet of tenant databases (`TRICKLE_FLEET`: one libSQL URL per line, `#` comments,
 * the fleet file's syntax; `DATABASE_AUTH_TOKEN` is every tenant's token) instead of one database.
 *
 * - Each cron invocation is one `runFleetInvocation` (src/fleet/cron.ts): within the slice budget, at most
 *   `TRICKLE_FLEET_CONCURRENCY` tenants at a time, least recently advanced first, each for a share of the
 *   budget; a tenant that cannot be reached is reported and skipped, and holds up nobody else. One log line per
 *   invocation says what every tenant did.
 * - Each tenant's client (`@libsql/client/web`, plain HTTP requests) and runner are kept for the isolate's life,
 *   like the single database's: a runner checks its definitions against its database on its first slice only.
 * - Read routes: `/api/fleet` lists every tenant from its own rows (read at most once per
 *   `FLEET_VIEW_MIN_TTL_MS` per isolate); `/api/healthz`, `/api/perf` and the status page show each migration
 *   added up over the tenants (src/fleet/progress.ts). The control API acts on one database, so it has no
 *   migration here (each name answers 404): pause or tune a tenant with the CLI against its URL.
 * - `/api/tick` (Bearer `CRON_SECRET`) runs one invocation on demand; its outcomes name the tenants.
 *
 * Portable: no `node:*` imports.
 */
import type { Client } from "@libsql/client";
import type { Hono } from "hono";
import { createApp } from "../app.ts";
import type { ServiceConfig } from "../config.ts";
import type { ControlPort } from "../engine/controls.ts";
import { createRunner } from "../engine/engine.ts";
import type { SliceResult } from "../engine/run/slice.ts";
import type { MigrationOutcome, Runner } from "../engine/runner.ts";
import { type FleetInvocationResult, runFleetInvocation, type TurnOutcome } from "../fleet/cron.ts";
import { fleetStatus, type OpenTenant } from "../fleet/fleet.ts";
import { FleetSnapshots } from "../fleet/progress.ts";
import { FleetViewCache } from "../fleet/view.ts";
import { appConfig } from "../routes/deps.ts";
import { openRemoteClient } from "./remote-client.ts";

/** Fleet reads open every tenant: at most one per this long per isolate (as on the Node server). */
export const FLEET_VIEW_MIN_TTL_MS = 5_000;

/** What a fleet Worker's isolate keeps between events. */
export interface FleetIsolate {
  readonly app: Hono;
  /** One invocation over the fleet within `budgetMs` (default: the slice budget). */
  run(budgetMs?: number, rotation?: number): Promise<FleetInvocationResult>;
}

/** Builds the fleet isolate; `config.fleet` lists the tenants (checked by the settings). */
export function createFleetIsolate(config: ServiceConfig, fleet: readonly string[]): FleetIsolate {
  const open: OpenTenant = async (url) =>
    openRemoteClient(url, config.databaseAuthToken, "Cloudflare Workers");
  // Each tenant's client and runner live as long as the isolate, as the single database's do: a runner checks
  // its definitions against its database on its first slice only, and keeps its batch sizing between
  // invocations. The lease owner is this isolate's; an invocation overlapping another one in the same isolate
  // takes a tenant's lease over with a new epoch, and the fence stops the older slice.
  const isolate = crypto.randomUUID();
  const tenants = new Map<string, { readonly client: Client; runner?: Runner }>();
  const openKept: OpenTenant = async (url) => {
    let tenant = tenants.get(url);
    if (!tenant) {
      tenant = { client: await open(url) };
      tenants.set(url, tenant);
    }
    return tenant.client;
  };
  // A turn comes after its tenant was opened through `openKept`, so the tenant is always kept by then.
  const runnerFor = (url: string, client: Client, index: number): Runner => {
    const tenant = tenants.get(url) ?? { client };
    tenant.runner ??= createRunner({
      client,
      settings: config,
      migrations: config.migrations,
      owner: `fleet-${isolate}-${index}`,
    });
    return tenant.runner;
  };
  /** When this isolate last gave each tenant a turn (ties between tenants whose rows show no progress yet). */
  const served = new Map<string, number>();
  const names = config.migrations.map((m) => m.name);
  const view = new FleetViewCache({
    read: () => fleetStatus({ urls: fleet, open, names, concurrency: config.fleetConcurrency }),
    ttlMs: Math.max(config.snapshotTtlMs, FLEET_VIEW_MIN_TTL_MS),
  });
  const run = (budgetMs = config.tuning.sliceBudgetMs, rotation = Date.now()) =>
    runFleetInvocation({
      urls: fleet,
      open: openKept,
      runnerFor,
      closeClients: false,
      served,
      settings: config,
      migrations: config.migrations,
      budgetMs,
      concurrency: config.fleetConcurrency,
      owner: `fleet-${isolate}`,
      rotation,
    });
  const app = createApp({
    config: appConfig(config),
    snapshots: new FleetSnapshots(view, names),
    controls: NO_CONTROLS,
    fleet: view,
    tick: async (budgetMs) => asSlice(await run(budgetMs)),
  });
  return { app, run };
}

/** The one-line summary of an invocation: counts per outcome, then the tenants that need a look. */
export function fleetLogLine(cron: string, result: FleetInvocationResult): string {
  const counts = new Map<TurnOutcome, number>();
  for (const t of result.tenants) counts.set(t.outcome, (counts.get(t.outcome) ?? 0) + 1);
  const summary = [...counts].map(([outcome, n]) => `${n} ${outcome}`).join(", ");
  const trouble = result.tenants
    .filter((t) => t.outcome === "unreachable" || t.outcome === "failed" || t.outcome === "retrying")
    .map((t) => `${t.database} ${t.outcome}: ${t.detail ?? ""}`);
  return (
    `trickle: fleet cron ${cron}: ${result.tenants.length} tenants (${summary}); ${result.steps} steps, ` +
    `${result.rows} rows in ${Math.round(result.elapsedMs)} ms` +
    (trouble.length > 0 ? `; ${trouble.join("; ")}` : "")
  );
}

/** An invocation as `/api/tick` reports a slice: one outcome per tenant, named by its database. */
function asSlice(result: FleetInvocationResult): SliceResult {
  return {
    steps: result.steps,
    rows: result.rows,
    pieces: result.pieces,
    outcomes: result.tenants.map((t) => ({ name: t.database, outcome: TICK_OUTCOMES[t.outcome] })),
    moreWork: result.moreWork,
  };
}

/** The nearest slice outcome of each turn outcome. */
const TICK_OUTCOMES: Readonly<Record<TurnOutcome, MigrationOutcome>> = {
  advanced: "budget",
  done: "done",
  waiting: "waiting",
  retrying: "retrying",
  unreachable: "retrying",
  failed: "failed",
  "not-reached": "stopped",
};

/** The control API of a fleet Worker: no migration of its own (every name is unknown, the list is empty). */
const NO_CONTROLS: ControlPort = {
  names: [],
  definition: () => undefined,
  list: async () => [],
  get: async () => undefined,
  act: async (name) => ({ status: "not-found", name }),
  tune: async (name) => ({ status: "not-found", name }),
  dryRun: async () => undefined,
  failures: async () => undefined,
  retryFailures: async (name) => ({ status: "not-found", name }),
};
