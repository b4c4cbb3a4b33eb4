/**
 * One scheduled invocation over a fleet of tenant databases (design.md, "Fleets"), for a cron that cannot run
 * a whole fleet at once: a Cloudflare Worker's cron trigger (src/worker/fleet-worker.ts). `runFleet`
 * (./fleet.ts) drives a fleet to the end from the CLI; this gives every tenant its turn, a bounded piece of
 * work per invocation, and leaves the rest to the next one.
 *
 * An invocation has one budget (the slice budget) and runs at most `concurrency` tenants at a time:
 * 1. It looks at every tenant's own `_async_migrations` (one read each, bounded in time). A tenant whose
 *    migrations are all done costs nothing more; one that cannot be read is reported `unreachable` (or `failed`
 *    for a deterministic error, e.g. a refused token) and skipped, without holding up anybody else.
 * 2. The others take turns, least recently advanced first — by the newest progress time in their own rows,
 *    never started first; ties go to the tenant the caller served least recently (`served`), then to a
 *    rotation that moves with each invocation — so every tenant gets steps over successive invocations, decided
 *    by the tenants' own rows first (any isolate, any invocation sees the same).
 * 3. Each turn is one slice of the tenant's runner, with a share of the budget: the budget × `concurrency`
 *    split evenly over the tenants waiting, but never less than `MIN_SHARE_MS` (a slice needs room for a few
 *    steps), nor more than what is left. A tenant with less work ends early and frees its place for the next
 *    one. A turn starts only while at least half a share is left; the tenants left over are `not-reached` this
 *    time and, being least recently advanced, go first next time.
 * Each tenant is exactly-once on its own, through its lease and fence: an overlapping invocation finds the
 * lease taken (another owner), or takes it over with a new epoch (the same runner) and the fence stops the
 * older slice.
 *
 * Portable: no `node:*` imports.
 */
import type { Client } from "@libsql/client";
import { createRunner, type EngineSettings } from "../engine/engine.ts";
import { classifyError } from "../engine/errors.ts";
import type { Runner, SliceResult } from "../engine/runner.ts";
import { StateStore } from "../engine/state-store.ts";
import type { MigrationDefinition } from "../migrations/define.ts";
import { type OpenTenant, pool, redact } from "./fleet.ts";

/** The smallest share of the budget a tenant's turn gets, ms (or the whole budget, if that is smaller). */
export const MIN_SHARE_MS = 500;

/** What one tenant's turn did in an invocation. */
export type TurnOutcome =
  /** Its slice committed steps, or walked the key until its share was spent. */
  | "advanced"
  /** Every migration is done: nothing to do. */
  | "done"
  /** Its slice ran but made no step: waiting (tables, dependencies, a throttle, another runner's lease). */
  | "waiting"
  /** Its slice met transient errors only; it retries next time. */
  | "retrying"
  /** Its state could not be read (network, timeout): skipped this time. */
  | "unreachable"
  /** A deterministic error (a migration failed, the state cannot be read for good). */
  | "failed"
  /** Its turn did not fit in this invocation's budget. */
  | "not-reached";

export interface TenantTurn {
  /** The database URL as listed, with any credentials removed. */
  readonly database: string;
  readonly outcome: TurnOutcome;
  readonly steps: number;
  readonly rows: bigint;
  /** Pieces of counting or verification its slice ran. */
  readonly pieces: number;
  /** Why it is unreachable, failed, retrying or waiting; null otherwise. */
  readonly detail: string | null;
}

export interface FleetInvocationResult {
  /** One per tenant, in the order the list gives them. */
  readonly tenants: readonly TenantTurn[];
  readonly steps: number;
  readonly rows: bigint;
  readonly pieces: number;
  /** Whether any tenant still has work (or could not be looked at). */
  readonly moreWork: boolean;
  readonly elapsedMs: number;
}

