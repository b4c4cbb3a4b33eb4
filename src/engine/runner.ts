/**
 * The runner: one tick = one slice = steps of one or more migrations until the time budget is spent.
 *
 * A slice takes each runnable migration's lease, starts its run if needed (dependencies, prerequisites, frozen
 * bounds), then runs fenced keyset steps sized by the BatchSizer, yielding between them, until the range is
 * covered and verification finds nothing left (→ `done`), the budget would be overrun, or something stops it.
 * Runnable migrations share a slice fairly: each gets its share of what is left of the budget, oldest progress
 * first, and whatever time the others leave unused goes round again.
 *
 * Errors: transient ones back off and retry; a deterministic step error that rows may cause is bisected down to
 * the failing key, which is quarantined (recorded and skipped, in the same batch as the cursor move) while the run
 * goes on — up to a cap, and unless more than half of at least 50 step attempts failed (GitLab's rule); any other
 * deterministic error fails the migration; a lost lease ends its part of the slice. Throttle signals (SQLITE_BUSY
 * rate, a slow probe query, quiet hours) hold a migration back with the reason recorded in its row.
 */
import type { Client } from "@libsql/client";
import {
  checkDependencies,
  type MigrationDefinition,
  type ResolvedMigration,
  resolveMigration,
} from "../migrations/define.ts";
import { BatchSizer } from "./batch-sizer.ts";
import { reopenAfterBusy } from "./busy-recovery.ts";
import { type Clock, systemClock } from "./clock.ts";
import { type ClassifiedError, classifyError, isRowLevelError, LeaseLostError } from "./errors.ts";
import type { RunnerEvent, RunnerEventListener } from "./events.ts";
import { MigrationPlan } from "./plan.ts";
import {
  type Lease,
  type MigrationRow,
  RATE_WINDOW_POINTS,
  StateStore,
  toBigIntOrNull,
} from "./state-store.ts";
import { Throttle, type ThrottleConfig, type ThrottleDecision } from "./throttle.ts";
import { resolveTuning, type Tuning } from "./tuning.ts";
import { DeferredCheckpoints } from "./wal-checkpoint.ts";

export interface RunnerOptions {
  readonly client: Client;
  readonly migrations: readonly MigrationDefinition[];
  /** Lease owner id; default a random one per runner. */
  readonly owner?: string;
  readonly tuning?: Partial<Tuning>;
  readonly clock?: Clock;
  readonly onEvent?: RunnerEventListener;
  /** Runner-wide throttling (busy rate, probe query, quiet hours); definitions may add their own. */
  readonly throttle?: ThrottleConfig;
  /** Wall clock in ms (quiet hours, throttle deadlines, ETA points). Default `Date.now`. */
  readonly wallClock?: () => number;
}

/** How one migration's part of a slice ended. */
export type MigrationOutcome =
  | "budget" // stopped because the next step would overrun the budget
  | "done"
  | "failed"
  | "waiting" // cannot start yet (missing tables)
  | "blocked" // waits for the migrations it depends on
  | "throttled" // a throttle signal holds it back for now
  | "retrying" // transient error; backing off
  | "lease-lost"
  | "leased-elsewhere"
  | "stopped"; // the caller's signal aborted

export interface SliceResult {
  readonly steps: number;
  readonly rows: bigint;
  readonly outcomes: ReadonlyArray<{ readonly name: string; readonly outcome: MigrationOutcome }>;
  /** True while some migration is still runnable (by this runner or another one). */
  readonly moreWork: boolean;
}

/** A throttle as the runner knows it in-process. */
export interface RunnerThrottleState {
  readonly reason: string;
  readonly policy: "backoff" | "hold";
  /** Wall-clock ms. */
  readonly untilMs: number;
}

/** What this runner knows about a migration beyond its row: why it waits, how it is sized. */
export interface RunnerMigrationState {
  readonly name: string;
  readonly reason: string | null;
  readonly attempts: number;
  readonly batchSize: number | null;
  readonly lastStepMs: number | null;
  readonly throttle: RunnerThrottleState | null;
}

interface MutableState {
  reason: string | null;
  attempts: number;
  batchSize: number | null;
  lastStepMs: number | null;
  throttle: RunnerThrottleState | null;
}

/** What one slice knows across migrations: statuses as they change, and outcomes so far. */
interface SliceContext {
  readonly statuses: Map<string, string>;
  readonly outcomes: Map<string, MigrationOutcome>;
}

/** Running totals of one migration's part of a slice. */
interface Work {
  steps: number;
  rows: bigint;
  unrecordedBusyMs: number;
  /** Rows processed plus quarantined, as last seen (for the ETA window); null before the run starts. */
  covered: bigint | null;
  /** The ETA window as of this slice when the run (re)started in it (it starts over), else undefined. */
  window: ReadonlyArray<readonly [number, number]> | undefined;
}

