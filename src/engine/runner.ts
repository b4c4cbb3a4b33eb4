/**
 * The runner: one tick = one slice = steps of one or more migrations until the time budget is spent.
 *
 * A slice takes each runnable migration's lease, starts its run if needed (prerequisites, frozen bounds), then
 * runs fenced keyset steps sized by the BatchSizer, yielding between them, until the range is covered and
 * verification finds nothing left (→ `done`), the budget would be overrun, or something stops it. Transient
 * errors back off and retry; deterministic errors fail the migration; a lost lease ends its part of the slice.
 */
import type { Client } from "@libsql/client";
import { type MigrationDefinition, type ResolvedMigration, resolveMigration } from "../migrations/define.ts";
import { BatchSizer } from "./batch-sizer.ts";
import { reopenAfterBusy } from "./busy-recovery.ts";
import { type Clock, systemClock } from "./clock.ts";
import { type ClassifiedError, classifyError, LeaseLostError } from "./errors.ts";
import type { RunnerEvent, RunnerEventListener } from "./events.ts";
import { MigrationPlan } from "./plan.ts";
import { type Lease, type MigrationRow, StateStore, toBigIntOrNull } from "./state-store.ts";
import { resolveTuning, type Tuning } from "./tuning.ts";

export interface RunnerOptions {
  readonly client: Client;
  readonly migrations: readonly MigrationDefinition[];
  /** Lease owner id; default a random one per runner. */
  readonly owner?: string;
  readonly tuning?: Partial<Tuning>;
  readonly clock?: Clock;
  readonly onEvent?: RunnerEventListener;
}

/** How one migration's part of a slice ended. */
export type MigrationOutcome =
  | "budget" // stopped because the next step would overrun the budget
  | "done"
  | "failed"
  | "waiting" // cannot start yet (missing tables)
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

/** What this runner knows about a migration beyond its row: why it waits, how it is sized. */
export interface RunnerMigrationState {
  readonly name: string;
  readonly reason: string | null;
  readonly attempts: number;
  readonly batchSize: number | null;
  readonly lastStepMs: number | null;
}

const RUNNABLE = new Set(["pending", "running"]);
const STILL_WORKING: ReadonlySet<MigrationOutcome> = new Set([
  "budget",
  "retrying",
  "lease-lost",
  "leased-elsewhere",
  "stopped",
]);

export class Runner {
  readonly owner: string;
  readonly tuning: Tuning;
  readonly store: StateStore;
  readonly #client: Client;
  readonly #plans: ReadonlyMap<string, MigrationPlan>;
  readonly #tunings: ReadonlyMap<string, Tuning>;
  readonly #clock: Clock;
  readonly #listeners = new Set<RunnerEventListener>();
  readonly #state = new Map<
    string,
    { reason: string | null; attempts: number; batchSize: number | null; lastStepMs: number | null }
  >();
  #initialized: Promise<void> | undefined;

  constructor(options: RunnerOptions) {
    this.#client = reopenAfterBusy(options.client);
    this.store = new StateStore(this.#client);
    this.owner = options.owner ?? `runner-${crypto.randomUUID()}`;
    this.tuning = resolveTuning(options.tuning);
    this.#clock = options.clock ?? systemClock;
    const plans = new Map<string, MigrationPlan>();
    for (const definition of options.migrations) {
      const resolved = resolveMigration(definition);
      if (plans.has(resolved.name)) throw new Error(`migration ${resolved.name} is registered twice`);
      plans.set(resolved.name, new MigrationPlan(resolved));
    }
    this.#plans = plans;
    this.#tunings = new Map(
      [...plans].map(([name, plan]) => [name, resolveTuning(this.tuning, plan.migration.tuning)]),
    );
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
    const runnable = rows
      .filter((row) => this.#plans.has(row.name) && RUNNABLE.has(row.status))
      // Oldest progress first, so migrations sharing ticks take turns.
      .sort((a, b) => (a.lastUpdateAt ?? "").localeCompare(b.lastUpdateAt ?? ""));
    const outcomes: { name: string; outcome: MigrationOutcome }[] = [];
    let steps = 0;
    let processed = 0n;
    for (const row of runnable) {
      if (signal?.aborted || this.#clock.now() >= deadline) {
        outcomes.push({ name: row.name, outcome: signal?.aborted ? "stopped" : "budget" });
        continue;
      }
      const plan = this.#plans.get(row.name)!;
      const result = await this.#runMigration(plan, row, began, deadline, signal);
      steps += result.steps;
      processed += result.rows;
      outcomes.push({ name: row.name, outcome: result.outcome });
    }
    return { steps, rows: processed, outcomes, moreWork: outcomes.some((o) => STILL_WORKING.has(o.outcome)) };
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
      // Nothing moved (another runner holds the lease, or we are backing off): do not spin.
      if (result.steps === 0) await this.#clock.sleep(options.idleWaitMs ?? 100, options.signal);
    }
    return results;
  }

