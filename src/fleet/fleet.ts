/**
 * One backfill across a fleet of tenant databases (design.md, "Beyond one database"). Each tenant keeps its own
 * `_async_migrations`, so each is exactly-once on its own; the fleet's progress is derived from those rows every
 * time, never from a second copy that could disagree. `runFleet` runs the canary tenants first, then the rest
 * in waves of at most `concurrency` tenants; a tenant that fails stops further waves unless the caller chose to
 * continue. A killed fleet run resumes where each tenant stands, because each tenant's row says where that is.
 *
 * Portable: it opens databases through the function it is given and runs each tenant through the engine
 * assembly, so the CLI (src/cli/fleet.ts) and any runtime use the same logic.
 */
import type { Client } from "@libsql/client";
import { createRunner, type EngineSettings } from "../engine/engine.ts";
import { classifyError } from "../engine/errors.ts";
import { moved } from "../engine/runner.ts";
import { StateStore } from "../engine/state-store.ts";
import type { MigrationDefinition } from "../migrations/define.ts";

/** Where a tenant stands, derived from its own `_async_migrations` rows. */
export const TENANT_STATUSES = ["pending", "running", "done", "failed", "unreachable"] as const;
export type TenantStatus = (typeof TENANT_STATUSES)[number];

export interface TenantMigration {
  readonly name: string;
  readonly status: string;
  readonly rowsProcessed: bigint;
  readonly rowsTotal: bigint;
  readonly error: string | null;
  readonly reason: string | null;
}

export interface TenantReport {
  /** The database URL as listed, with any credentials removed. */
  readonly database: string;
  readonly status: TenantStatus;
  /** Why it is failed, unreachable or waiting; null when there is nothing to say. */
  readonly detail: string | null;
  readonly migrations: readonly TenantMigration[];
}

export interface FleetSummary {
  readonly total: number;
  readonly done: number;
  readonly running: number;
  readonly pending: number;
  readonly failed: number;
  readonly unreachable: number;
  /** Tenants a stopped fleet run did not reach. */
  readonly skipped: number;
}

/** Opens one tenant's database; throws when it cannot be reached (the tenant is then `unreachable`). */
export type OpenTenant = (url: string) => Promise<Client>;

/**
 * Parses a fleet file: one database URL per line; blank lines and lines starting with `#` are ignored. Throws an
 * `Error` naming the line for a duplicate or an empty list; URLs are checked by `check` (e.g. the settings'
 * DATABASE_URL rules).
 */
export function parseFleetFile(text: string, check: (url: string) => void): string[] {
  const urls: string[] = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    try {
      check(line);
    } catch (error) {
      throw new Error(`line ${index + 1}: ${(error as Error).message}`);
    }
    if (urls.includes(line)) throw new Error(`line ${index + 1}: ${redact(line)} is listed twice`);
    urls.push(line);
  }
  if (urls.length === 0) throw new Error("lists no database (one URL per line, # starts a comment)");
  return urls;
}

/** A URL without the parts that may carry a secret (user info, query string). */
export function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === "file:") return url.replace(/\?.*$/, "");
    parsed.username = "";
    parsed.password = "";
    parsed.search = "";
    return parsed.toString();
  } catch {
    return url.replace(/\?.*$/, "");
  }
}

/** One tenant's status from its rows of the migrations the fleet runs. */
export async function tenantStatus(
  client: Client,
  database: string,
  names: readonly string[],
): Promise<TenantReport> {
  const store = new StateStore(client);
  const rows = (await store.hasState()) ? (await store.list()).filter((row) => names.includes(row.name)) : [];
  const migrations: TenantMigration[] = names.map((name) => {
    const row = rows.find((r) => r.name === name);
    return {
      name,
      status: row?.status ?? "pending",
      rowsProcessed: row?.rowsProcessed ?? 0n,
      rowsTotal: row?.rowsTotal ?? 0n,
      error: row?.error ?? null,
      reason: row?.reason ?? (row ? null : "not started on this tenant"),
    };
  });
  const failed = migrations.find((m) => m.status === "failed");
  if (failed) return { database, status: "failed", detail: `${failed.name}: ${failed.error}`, migrations };
  if (migrations.every((m) => m.status === "done"))
    return { database, status: "done", detail: null, migrations };
  const running = migrations.some((m) => m.status === "running");
  const waiting = migrations.find((m) => m.reason !== null);
  return {
    database,
    status: running ? "running" : "pending",
    detail: waiting ? `${waiting.name}: ${waiting.reason}` : null,
    migrations,
  };
}

/** The status of every tenant, read-only, at most `concurrency` at a time. */
export async function fleetStatus(options: {
  readonly urls: readonly string[];
  readonly open: OpenTenant;
  readonly names: readonly string[];
  readonly concurrency?: number;
}): Promise<TenantReport[]> {
  return pool(options.urls, options.concurrency ?? 8, async (url) => {
    let client: Client | undefined;
    try {
      client = await options.open(url);
      return await tenantStatus(client, redact(url), options.names);
    } catch (error) {
      return unreachable(url, error);
    } finally {
      client?.close();
    }
  });
}

export interface FleetRunOptions {
  readonly urls: readonly string[];
  readonly open: OpenTenant;
  readonly settings: EngineSettings;
  readonly migrations: readonly MigrationDefinition[];
  /** Tenants run (and finished) before any other; default 1. */
  readonly canary?: number;
  /** Tenants at a time after the canaries; default 4. */
  readonly concurrency?: number;
  /** Go on with further waves after a tenant failed. */
  readonly continueOnError?: boolean;
  /** Run each tenant until nothing runnable is left (default: one slice per tenant). */
  readonly untilDone?: boolean;
  readonly budgetMs?: number;
  /** Lease owner prefix; each tenant's runner gets its own id. */
  readonly owner: string;
  readonly signal?: AbortSignal;
  /** Called as each tenant finishes its part of this run. */
  readonly onTenant?: (report: TenantReport, index: number) => void;
  /** Called when a wave starts: which tenants it runs. */
  readonly onWave?: (wave: number, urls: readonly string[]) => void;
}