const RUNNABLE = new Set(["pending", "running"]);
const STILL_WORKING: ReadonlySet<MigrationOutcome> = new Set([
  "budget",
  "retrying",
  "lease-lost",
  "leased-elsewhere",
  "stopped",
  "throttled",
]);
/** A point is added to the ETA window at most this often per migration. */
const RATE_POINT_MIN_MS = 1_000;
/** Keys in the first piece of a read-only walk, and the most one piece may cover (time bounds it first). */
const SCAN_INITIAL_PIECE = 1_000;
const SCAN_MAX_PIECE = 1_000_000;
/** Quarantined-row retries one slice may run per migration. */
const RETRIES_PER_SLICE = 100;

export class Runner {
  readonly owner: string;
  readonly tuning: Tuning;
  readonly store: StateStore;
  readonly #client: Client;
  readonly #plans: ReadonlyMap<string, MigrationPlan>;
  readonly #tunings: ReadonlyMap<string, Tuning>;
  readonly #clock: Clock;
  readonly #wallClock: () => number;
  readonly #throttle: Throttle;
  readonly #listeners = new Set<RunnerEventListener>();
  readonly #state = new Map<string, MutableState>();
  #initialized: Promise<void> | undefined;
  /** WAL checkpoints outside the steps of a slice, on a local file (wal-checkpoint.ts). */
  readonly #checkpoints: DeferredCheckpoints;