export interface FleetInvocationOptions {
  readonly urls: readonly string[];
  /** Opens a tenant; closed again at the end of the invocation. */
  readonly open: OpenTenant;
  readonly settings: Pick<EngineSettings, "tuning" | "yieldPolicy" | "throttle">;
  readonly migrations: readonly MigrationDefinition[];
  /** Wall time of the whole invocation, ms. */
  readonly budgetMs: number;
  /** Tenants at work at once. */
  readonly concurrency: number;
  /** Lease owner prefix of this invocation's runners (each tenant's runner gets its own id). */
  readonly owner: string;
  /**
   * The runner of a tenant. Default: a new one for this invocation. A caller that keeps tenants between
   * invocations (a Worker isolate: a runner checks its definitions against the database once, on its first
   * slice) gives its own, and `closeClients: false`.
   */
  readonly runnerFor?: (url: string, client: Client, index: number) => Runner;
  /** Whether the clients `open` gave are closed at the end of the invocation. Default true. */
  readonly closeClients?: boolean;
  /**
   * When the caller last gave each tenant (by URL) a turn, wall ms; read to break ties and updated here. A turn
   * that only started its runner leaves no trace in the tenant's rows, and without this the tenants that never
   * advanced could win every tie.
   */
  readonly served?: Map<string, number>;
  /** Moves the rotation that breaks ties (a Worker passes the cron's `scheduledTime`). */
  readonly rotation?: number;
  readonly signal?: AbortSignal;
  /** Monotonic clock, ms. Default `performance.now`. */
  readonly now?: () => number;
}

/** A tenant as the first pass found it. */
interface Look {
  readonly index: number;
  readonly database: string;
  readonly client: Client | undefined;
  /** Undefined while it may run; otherwise why it does not this time. */
  readonly turn: TenantTurn | undefined;
  /** The newest progress time among its unfinished migrations (ISO text), or "" when never advanced. */
  readonly lastAdvance: string;
}

export async function runFleetInvocation(options: FleetInvocationOptions): Promise<FleetInvocationResult> {
  const now = options.now ?? (() => performance.now());
  const began = now();
  const deadline = began + options.budgetMs;
  const names = options.migrations.map((m) => m.name);
  const concurrency = Math.max(1, options.concurrency);
  // Reading a tenant's state may take a quarter of the budget (at least 1 s, at most 10 s): a host that never
  // answers is given up on then, and the turns start.
  const lookTimeoutMs = Math.min(Math.max(options.budgetMs / 4, 1_000), 10_000);
  const looks = await pool(
    options.urls.map((url, index) => ({ url, index })),
    concurrency,
    ({ url, index }) => look(url, index, options.open, names, lookTimeoutMs),
  );
  try {
    const turns = new Map<number, TenantTurn>();
    for (const l of looks) if (l.turn) turns.set(l.index, l.turn);
    const n = options.urls.length;
    const offset = Math.abs(Math.floor((options.rotation ?? 0) / 1000)) % Math.max(1, n);
    const servedAt = (l: Look) => options.served?.get(options.urls[l.index]!) ?? Number.NEGATIVE_INFINITY;
    const rotated = (l: Look) => (l.index - offset + n) % n;
    const waiting = looks
      .filter((l) => l.turn === undefined)
      .sort(
        (a, b) =>
          (a.lastAdvance < b.lastAdvance ? -1 : a.lastAdvance > b.lastAdvance ? 1 : 0) ||
          servedAt(a) - servedAt(b) ||
          rotated(a) - rotated(b),
      );
    const left = Math.max(0, deadline - now());
    const share = Math.min(left, Math.max(MIN_SHARE_MS, (left * concurrency) / Math.max(1, waiting.length)));
    await pool(waiting, concurrency, async (tenant) => {
      const remaining = deadline - now();
      if (options.signal?.aborted || remaining < share / 2) {
        turns.set(tenant.index, turn(tenant.database, "not-reached", null));
        return;
      }
      options.served?.set(options.urls[tenant.index]!, Date.now());
      turns.set(tenant.index, await runTurn(tenant, Math.min(share, remaining), options));
    });
    const tenants = looks.map((l) => turns.get(l.index) ?? turn(l.database, "not-reached", null));
    return {
      tenants,
      steps: tenants.reduce((sum, t) => sum + t.steps, 0),
      rows: tenants.reduce((sum, t) => sum + t.rows, 0n),
      pieces: tenants.reduce((sum, t) => sum + t.pieces, 0),
      moreWork: tenants.some((t) => t.outcome !== "done" && t.outcome !== "failed"),
      elapsedMs: now() - began,
    };
  } finally {
    if (options.closeClients !== false) for (const l of looks) l.client?.close();
  }
}