  async #runMigration(
    plan: MigrationPlan,
    row: MigrationRow,
    sliceBegan: number,
    sliceDeadline: number,
    signal: AbortSignal | undefined,
  ): Promise<{ outcome: MigrationOutcome; steps: number; rows: bigint }> {
    const m = plan.migration;
    let acquired: Awaited<ReturnType<StateStore["acquireLease"]>>;
    try {
      if (row.status === "pending") {
        // Checked before taking the lease so a migration waiting for its tables costs an idle tick no write.
        const missing = await this.#missingTables(m);
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
    const work = { steps: 0, rows: 0n, unrecordedBusyMs: 0 };
    let outcome: MigrationOutcome;
    try {
      outcome = await this.#work(plan, lease, acquired.row, tuning, sizer, deadline, signal, work);
    } finally {
      await this.store.releaseLease(lease, {
        batchSize: sizer.size,
        rate: sizer.rate,
        busyMs: work.unrecordedBusyMs,
      });
    }
    return { outcome, steps: work.steps, rows: work.rows };
  }

  async #work(
    plan: MigrationPlan,
    lease: Lease,
    startRow: MigrationRow,
    t: Tuning,
    sizer: BatchSizer,
    deadline: number,
    signal: AbortSignal | undefined,
    work: { steps: number; rows: bigint; unrecordedBusyMs: number },
  ): Promise<MigrationOutcome> {
    const m = plan.migration;
    let row = startRow;
    let reload = false;
    for (;;) {
      if (signal?.aborted) return "stopped";
      try {
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
        if (row.status === "pending") {
          const started = await this.#startRun(plan, lease, row, t, sizer);
          if (typeof started === "string") return started;
          row = started;
          continue;
        }
        if (row.maxKey === null || row.minKey === null || (row.cursor !== null && row.cursor >= row.maxKey)) {
          const finished = await this.#finishPass(plan, lease, row, work);
          if (typeof finished === "string") return finished;
          row = finished;
          continue;
        }
        const size = sizer.sizeWithin(deadline - this.#clock.now());
        if (size === 0) return "budget"; // never start a step expected to overrun the budget (invariant 5)
        const busyMs = work.unrecordedBusyMs;
        const { statements, progressIndex } = plan.stepStatements(
          this.store,
          lease,
          { cursor: row.cursor, minKey: row.minKey, maxKey: row.maxKey, pass: row.pass },
          size,
          busyMs,
        );
        const began = this.#clock.now();
        const results = await this.#client.batch(statements, "write");
        const durationMs = this.#clock.now() - began;
        const progress = results[progressIndex]?.rows[0];
        const cursor = toBigIntOrNull(progress?.cursor);
        const rowsProcessed = toBigIntOrNull(progress?.rows_processed);
        if (cursor === null || rowsProcessed === null) throw new LeaseLostError(m.name); // the row vanished
        const rows = rowsProcessed - row.rowsProcessed;
        row = { ...row, cursor, rowsProcessed };
        work.steps++;
        work.rows += rows;
        work.unrecordedBusyMs = durationMs; // the previous unrecorded time went into this step's progress update
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
        await this.#clock.sleep(t.yieldMs, signal);
      } catch (thrown) {
        const error = classifyError(thrown);
        if (error.kind === "lease-lost") {
          this.#emit({ type: "lease-lost", name: m.name });
          return "lease-lost";
        }
        if (error.kind === "deterministic") return this.#fail(lease, error.message);
        reload = true;
        const delayMs = this.#backoff(m.name, t, error, sizer);
        await this.store.recordReason(lease, this.#stateOf(m.name).reason);
        if (this.#clock.now() + delayMs >= deadline) return "retrying";
        await this.#clock.sleep(delayMs, signal);
      }
    }
  }

  /** pending → running: tables, key, prerequisites, frozen bounds. Returns the new row or how the slice ends. */
  async #startRun(
    plan: MigrationPlan,
    lease: Lease,
    row: MigrationRow,
    t: Tuning,
    sizer: BatchSizer,
  ): Promise<MigrationRow | MigrationOutcome> {
    const m = plan.migration;
    const missing = await this.#missingTables(m);
    if (missing) {
      if (row.reason !== missing) await this.store.recordWaiting(lease, missing);
      this.#setState(m.name, { reason: missing });
      this.#emit({ type: "waiting", name: m.name, reason: missing });
      return "waiting";
    }
    const problem = await plan.keyProblem(this.#client);
    if (problem) return this.#fail(lease, problem);
    await plan.ensurePrerequisites(this.#client, this.store, lease);
    // Errors here propagate: a failed bounds read must never look like an empty run (seed review finding).
    const bounds = await plan.readBounds(this.#client);
    const initial = t.initialBatch;
    await this.store.startRun(lease, { ...bounds, batchSize: initial });
    sizer.reset(initial);
    this.#emit({ type: "run-started", name: m.name, ...bounds });
    return { ...row, status: "running", cursor: null, ...bounds, rowsProcessed: 0n, pass: 1 };
  }

  /** The range is covered: verify, then `done`, another pass for rows that still need work, or `failed`. */
  async #finishPass(
    plan: MigrationPlan,
    lease: Lease,
    row: MigrationRow,
    work: { unrecordedBusyMs: number },
  ): Promise<MigrationRow | MigrationOutcome> {
    const m = plan.migration;
    await this.store.renew(lease);
    const residual = await plan.readResidual(this.#client, row.minKey, row.maxKey);
    if (residual === 0n) {
      await this.store.markDone(lease, work.unrecordedBusyMs);
      work.unrecordedBusyMs = 0;
      this.#setState(m.name, { reason: null, attempts: 0 });
      this.#emit({ type: "done", name: m.name, rowsProcessed: row.rowsProcessed });
      return "done";
    }
    if (row.pass >= this.#tunings.get(m.name)!.maxPasses) {
      return this.#fail(
        lease,
        `verification found ${residual} rows still needing work after ${row.pass} passes`,
        residual,
      );
    }
    await this.store.startSweep(lease, residual);
    this.#emit({ type: "sweep", name: m.name, residual, pass: row.pass + 1 });
    return { ...row, cursor: null, pass: row.pass + 1, rowsTotal: row.rowsTotal + residual };
  }

  async #fail(lease: Lease, message: string, residual?: bigint): Promise<MigrationOutcome> {
    try {
      await this.store.markFailed(lease, message, residual === undefined ? {} : { residual });
    } catch (thrown) {
      const error = classifyError(thrown);
      if (error.kind === "lease-lost") return "lease-lost";
      return "retrying"; // could not record the failure; the next slice meets the same error again
    }
    this.#setState(lease.name, { reason: null });
    this.#emit({ type: "failed", name: lease.name, message });
    return "failed";
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

  #stateOf(name: string) {
    return this.#state.get(name) ?? { reason: null, attempts: 0, batchSize: null, lastStepMs: null };
  }

  #setState(
    name: string,
    patch: Partial<{
      reason: string | null;
      attempts: number;
      batchSize: number | null;
      lastStepMs: number | null;
    }>,
  ): void {
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