  constructor(options: RunnerOptions) {
    this.#client = reopenAfterBusy(options.client);
    this.store = new StateStore(this.#client);
    this.#checkpoints = new DeferredCheckpoints(this.#client);
    this.owner = options.owner ?? `runner-${crypto.randomUUID()}`;
    this.tuning = resolveTuning(options.tuning);
    this.#clock = options.clock ?? systemClock;
    this.#wallClock = options.wallClock ?? Date.now;
    const plans = new Map<string, MigrationPlan>();
    for (const definition of options.migrations) {
      const resolved = resolveMigration(definition);
      if (plans.has(resolved.name)) throw new Error(`migration ${resolved.name} is registered twice`);
      plans.set(resolved.name, new MigrationPlan(resolved));
    }
    checkDependencies([...plans.values()].map((p) => p.migration));
    this.#plans = plans;
    this.#tunings = new Map(
      [...plans].map(([name, plan]) => [name, resolveTuning(this.tuning, plan.migration.tuning)]),
    );
    this.#throttle = new Throttle({
      config: options.throttle ?? {},
      migrations: [...plans.values()].map(({ migration: m }) => ({
        name: m.name,
        quietHours: m.quietHours,
        ...(m.probe ? { probe: m.probe } : {}),
      })),
      now: () => this.#clock.now(),
      wallNow: this.#wallClock,
    });
    if (options.onEvent) this.#listeners.add(options.onEvent);
  }

  get migrations(): readonly ResolvedMigration[] {
    return [...this.#plans.values()].map((p) => p.migration);
  }

  on(listener: RunnerEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** In-process state per migration (reasons not yet, or not possibly, written to the database). */
  state(): RunnerMigrationState[] {
    return [...this.#plans.keys()].map((name) => ({ name, ...this.#stateOf(name) }));
  }

  /**
   * Checks every definition against the database (a non-integer key is an error here, before anything is
   * written), then creates or upgrades `_async_migrations` and registers the migrations. Idempotent.
   */
  init(): Promise<void> {
    this.#initialized ??= this.#init().catch((error) => {
      this.#initialized = undefined;
      throw error;
    });
    return this.#initialized;
  }

  async #init(): Promise<void> {
    const tables = await this.store.existingTables([...this.#plans.values()].map((p) => p.migration.table));
    for (const plan of this.#plans.values()) {
      if (!tables.has(plan.migration.table)) continue; // it waits for its table; checked again at start
      const problem = await plan.keyProblem(this.#client);
      if (problem) throw new Error(`migration ${plan.migration.name}: ${problem}`);
    }
    await this.store.ensureSchema();
    await this.store.register([...this.#plans.keys()]);
  }

  /** Runs one slice of at most `budgetMs` (default: the tuning's slice budget). */
  async runSlice(budgetMs: number = this.tuning.sliceBudgetMs, signal?: AbortSignal): Promise<SliceResult> {
    const began = this.#clock.now();
    const deadline = began + budgetMs;
    let rows: MigrationRow[];
    try {
      await this.init();
      rows = await this.store.list();
    } catch (thrown) {
      // A locked or unreachable database is a reason to try again next tick, not an error of the tick.
      const error = classifyError(thrown);
      if (error.kind !== "transient") throw thrown;
      const outcomes = [...this.#plans.keys()].map((name) => {
        this.#backoff(name, this.#tunings.get(name)!, error);
        return { name, outcome: "retrying" as const };
      });
      return { steps: 0, rows: 0n, outcomes, moreWork: true };
    }
    try {
      return await this.#runSliceOf(rows, began, deadline, signal);
    } finally {
      await this.#checkpoints.restore();
    }
  }

  async #runSliceOf(
    rows: MigrationRow[],
    began: number,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<SliceResult> {
    const byName = new Map(rows.map((r) => [r.name, r]));
    const ctx: SliceContext = { statuses: new Map(rows.map((r) => [r.name, r.status])), outcomes: new Map() };
    const order = rows
      .filter((row) => this.#plans.has(row.name) && RUNNABLE.has(row.status))
      // Oldest progress first, so migrations sharing ticks take turns.
      .sort((a, b) => (a.lastUpdateAt ?? "").localeCompare(b.lastUpdateAt ?? ""))
      .map((row) => row.name);
    let steps = 0;
    let processed = 0n;
    let queue = order;
    for (let round = 0; queue.length > 0; round++) {
      const again: string[] = [];
      for (const [i, name] of queue.entries()) {
        const now = this.#clock.now();
        if (signal?.aborted || now >= deadline) {
          if (round === 0) ctx.outcomes.set(name, signal?.aborted ? "stopped" : "budget");
          continue;
        }
        // Fair share: what is left of the slice, split among the migrations still to go in this round; time
        // one of them leaves unused goes to the next, and a second round hands out what is left after that.
        const share = now + (deadline - now) / (queue.length - i);
        const row = round === 0 ? byName.get(name)! : { ...byName.get(name)!, status: "running" };
        const result = await this.#runMigration(this.#plans.get(name)!, row, began, share, signal, ctx);
        steps += result.steps;
        processed += result.rows;
        ctx.outcomes.set(name, result.outcome);
        if (result.outcome === "done" || result.outcome === "failed") ctx.statuses.set(name, result.outcome);
        if (result.outcome === "budget" && result.steps > 0) again.push(name);
      }
      queue = this.#clock.now() < deadline && !signal?.aborted ? again : [];
    }
    const outcomes = order.map((name) => ({ name, outcome: ctx.outcomes.get(name) ?? "budget" }));
    const moreWork = outcomes.some(
      (o) => STILL_WORKING.has(o.outcome) || (o.outcome === "blocked" && this.#canProceed(o.name, ctx)),
    );
    return { steps, rows: processed, outcomes, moreWork };
  }

  /** Runs slices back to back until no runnable work is left (waiting or paused migrations are not runnable). */
  async runUntilDone(
    options: {
      budgetMs?: number;
      signal?: AbortSignal;
      onSlice?: (result: SliceResult) => void;
      idleWaitMs?: number;
    } = {},
  ): Promise<SliceResult[]> {
    const results: SliceResult[] = [];
    while (!options.signal?.aborted) {
      const result = await this.runSlice(options.budgetMs, options.signal);
      results.push(result);
      options.onSlice?.(result);
      if (!result.moreWork) break;
      // Nothing moved (another runner holds the lease, or we are backing off): do not spin. Throttled
      // migrations hold back for seconds or minutes; looking once a second is plenty.
      const idle = options.idleWaitMs ?? 100;
      const onlyThrottled = result.outcomes.every(
        (o) => o.outcome === "throttled" || !STILL_WORKING.has(o.outcome),
      );
      if (result.steps === 0)
        await this.#clock.sleep(onlyThrottled ? Math.max(idle, 1000) : idle, options.signal);
    }
    return results;
  }

  /**
   * Whether a migration blocked on its dependencies may still get to run without an operator: every dependency
   * is done, or running, or pending and able to start itself.
   */
  #canProceed(name: string, ctx: SliceContext, seen = new Set<string>()): boolean {
    if (seen.has(name)) return false;
    seen.add(name);
    const plan = this.#plans.get(name);
    if (!plan) return false;
    return plan.migration.dependsOn.every((dep) => {
      const status = ctx.statuses.get(dep);
      if (status === "done" || status === "running") return true;
      if (status !== "pending") return false;
      const outcome = ctx.outcomes.get(dep);
      if (outcome === "waiting") return false;
      return this.#canProceed(dep, ctx, seen);
    });
  }

  async #runMigration(
    plan: MigrationPlan,
    row: MigrationRow,
    sliceBegan: number,
    sliceDeadline: number,
    signal: AbortSignal | undefined,
    ctx: SliceContext,
  ): Promise<{ outcome: MigrationOutcome; steps: number; rows: bigint }> {
    const m = plan.migration;
    // A throttle decision (this runner's or another's) holds it back: skip it without taking the lease.
    const wallNow = this.#wallClock();
    const heldUntil = parseWallTime(row.throttledUntil);
    const current = this.#stateOf(m.name).throttle;
    if (heldUntil !== null && heldUntil > wallNow && (!current || current.untilMs < heldUntil)) {
      this.#setState(m.name, {
        throttle: {
          reason: row.throttleReason ?? "throttled",
          policy: current?.policy ?? "backoff",
          untilMs: heldUntil,
        },
      });
    }
    const throttle = this.#stateOf(m.name).throttle;
    if (throttle && throttle.untilMs > wallNow) return { outcome: "throttled", steps: 0, rows: 0n };
    if (throttle) this.#setState(m.name, { throttle: null });
    let acquired: Awaited<ReturnType<StateStore["acquireLease"]>>;
    try {
      if (row.status === "pending") {
        // Checked before taking the lease so a migration that waits costs an idle tick no write.
        const blocked = this.#unmetDependencies(m, ctx);
        if (blocked && row.reason === blocked) {
          this.#setState(m.name, { reason: blocked });
          return { outcome: "blocked", steps: 0, rows: 0n };
        }
        const missing = blocked ? undefined : await this.#missingTables(m);
        if (missing && row.reason === missing) {
          this.#setState(m.name, { reason: missing });
          return { outcome: "waiting", steps: 0, rows: 0n };
        }
      }
      acquired = await this.store.acquireLease(m.name, this.owner, this.tuning.leaseTtlMs);
    } catch (thrown) {
      const error = classifyError(thrown);
      if (error.kind !== "transient") throw thrown;
      this.#backoff(m.name, this.#tunings.get(m.name)!, error);
      // Not even the lease could be taken: that counts towards the busy rate as much as a failed step.
      this.#throttle.recordAttempt(m.name, error.code);
      const busy = this.#throttle.busyDecision(m.name);
      if (busy) {
        this.#holdInProcess(m.name, busy);
        return { outcome: "throttled", steps: 0, rows: 0n };
      }
      return { outcome: "retrying", steps: 0, rows: 0n };
    }
    if (!acquired) return { outcome: "leased-elsewhere", steps: 0, rows: 0n };
    const { lease } = acquired;
    const tuning = this.#tuningFor(m, acquired.row);
    // A live sliceBudgetMs override can only shorten this slice: the caller's budget is a hard limit.
    const deadline = Math.min(sliceDeadline, sliceBegan + tuning.sliceBudgetMs);
    const sizer = new BatchSizer(tuning, {
      size: acquired.row.batchSize ?? tuning.initialBatch,
      rate: acquired.row.rate ?? undefined,
    });
    const work: Work = {
      steps: 0,
      rows: 0n,
      unrecordedBusyMs: 0,
      covered: acquired.row.pass > 0 ? acquired.row.rowsProcessed + acquired.row.quarantined : null,
      window: undefined,
    };
    let outcome: MigrationOutcome;
    try {
      outcome = await this.#work(plan, lease, acquired.row, tuning, sizer, deadline, signal, work, ctx);
    } finally {
      await this.store.releaseLease(lease, {
        batchSize: sizer.size,
        rate: sizer.rate,
        busyMs: work.unrecordedBusyMs,
        ...this.#ratePoint(acquired.row, work),
      });
    }
    return { outcome, steps: work.steps, rows: work.rows };
  }

  /** The ETA window with this slice's point added, when there is one to add. */
  #ratePoint(row: MigrationRow, work: Work): { rateWindow?: string } {
    if (work.covered === null) return {};
    const now = this.#wallClock();
    const points = [...(work.window ?? row.rateWindow ?? [])];
    const last = points.at(-1);
    if (last && now - last[0] < RATE_POINT_MIN_MS) return {};
    points.push([now, Number(work.covered)]);
    return { rateWindow: JSON.stringify(points.slice(-RATE_WINDOW_POINTS)) };
  }

  async #work(
    plan: MigrationPlan,
    lease: Lease,
    startRow: MigrationRow,
    t: Tuning,
    sizer: BatchSizer,
    deadline: number,
    signal: AbortSignal | undefined,
    work: Work,
    ctx: SliceContext,
  ): Promise<MigrationOutcome> {
    const m = plan.migration;
    let row = startRow;
    let reload = false;
    /** Keys after the cursor known to hold a row that fails (bisection in progress), or null. */
    let suspect: number | null = null;
    /** Deterministic step failures not yet written to `failed_steps`. */
    let failedAttempts = 0;
    /** A single-key step failed with this error: quarantine that key next. */
    let poison: { error: ClassifiedError; key: bigint } | null = null;
    /** The key of the single-key step in flight, read just before it (so a failure names that very key). */
    let stepKey: bigint | null = null;
    /**
     * Sizes the pieces of the read-only walks (counting, verifying). They only read the table, many times faster
     * per key than a data step, so they start larger and may grow further; time still bounds each piece.
     */
    const scanTuning = {
      ...t,
      initialBatch: Math.max(t.initialBatch, SCAN_INITIAL_PIECE),
      maxBatch: Math.max(t.maxBatch, SCAN_MAX_PIECE),
    };
    const scanSizer = new BatchSizer(scanTuning, { size: scanTuning.initialBatch });
    let retriesDone = false;
    for (;;) {
      if (signal?.aborted) return "stopped";
      let stepSize = 0;
      try {
        if (poison !== null) {
          const { error, key } = poison;
          poison = null;
          const quarantined = await this.#quarantine(plan, lease, row, t, error, key, failedAttempts);
          if (typeof quarantined === "string") return quarantined;
          row = quarantined;
          failedAttempts = 0;
          suspect = suspect !== null && suspect > 1 ? suspect - 1 : null;
          work.covered = row.rowsProcessed + row.quarantined;
          await this.#clock.sleep(t.yieldMs, signal);
          continue;
        }
        if (reload) {
          // The failed attempt may have committed with its answer lost (a dropped connection, a 5xx after
          // COMMIT): continue from the stored row, never from memory, or that range would be applied twice.
          const fresh = await this.store.get(m.name);
          if (!fresh || fresh.leaseOwner !== lease.owner || fresh.leaseEpoch !== lease.epoch) {
            throw new LeaseLostError(m.name);
          }
          row = fresh;
          reload = false;
        }
        const throttled = await this.#throttleCheck(plan, lease);
        if (throttled) return "throttled";
        if (row.status === "pending") {
          const started = await this.#startRun(plan, lease, row, t, sizer, ctx);
          if (typeof started === "string") return started;
          row = started;
          work.covered = 0n;
          work.window = started.rateWindow ?? [];
          continue;
        }
        // Only a migration with unresolved quarantined rows can have retries waiting (it costs one read).
        if (!retriesDone && row.quarantined > 0n) {
          retriesDone = true;
          const retried = await this.#retryQuarantined(plan, lease, row, deadline, sizer, signal);
          if (typeof retried === "string") return retried;
          row = retried;
          work.covered = row.rowsProcessed + row.quarantined;
        }
        if (row.phase === "counting") {
          const counted = await this.#scan(plan, lease, row, "counting", scanSizer, deadline);
          if (typeof counted === "string") return counted;
          row = counted;
          continue;
        }
        const { minKey, maxKey } = row;
        if (minKey === null || maxKey === null || (row.cursor !== null && row.cursor >= maxKey)) {
          if (row.phase !== "verifying" && row.maxKey !== null && plan.verifies) {
            await this.store.startVerifying(lease);
            row = { ...row, phase: "verifying", scanCursor: null, scanCount: 0n, scanEnd: row.maxKey };
            continue;
          }
          if (row.phase === "verifying" && row.scanCursor !== row.scanEnd) {
            const verified = await this.#scan(plan, lease, row, "verifying", scanSizer, deadline);
            if (typeof verified === "string") return verified;
            row = verified;
            continue;
          }
          const residual = row.phase === "verifying" ? row.scanCount : 0n;
          const finished = await this.#finishPass(plan, lease, row, residual, work, failedAttempts);
          if (typeof finished === "string") return finished;
          failedAttempts = 0;
          row = finished;
          continue;
        }
        let size = sizer.sizeWithin(deadline - this.#clock.now());
        if (size === 0) return "budget"; // never start a step expected to overrun the budget (invariant 5)
        if (suspect !== null) {
          // Bisecting: the first half of the suspect keys, down to a single key.
          size = Math.min(size, suspect > 1 ? Math.ceil(suspect / 2) : 1);
          this.#emit({ type: "bisecting", name: m.name, suspect, size });
        }
        const busyMs = work.unrecordedBusyMs;
        const start = { cursor: row.cursor, minKey, maxKey, pass: row.pass };
        stepKey = null;
        if (size === 1) {
          // A single key may be quarantined if it fails: name it before the step, so the record is that key.
          const next = await this.#client.execute(plan.rangeEndStatement(start, 1));
          stepKey = toBigIntOrNull(next.rows[0]?.k) ?? maxKey;
        }
        const { statements, progressIndex } = plan.stepStatements(
          this.store,
          lease,
          start,
          size,
          busyMs,
          failedAttempts,
          stepKey ?? undefined,
        );
        stepSize = size;
        await this.#checkpoints.beforeStep();
        const began = this.#clock.now();
        const results = await this.#client.batch(statements, "write");
        const durationMs = this.#clock.now() - began;
        stepSize = 0;
        const progress = results[progressIndex]?.rows[0];
        const cursor = toBigIntOrNull(progress?.cursor);
        const rowsProcessed = toBigIntOrNull(progress?.rows_processed);
        if (cursor === null || rowsProcessed === null) throw new LeaseLostError(m.name); // the row vanished
        const rows = rowsProcessed - row.rowsProcessed;
        row = {
          ...row,
          cursor,
          rowsProcessed,
          steps: row.steps + 1n,
          failedSteps: row.failedSteps + BigInt(failedAttempts),
        };
        failedAttempts = 0;
        if (suspect !== null) suspect = suspect - size > 0 ? suspect - size : null;
        work.steps++;
        work.rows += rows;
        work.covered = rowsProcessed + row.quarantined;
        work.unrecordedBusyMs = durationMs; // the previous unrecorded time went into this step's progress update
        this.#throttle.recordAttempt(m.name);
        sizer.observe(size, durationMs);
        this.#setState(m.name, { reason: null, attempts: 0, batchSize: sizer.size, lastStepMs: durationMs });
        this.#emit({
          type: "step",
          name: m.name,
          batchSize: size,
          rows,
          cursor,
          rowsProcessed,
          durationMs,
          nextBatchSize: sizer.size,
        });
        // The log the step wrote is copied back outside the step, then writers get the whole yield: a yield
        // shortened by the checkpoint's time starved the benchmark's ingest (README "Benchmark").
        await this.#checkpoints.afterStep();
        await this.#clock.sleep(t.yieldMs, signal);
      } catch (thrown) {
        const error = classifyError(thrown);
        if (error.kind === "lease-lost") {
          this.#emit({ type: "lease-lost", name: m.name });
          return "lease-lost";
        }
        if (error.kind === "deterministic") {
          const rowLevel = stepSize > 0 && t.maxQuarantined > 0 && isRowLevelError(error);
          if (!rowLevel) return this.#fail(lease, error.message, { row, failedSteps: failedAttempts });
          failedAttempts++;
          const attempts = Number(row.steps + row.failedSteps) + failedAttempts;
          const failed = Number(row.failedSteps) + failedAttempts;
          if (attempts >= t.failRatioMinSteps && failed / attempts > t.failRatio) {
            return this.#fail(
              lease,
              `${failed} of ${attempts} step attempts failed (more than ${Math.round(t.failRatio * 100)}% of at least ${t.failRatioMinSteps}); last error: ${error.message}`,
              { row, failedSteps: failedAttempts },
            );
          }
          if (stepSize > 1 || stepKey === null) suspect = stepSize;
          // written at the top of the loop, where its own errors are handled like a step's
          else poison = { error, key: stepKey };
          continue;
        }
        reload = true;
        this.#throttle.recordAttempt(m.name, error.code);
        const delayMs = this.#backoff(m.name, t, error, sizer);
        await this.store.recordReason(lease, this.#stateOf(m.name).reason);
        if (this.#clock.now() + delayMs >= deadline) return "retrying";
        await this.#clock.sleep(delayMs, signal);
      }
    }
  }

  /**
   * The next key after the cursor failed on its own: record it and move the cursor past it in ONE fenced batch,
   * unless that would take the run over its quarantine cap (then the migration fails).
   */
  async #quarantine(
    plan: MigrationPlan,
    lease: Lease,
    row: MigrationRow,
    t: Tuning,
    error: ClassifiedError,
    key: bigint,
    failedAttempts: number,
  ): Promise<MigrationRow | MigrationOutcome> {
    const m = plan.migration;
    if (row.quarantined + 1n > BigInt(t.maxQuarantined)) {
      return this.#fail(
        lease,
        `${row.quarantined} rows are quarantined and another one failed, more than the cap of ${t.maxQuarantined} (maxQuarantined); last error: ${error.message}`,
        { row, failedSteps: failedAttempts },
      );
    }
    const { statements, progressIndex } = plan.quarantineStatements(
      this.store,
      lease,
      key,
      row.pass,
      error.message,
      failedAttempts,
    );
    const results = await this.#client.batch(statements, "write");
    const progress = results[progressIndex]?.rows[0];
    const cursor = toBigIntOrNull(progress?.cursor);
    const quarantined = toBigIntOrNull(progress?.quarantined);
    if (cursor === null || quarantined === null) throw new LeaseLostError(m.name);
    this.#emit({ type: "quarantined", name: m.name, key: cursor, message: error.message, quarantined });
    return { ...row, cursor, quarantined, failedSteps: row.failedSteps + BigInt(failedAttempts) };
  }

  /** Re-applies the change to quarantined rows an operator asked to retry, each in its own fenced batch. */
  async #retryQuarantined(
    plan: MigrationPlan,
    lease: Lease,
    startRow: MigrationRow,
    deadline: number,
    sizer: BatchSizer,
    signal: AbortSignal | undefined,
  ): Promise<MigrationRow | MigrationOutcome> {
    const m = plan.migration;
    let row = startRow;
    const keys = await this.store.failuresToRetry(m.name, RETRIES_PER_SLICE);
    for (const key of keys) {
      if (signal?.aborted) return "stopped";
      if (sizer.sizeWithin(deadline - this.#clock.now()) === 0) return "budget";
      try {
        const results = await this.#client.batch(plan.retryStatements(this.store, lease, key), "write");
        const last = results.at(-1)?.rows[0];
        const rowsProcessed = toBigIntOrNull(last?.rows_processed);
        const quarantined = toBigIntOrNull(last?.quarantined);
        if (rowsProcessed === null || quarantined === null) throw new LeaseLostError(m.name);
        row = { ...row, rowsProcessed, quarantined };
        this.#emit({ type: "quarantine-retried", name: m.name, key, resolved: true, message: null });
      } catch (thrown) {
        const error = classifyError(thrown);
        if (error.kind !== "deterministic") throw thrown; // lease lost, or transient: the caller handles it
        await this.store.recordRetryFailure(lease, key, error.message, 1);
        this.#emit({
          type: "quarantine-retried",
          name: m.name,
          key,
          resolved: false,
          message: error.message,
        });
      }
    }
    return row;
  }

  /** pending → running: dependencies, tables, key, prerequisites, frozen bounds. */
  async #startRun(
    plan: MigrationPlan,
    lease: Lease,
    row: MigrationRow,
    t: Tuning,
    sizer: BatchSizer,
    ctx: SliceContext,
  ): Promise<MigrationRow | MigrationOutcome> {
    const m = plan.migration;
    const blocked = this.#unmetDependencies(m, ctx);
    if (blocked) {
      if (row.reason !== blocked) await this.store.recordWaiting(lease, blocked);
      this.#setState(m.name, { reason: blocked });
      this.#emit({ type: "blocked", name: m.name, reason: blocked });
      return "blocked";
    }
    const missing = await this.#missingTables(m);
    if (missing) {
      if (row.reason !== missing) await this.store.recordWaiting(lease, missing);
      this.#setState(m.name, { reason: missing });
      this.#emit({ type: "waiting", name: m.name, reason: missing });
      return "waiting";
    }
    const problem = await plan.keyProblem(this.#client);
    if (problem) return this.#fail(lease, problem, { row });
    await plan.ensurePrerequisites(this.#client, this.store, lease);
    // One index lookup (invariant 10). Errors here propagate: a failed read must never look like an empty run
    // (seed review finding).
    const { end, badKey } = await plan.readKeyEnd(this.#client);
    if (badKey !== null) return this.#fail(lease, plan.badKeyMessage(badKey), { row });
    const initial = t.initialBatch;
    const window: Array<readonly [number, number]> = [[this.#wallClock(), 0]];
    await this.store.startRun(lease, {
      scanEnd: end,
      batchSize: initial,
      rateWindow: JSON.stringify(window),
    });
    sizer.reset(initial);
    ctx.statuses.set(m.name, "running");
    this.#setState(m.name, { reason: null });
    this.#emit({ type: "run-started", name: m.name, minKey: null, maxKey: end, rowsTotal: 0n });
    return {
      ...row,
      status: "running",
      cursor: null,
      minKey: null,
      maxKey: null,
      rowsTotal: 0n,
      phase: end === null ? null : "counting",
      scanCursor: null,
      scanCount: 0n,
      scanEnd: end,
      rowsProcessed: 0n,
      pass: 1,
      steps: 0n,
      failedSteps: 0n,
      quarantined: 0n,
      rateWindow: window,
    };
  }

  /**
   * One piece of a read-only walk (counting or verifying, invariant 10): read the next keys without the write
   * lock, then record the piece with a small fenced write. A key that is not an integer stops the run before the
   * data walk changes anything (invariant 11). Returns the row as it now stands, or how this slice ends.
   */
  async #scan(
    plan: MigrationPlan,
    lease: Lease,
    row: MigrationRow,
    phase: "counting" | "verifying",
    sizer: BatchSizer,
    deadline: number,
  ): Promise<MigrationRow | MigrationOutcome> {
    const size = sizer.sizeWithin(deadline - this.#clock.now());
    if (size === 0) return "budget";
    const { statements, progressIndex } = plan.scanStatements(this.store, lease, phase, row, size);
    const began = this.#clock.now();
    const results = await this.#client.batch(statements, "write");
    sizer.observe(size, this.#clock.now() - began);
    const state = results[progressIndex]?.rows[0];
    if (!state) throw new LeaseLostError(plan.migration.name); // the row vanished or left this phase
    if (state.scan_problem !== null && state.scan_problem !== undefined) {
      return this.#fail(lease, plan.badKeyMessage(String(state.scan_problem)), { row });
    }
    const to = toBigIntOrNull(state.scan_cursor);
    const count = toBigIntOrNull(state.scan_count);
    if (to === null || count === null) throw new LeaseLostError(plan.migration.name);
    const next: MigrationRow = {
      ...row,
      scanCursor: to,
      scanCount: count,
      minKey: toBigIntOrNull(state.min_key),
      maxKey: toBigIntOrNull(state.max_key),
    };
    this.#emit({ type: "scan", name: plan.migration.name, phase, scanCursor: to, scanCount: next.scanCount });
    if (phase === "counting" && to === row.scanEnd) {
      await this.store.finishCounting(lease);
      this.#emit({
        type: "counted",
        name: plan.migration.name,
        rowsTotal: next.scanCount,
        minKey: next.minKey,
        maxKey: next.maxKey,
      });
      return { ...next, phase: null, rowsTotal: next.scanCount, cursor: null };
    }
    return next;
  }

  /**
   * The range is covered and verified (`residual` rows still need work): `done`, another pass for those rows, or
   * `failed`.
   */
  async #finishPass(
    plan: MigrationPlan,
    lease: Lease,
    row: MigrationRow,
    residual: bigint,
    work: { unrecordedBusyMs: number },
    failedAttempts: number,
  ): Promise<MigrationRow | MigrationOutcome> {
    const m = plan.migration;
    if (residual === 0n) {
      await this.store.markDone(lease, work.unrecordedBusyMs);
      work.unrecordedBusyMs = 0;
      this.#setState(m.name, { reason: null, attempts: 0 });
      this.#emit({
        type: "done",
        name: m.name,
        rowsProcessed: row.rowsProcessed,
        rowsTotal: row.rowsTotal,
        quarantined: row.quarantined,
      });
      return "done";
    }
    if (row.pass >= this.#tunings.get(m.name)!.maxPasses) {
      return this.#fail(
        lease,
        `verification found ${residual} rows still needing work after ${row.pass} passes`,
        { residual, row, failedSteps: failedAttempts },
      );
    }
    await this.store.startSweep(lease, residual);
    this.#emit({ type: "sweep", name: m.name, residual, pass: row.pass + 1 });
    return { ...row, cursor: null, phase: null, pass: row.pass + 1, rowsTotal: row.rowsTotal + residual };
  }

  async #fail(
    lease: Lease,
    message: string,
    fields: { residual?: bigint; row?: MigrationRow; failedSteps?: number } = {},
  ): Promise<MigrationOutcome> {
    try {
      await this.store.markFailed(lease, message, {
        ...(fields.residual === undefined ? {} : { residual: fields.residual }),
        ...(fields.failedSteps === undefined ? {} : { failedSteps: fields.failedSteps }),
      });
    } catch (thrown) {
      const error = classifyError(thrown);
      if (error.kind === "lease-lost") return "lease-lost";
      return "retrying"; // could not record the failure; the next slice meets the same error again
    }
    this.#setState(lease.name, { reason: null });
    this.#emit({
      type: "failed",
      name: lease.name,
      message,
      ...(fields.row ? { rowsProcessed: fields.row.rowsProcessed, rowsTotal: fields.row.rowsTotal } : {}),
    });
    return "failed";
  }

  /**
   * Looks at the throttle signals before a step; when one trips, records the decision in the row (fenced) and
   * returns true. Quiet hours and the busy rate cost nothing; the probe runs at most every `everyMs`.
   */
  async #throttleCheck(plan: MigrationPlan, lease: Lease): Promise<boolean> {
    const decision = await this.#throttle.decide(plan.migration.name, (sql: string) =>
      this.#client.execute(sql),
    );
    if (!decision) return false;
    try {
      await this.store.recordThrottle(lease, decision.reason, new Date(decision.untilMs).toISOString());
    } catch (thrown) {
      // The lock this throttle is about may be what failed the write: hold back in this process anyway (its
      // snapshots carry the reason); other runners meet the same signal themselves.
      if (classifyError(thrown).kind === "lease-lost") throw thrown;
    }
    this.#holdInProcess(plan.migration.name, decision);
    return true;
  }

  #holdInProcess(name: string, decision: ThrottleDecision): void {
    this.#throttle.reset(name);
    this.#setState(name, {
      throttle: { reason: decision.reason, policy: decision.policy, untilMs: decision.untilMs },
    });
    this.#emit({ type: "throttled", name, ...decision });
  }

  /** Records a transient error and returns how long to wait before the next attempt. */
  #backoff(name: string, t: Tuning, error: ClassifiedError, sizer?: BatchSizer): number {
    const attempts = this.#stateOf(name).attempts + 1;
    const base = Math.min(t.retryMaxMs, t.retryMinMs * 2 ** Math.min(attempts - 1, 20));
    const delayMs = Math.round(base * (0.75 + Math.random() * 0.5));
    sizer?.shrink();
    const reason = `${error.code}: ${error.message} (attempt ${attempts}, retrying in ${delayMs} ms)`;
    this.#setState(name, { reason, attempts, ...(sizer ? { batchSize: sizer.size } : {}) });
    this.#emit({
      type: "retrying",
      name,
      code: error.code,
      message: error.message,
      delayMs,
      attempt: attempts,
    });
    return delayMs;
  }

  /** Why a migration cannot start yet because of its dependencies, or `undefined`. */
  #unmetDependencies(m: ResolvedMigration, ctx: SliceContext): string | undefined {
    const unmet = m.dependsOn.filter((dep) => ctx.statuses.get(dep) !== "done");
    if (unmet.length === 0) return undefined;
    const list = unmet.map((dep) => `${dep} (${ctx.statuses.get(dep) ?? "not registered"})`).join(", ");
    return `waiting: depends on ${list}`;
  }

  async #missingTables(m: ResolvedMigration): Promise<string | undefined> {
    const existing = await this.store.existingTables(m.requires);
    const missing = m.requires.filter((t) => !existing.has(t));
    return missing.length === 0
      ? undefined
      : `waiting: table ${missing.join(", ")} does not exist in this database`;
  }

  /** Runner defaults, then the definition's tuning, then the operator's live overrides stored in the row. */
  #tuningFor(m: ResolvedMigration, row: MigrationRow): Tuning {
    const base = this.#tunings.get(m.name) ?? this.tuning;
    if (!row.tuning) return base;
    try {
      return resolveTuning(base, row.tuning as Partial<Tuning>);
    } catch {
      return base; // an override that does not validate is ignored rather than stopping the run
    }
  }

  #stateOf(name: string): MutableState {
    return (
      this.#state.get(name) ?? {
        reason: null,
        attempts: 0,
        batchSize: null,
        lastStepMs: null,
        throttle: null,
      }
    );
  }

  #setState(name: string, patch: Partial<MutableState>): void {
    this.#state.set(name, { ...this.#stateOf(name), ...patch });
  }

  #emit(event: RunnerEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // a listener's bug must not stop a backfill
      }
    }
  }
}

/** ISO-8601 text (what trickle writes) to wall-clock ms, or null. */
function parseWallTime(value: string | null): number | null {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}