/** One tenant's first look: open it and read its rows (bounded in time). Never throws. */
async function look(
  url: string,
  index: number,
  open: OpenTenant,
  names: readonly string[],
  timeoutMs: number,
): Promise<Look> {
  const database = redact(url);
  let client: Client | undefined;
  try {
    client = await open(url);
    const store = new StateStore(client);
    const rows = await withTimeout(
      (async () => ((await store.hasState()) ? await store.list() : []))(),
      timeoutMs,
      `no answer within ${Math.round(timeoutMs)} ms`,
    );
    const mine = rows.filter((r) => names.includes(r.name));
    if (names.length > 0 && mine.length === names.length && mine.every((r) => r.status === "done")) {
      return { index, database, client, turn: turn(database, "done", null), lastAdvance: "" };
    }
    // Failed, and nothing else left to run: an operator's turn (`trickle retry` against its URL), not ours.
    const failed = mine.find((r) => r.status === "failed");
    if (
      failed &&
      mine.length === names.length &&
      mine.every((r) => r.status === "done" || r.status === "failed")
    ) {
      const detail = `${failed.name}: ${failed.error ?? "failed"}`;
      return { index, database, client, turn: turn(database, "failed", detail), lastAdvance: "" };
    }
    // The newest trace of work on an unfinished migration: a step or walk piece (progress_at), any fenced write
    // (last_update_at), the start of its run. ISO-8601 UTC text sorts as time does.
    const times = mine
      .filter((r) => r.status !== "done")
      .flatMap((r) => [r.progressAt, r.lastUpdateAt, r.startedAt])
      .filter((t): t is string => t !== null)
      .sort();
    const lastAdvance = mine.length < names.length ? "" : (times.at(-1) ?? "");
    return { index, database, client, turn: undefined, lastAdvance };
  } catch (error) {
    const classified = classifyError(error);
    const outcome = classified.kind === "deterministic" ? "failed" : "unreachable";
    return { index, database, client, turn: turn(database, outcome, classified.message), lastAdvance: "" };
  }
}

/** One slice of the tenant's runner within `budgetMs`. Never throws. */
async function runTurn(tenant: Look, budgetMs: number, options: FleetInvocationOptions): Promise<TenantTurn> {
  const client = tenant.client;
  if (!client) return turn(tenant.database, "unreachable", "not opened");
  try {
    const runner =
      options.runnerFor?.(options.urls[tenant.index]!, client, tenant.index) ??
      createRunner({
        client,
        settings: options.settings,
        migrations: options.migrations,
        owner: `${options.owner}-${tenant.index}`,
      });
    const slice = await runner.runSlice(budgetMs, options.signal);
    const reason = runner.state().find((s) => s.reason)?.reason ?? null;
    return {
      ...turn(tenant.database, outcomeOf(slice), reason),
      steps: slice.steps,
      rows: slice.rows,
      pieces: slice.pieces,
    };
  } catch (error) {
    const classified = classifyError(error);
    return turn(tenant.database, classified.kind === "transient" ? "retrying" : "failed", classified.message);
  }
}

function outcomeOf(slice: SliceResult): TurnOutcome {
  const outcomes = slice.outcomes.map((o) => o.outcome);
  if (outcomes.includes("failed")) return "failed";
  // Steps, or work until the share was spent (counting and verification walk in pieces that are not steps).
  if (slice.steps > 0 || outcomes.includes("budget")) return "advanced";
  if (outcomes.length > 0 && outcomes.every((o) => o === "done")) return "done";
  if (outcomes.includes("retrying")) return "retrying";
  return "waiting";
}

function turn(database: string, outcome: TurnOutcome, detail: string | null): TenantTurn {
  return { database, outcome, steps: 0, rows: 0n, pieces: 0, detail };
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(message), { code: "ETIMEDOUT" })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