export interface FleetRunResult {
  readonly tenants: readonly TenantReport[];
  readonly summary: FleetSummary;
  /** Why further waves were not started, or null. */
  readonly stoppedBecause: string | null;
}

/**
 * Slices in a row that may pass without any step while a tenant keeps meeting transient errors before it counts
 * as unreachable for this run (its state is untouched; the next fleet run tries again).
 */
const MAX_IDLE_SLICES = 50;

export async function runFleet(options: FleetRunOptions): Promise<FleetRunResult> {
  const { urls } = options;
  const canary = Math.min(options.canary ?? 1, urls.length);
  const concurrency = options.concurrency ?? 4;
  // Waves as [first tenant, end): the canaries, then `concurrency` tenants at a time.
  const waves: [number, number][] = canary > 0 ? [[0, canary]] : [];
  for (let i = canary; i < urls.length; i += concurrency)
    waves.push([i, Math.min(i + concurrency, urls.length)]);
  const reports: (TenantReport | undefined)[] = new Array(urls.length);
  let stoppedBecause: string | null = null;
  for (const [wave, [from, to]] of waves.entries()) {
    if (options.signal?.aborted) {
      stoppedBecause = "stopped by a signal";
      break;
    }
    options.onWave?.(wave, urls.slice(from, to));
    const indexes = Array.from({ length: to - from }, (_, i) => from + i);
    const results = await Promise.all(
      indexes.map(async (index) => {
        const report = await runTenant(index, options);
        reports[index] = report;
        options.onTenant?.(report, index);
        return report;
      }),
    );
    const broken = results.find((r) => r.status === "failed" || r.status === "unreachable");
    if (broken && !options.continueOnError && wave < waves.length - 1) {
      stoppedBecause = `${broken.database} is ${broken.status}${wave === 0 && canary > 0 ? " (a canary)" : ""}: ${broken.detail ?? ""}`;
      break;
    }
  }
  const reached = reports.filter((r) => r !== undefined).length;
  const tenants = urls.map(
    (url, i): TenantReport =>
      reports[i] ?? { database: redact(url), status: "pending", detail: "not reached", migrations: [] },
  );
  return { tenants, summary: summarize(tenants, reached), stoppedBecause };
}

async function runTenant(index: number, options: FleetRunOptions): Promise<TenantReport> {
  const url = options.urls[index]!;
  let client: Client;
  try {
    client = await options.open(url);
    await client.execute("SELECT 1"); // a remote client connects lazily: find out now
  } catch (error) {
    return unreachable(url, error);
  }
  try {
    const runner = createRunner({
      client,
      settings: options.settings,
      migrations: options.migrations,
      owner: `${options.owner}-${index}`,
    });
    // No `runner.init()` of its own: each slice prepares the tenant first (state table, registration) and, like
    // any step, backs off and retries on a transient error — an application holding the write lock past the busy
    // timeout must not make a live tenant "unreachable" — while a deterministic one (a read-only database, a bad
    // key) still ends up in the catch below and fails the tenant.
    let idle = 0;
    const tenantAbort = new AbortController();
    const stop = () => tenantAbort.abort();
    options.signal?.addEventListener("abort", stop, { once: true });
    try {
      if (options.untilDone) {
        await runner.runUntilDone({
          ...(options.budgetMs !== undefined ? { budgetMs: options.budgetMs } : {}),
          signal: tenantAbort.signal,
          onSlice: (slice) => {
            idle = !moved(slice) && slice.outcomes.some((o) => o.outcome === "retrying") ? idle + 1 : 0;
            if (idle >= MAX_IDLE_SLICES) tenantAbort.abort();
          },
        });
      } else {
        await runner.runSlice(options.budgetMs ?? runner.tuning.sliceBudgetMs, tenantAbort.signal);
      }
    } finally {
      options.signal?.removeEventListener("abort", stop);
    }
    const report = await tenantStatus(
      client,
      redact(url),
      runner.migrations.map((m) => m.name),
    );
    if (idle >= MAX_IDLE_SLICES) {
      const reason = runner.state().find((s) => s.reason)?.reason ?? "transient errors";
      return { ...report, status: "unreachable", detail: `no progress through ${idle} slices: ${reason}` };
    }
    return report;
  } catch (error) {
    const classified = classifyError(error);
    const status: TenantStatus = classified.kind === "transient" ? "unreachable" : "failed";
    return { database: redact(url), status, detail: classified.message, migrations: [] };
  } finally {
    client.close();
  }
}

function unreachable(url: string, error: unknown): TenantReport {
  return {
    database: redact(url),
    status: "unreachable",
    detail: classifyError(error).message,
    migrations: [],
  };
}

export function summarize(tenants: readonly TenantReport[], reached = tenants.length): FleetSummary {
  const count = (status: TenantStatus) => tenants.filter((t) => t.status === status).length;
  return {
    total: tenants.length,
    done: count("done"),
    running: count("running"),
    pending: count("pending") - (tenants.length - reached),
    failed: count("failed"),
    unreachable: count("unreachable"),
    skipped: tenants.length - reached,
  };
}

/** Maps `items` through `work`, at most `limit` at a time, keeping the order. */
export async function pool<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}
