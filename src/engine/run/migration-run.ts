/**
 * One migration's part of a slice: skip it while a throttle holds it back, take its lease, then run — start the
 * run if it is pending (dependencies, tables, key, prerequisites, frozen upper bound), retry quarantined rows an
 * operator asked for, count the candidates, walk the data in fenced keyset steps, verify, and finish (`done`,
 * another pass over rows still needing work, or `failed`) — until the share of the slice is spent or something
 * stops it. Finally give the lease back with what the next slice should start from.
 *
 * A step is one write batch (invariant 1, `MigrationPlan.stepBatch`): fence, cursor, data change and progress
 * commit together, so a crash or a lost answer can never apply a range twice: after a transient error the run
 * goes on from the stored row, never from memory. Deterministic errors that rows may cause are bisected and the
 * poison row quarantined (./quarantine.ts); any other deterministic error fails the migration.
 */
import { BatchSizer } from "../batch-sizer.ts";
import { classifyError, isRowLevelError, LeaseLostError } from "../errors.ts";
import type { MigrationPlan } from "../plan.ts";
import { type Lease, type MigrationRow, RATE_WINDOW_POINTS } from "../state/row.ts";
import type { StateStore } from "../state/store.ts";
import { type Tuning, withLiveOverrides } from "../tuning.ts";
import { backoff, fail, type MigrationOutcome, type RunContext, type SliceState } from "./context.ts";
import { Bisection, quarantine, retryQuarantined } from "./quarantine.ts";
import { heldBack, holdInProcess, throttleCheck } from "./throttling.ts";
import { startVerifying, walkPiece, walkSizer } from "./walk.ts";
import { writeBatch } from "./write-batch.ts";

/** What one migration did in a slice. */
export interface MigrationSliceResult {
  readonly outcome: MigrationOutcome;
  readonly steps: number;
  readonly rows: bigint;
  /** Pieces of the read-only walks (counting, verification): progress too, though no row changed. */
  readonly pieces: number;
}

/** The share of the slice one migration may use. */
export interface Share {
  /** Monotonic ms when the slice began (a live `sliceBudgetMs` override counts from here). */
  readonly sliceBegan: number;
  /** Monotonic ms by which this migration's part must end. */
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  readonly slice: SliceState;
}

/** Running totals of one migration's part of a slice. */
interface Work {
  steps: number;
  rows: bigint;
  pieces: number;
  unrecordedBusyMs: number;
  /** Rows processed plus quarantined, as last seen (for the ETA window); null before the run starts. */
  covered: bigint | null;
  /** The ETA window as of this slice when the run (re)started in it (it starts over), else undefined. */
  window: ReadonlyArray<readonly [number, number]> | undefined;
}

/** A point is added to the ETA window at most this often per migration. */
const RATE_POINT_MIN_MS = 1_000;

/** Runs one migration's part of a slice; see the module comment. */
export async function runMigration(
  ctx: RunContext,
  plan: MigrationPlan,
  row: MigrationRow,
  share: Share,
): Promise<MigrationSliceResult> {
  const m = plan.migration;
  // A throttle decision (this runner's or another's) holds it back: skip it without taking the lease.
  if (heldBack(ctx, row)) return { outcome: "throttled", steps: 0, rows: 0n, pieces: 0 };
  let acquired: Awaited<ReturnType<StateStore["acquireLease"]>>;
  try {
    if (row.status === "pending") {
      // Checked before taking the lease so a migration that waits costs an idle tick no write.
      const blocked = unmetDependencies(plan, share.slice);
      if (blocked && row.reason === blocked) {
        ctx.states.set(m.name, { reason: blocked });
        return { outcome: "blocked", steps: 0, rows: 0n, pieces: 0 };
      }
      const missing = blocked ? undefined : await missingTables(ctx, plan);
      if (missing && row.reason === missing) {
        ctx.states.set(m.name, { reason: missing });
        return { outcome: "waiting", steps: 0, rows: 0n, pieces: 0 };
      }
    }
    acquired = await ctx.store.acquireLease(m.name, ctx.owner, ctx.tuning.leaseTtlMs);
  } catch (thrown) {
    const error = classifyError(thrown);
    if (error.kind !== "transient") throw thrown;
    backoff(ctx, m.name, ctx.tuningOf(m.name), error);
    // Not even the lease could be taken: that counts towards the busy rate as much as a failed step.
    ctx.throttle.recordAttempt(m.name, error.code);
    const busy = ctx.throttle.busyDecision(m.name);
    if (busy) {
      holdInProcess(ctx, m.name, busy);
      return { outcome: "throttled", steps: 0, rows: 0n, pieces: 0 };
    }
    return { outcome: "retrying", steps: 0, rows: 0n, pieces: 0 };
  }
  if (!acquired) return { outcome: "leased-elsewhere", steps: 0, rows: 0n, pieces: 0 };
  const { lease } = acquired;
  const tuning = tuningFor(ctx, plan, acquired.row);
  // A live sliceBudgetMs override can only shorten this slice: the caller's budget is a hard limit.
  const deadline = Math.min(share.deadline, share.sliceBegan + tuning.sliceBudgetMs);
  const sizer = new BatchSizer(tuning, {
    size: acquired.row.batchSize ?? tuning.initialBatch,
    rate: acquired.row.rate ?? undefined,
  });
  const work: Work = {
    steps: 0,
    rows: 0n,
    pieces: 0,
    unrecordedBusyMs: 0,
    covered: acquired.row.pass > 0 ? acquired.row.rowsProcessed + acquired.row.quarantined : null,
    window: undefined,
  };
  let outcome: MigrationOutcome;
  try {
    const run = new MigrationRun(ctx, plan, lease, acquired.row, tuning, sizer, { ...share, deadline }, work);
    outcome = await run.run();
  } finally {
    await ctx.store.releaseLease(lease, {
      batchSize: sizer.size,
      rate: sizer.rate,
      busyMs: work.unrecordedBusyMs,
      ...ratePoint(ctx, acquired.row, work),
    });
  }
  return { outcome, steps: work.steps, rows: work.rows, pieces: work.pieces };
}

/** The run of one migration under one lease, within one share of a slice. */
class MigrationRun {
  readonly #ctx: RunContext;
  readonly #plan: MigrationPlan;
  readonly #lease: Lease;
  /** This lease's tuning: the runner's, the definition's, then the operator's live overrides. */
  readonly #t: Tuning;
  readonly #sizer: BatchSizer;
  readonly #walkSizer: BatchSizer;
  readonly #share: Share;
  readonly #work: Work;
  readonly #bisection = new Bisection();
  /** The row as this run last wrote or read it. */
  #row: MigrationRow;
  /** After a transient error: read the row again before going on. */
  #reload = false;
  /** Quarantined-row retries are looked for once per slice. */
  #retriesDone = false;
  /** Keys of the data step in flight, 0 outside one: only a step's error may be a poison row's. */
  #stepSize = 0;
  /** The key of the single-key step in flight, read just before it (so a failure names that very key). */
  #stepKey: bigint | null = null;

  constructor(
    ctx: RunContext,
    plan: MigrationPlan,
    lease: Lease,
    row: MigrationRow,
    t: Tuning,
    sizer: BatchSizer,
    share: Share,
    work: Work,
  ) {
    this.#ctx = ctx;
    this.#plan = plan;
    this.#lease = lease;
    this.#row = row;
    this.#t = t;
    this.#sizer = sizer;
    this.#walkSizer = walkSizer(t);
    this.#share = share;
    this.#work = work;
  }

  get #name(): string {
    return this.#plan.migration.name;
  }

  /** Does what the run needs next, again and again, until the slice's share ends for it. */
  async run(): Promise<MigrationOutcome> {
    for (;;) {
      if (this.#share.signal?.aborted) return "stopped";
      this.#stepSize = 0;
      let outcome: MigrationOutcome | undefined;
      try {
        outcome = await this.#next();
      } catch (thrown) {
        outcome = await this.#afterError(thrown);
      }
      if (outcome !== undefined) return outcome;
    }
  }

  /** One thing the run needs next. Returns how this part of the slice ends, or undefined to go on. */
  async #next(): Promise<MigrationOutcome | undefined> {
    const ctx = this.#ctx;
    if (this.#bisection.poison !== null) return this.#quarantinePoison();
    if (this.#reload) await this.#reloadRow();
    if (await throttleCheck(ctx, this.#plan, this.#lease)) return "throttled";
    if (this.#row.status === "pending") return this.#start();
    // Only a migration with unresolved quarantined rows can have retries waiting (it costs one read).
    if (!this.#retriesDone && this.#row.quarantined > 0n) {
      this.#retriesDone = true;
      const retried = await retryQuarantined(
        ctx,
        this.#plan,
        this.#lease,
        this.#row,
        this.#share.deadline,
        this.#sizer,
        this.#share.signal,
      );
      if (typeof retried === "string") return retried;
      this.#row = retried;
      this.#work.covered = retried.rowsProcessed + retried.quarantined;
    }
    if (this.#row.phase === "counting") return this.#walk("counting");
    const { minKey, maxKey, cursor } = this.#row;
    if (minKey === null || maxKey === null || (cursor !== null && cursor >= maxKey))
      return this.#endOfRange();
    return this.#step(minKey, maxKey);
  }

  /** pending → running: dependencies, tables, key, prerequisites, frozen upper bound. */
  async #start(): Promise<MigrationOutcome | undefined> {
    const { store } = this.#ctx;
    const plan = this.#plan;
    const lease = this.#lease;
    const row = this.#row;
    const name = this.#name;
    const blocked = unmetDependencies(plan, this.#share.slice);
    if (blocked) {
      if (row.reason !== blocked) await store.recordWaiting(lease, blocked);
      this.#ctx.states.set(name, { reason: blocked });
      this.#ctx.emit({ type: "blocked", name, reason: blocked });
      return "blocked";
    }
    const missing = await missingTables(this.#ctx, plan);
    if (missing) {
      if (row.reason !== missing) await store.recordWaiting(lease, missing);
      this.#ctx.states.set(name, { reason: missing });
      this.#ctx.emit({ type: "waiting", name, reason: missing });
      return "waiting";
    }
    const problem = await plan.keyProblem(this.#ctx.client);
    if (problem) return fail(this.#ctx, lease, problem, { row });
    await plan.ensurePrerequisites(this.#ctx.client, store, lease);
    // One index lookup (invariant 10). Errors here propagate: a failed read must never look like an empty run
    // (seed review finding).
    const { end, badKey } = await plan.readKeyEnd(this.#ctx.client);
    if (badKey !== null) return fail(this.#ctx, lease, plan.badKeyMessage(badKey), { row });
    const initial = this.#t.initialBatch;
    const window: Array<readonly [number, number]> = [[this.#ctx.wallClock(), 0]];
    await store.startRun(lease, { scanEnd: end, batchSize: initial, rateWindow: JSON.stringify(window) });
    this.#sizer.reset(initial);
    this.#share.slice.statuses.set(name, "running");
    this.#ctx.states.set(name, { reason: null });
    this.#ctx.emit({ type: "run-started", name, minKey: null, maxKey: end, rowsTotal: 0n });
    this.#row = {
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
    this.#work.covered = 0n;
    this.#work.window = window;
    return undefined;
  }

  /** One piece of a read-only walk (./walk.ts). */
  async #walk(phase: "counting" | "verifying"): Promise<MigrationOutcome | undefined> {
    const ctx = this.#ctx;
    const walked = await walkPiece(
      ctx,
      this.#plan,
      this.#lease,
      this.#row,
      phase,
      this.#walkSizer,
      this.#share.deadline,
    );
    if (typeof walked === "string") return walked;
    const { row, contendedMs } = walked;
    this.#row = row;
    this.#work.pieces++;
    // Counting ended: this slice's ETA point goes into the window that starts with the data walk.
    if (phase === "counting" && row.phase === null) this.#work.window = row.rateWindow ?? undefined;
    // A piece holds the write lock like a step does (for its record alone on a local file): waiting writers get
    // the yield that suits the time they waited.
    await this.#pause(contendedMs);
    return undefined;
  }

  /** The data walk covered its range: verify it, piece by piece, then finish the pass. */
  async #endOfRange(): Promise<MigrationOutcome | undefined> {
    const row = this.#row;
    if (row.phase !== "verifying" && row.maxKey !== null && this.#plan.verifies) {
      this.#row = await startVerifying(this.#ctx, this.#lease, row);
      return undefined;
    }
    if (row.phase === "verifying" && row.scanCursor !== row.scanEnd) return this.#walk("verifying");
    return this.#finishPass(row.phase === "verifying" ? row.scanCount : 0n);
  }

  /**
   * The range is covered and verified (`residual` rows still need work): `done`, another pass for those rows, or
   * `failed`.
   */
  async #finishPass(residual: bigint): Promise<MigrationOutcome | undefined> {
    const { store } = this.#ctx;
    const lease = this.#lease;
    const row = this.#row;
    const name = this.#name;
    const failedAttempts = this.#bisection.failedAttempts;
    if (residual === 0n) {
      await store.markDone(lease, this.#work.unrecordedBusyMs);
      this.#work.unrecordedBusyMs = 0;
      this.#ctx.states.set(name, { reason: null, attempts: 0 });
      this.#ctx.emit({
        type: "done",
        name,
        rowsProcessed: row.rowsProcessed,
        rowsTotal: row.rowsTotal,
        quarantined: row.quarantined,
      });
      return "done";
    }
    if (row.pass >= this.#ctx.tuningOf(name).maxPasses) {
      return fail(
        this.#ctx,
        lease,
        `verification found ${residual} rows still needing work after ${row.pass} passes`,
        { residual, row, failedSteps: failedAttempts },
      );
    }
    await store.startSweep(lease, residual);
    this.#ctx.emit({ type: "sweep", name, residual, pass: row.pass + 1 });
    this.#bisection.failedAttempts = 0;
    this.#row = {
      ...row,
      cursor: null,
      phase: null,
      pass: row.pass + 1,
      rowsTotal: row.rowsTotal + residual,
    };
    return undefined;
  }

  /**
   * One fenced keyset step over `(cursor, cursor + size keys]` (invariant 2), sized to fit what is left of the
   * share (invariant 5) and, while bisecting, to half the suspect keys. The step's batch carries the fence, the
   * cursor move, the data change and the progress update (invariant 1).
   */
  async #step(minKey: bigint, maxKey: bigint): Promise<MigrationOutcome | undefined> {
    const ctx = this.#ctx;
    const name = this.#name;
    const bisection = this.#bisection;
    let size = this.#sizer.sizeWithin(this.#share.deadline - ctx.clock.now());
    if (size === 0) return "budget"; // never start a step expected to overrun the budget (invariant 5)
    if (bisection.suspect !== null) {
      const suspect = bisection.suspect;
      size = bisection.narrow(size);
      ctx.emit({ type: "bisecting", name, suspect, size });
    }
    const before = this.#row;
    const start = { cursor: before.cursor, minKey, maxKey, pass: before.pass };
    // The range's last key. On a local file it is read before the write batch, so the write lock covers the data
    // change alone (keys inserted in between fall inside the range all the same); remote databases walk it inside
    // the batch, where reading it first would cost a round trip per step. A single key is always named first: if
    // it fails, that key is the one quarantined.
    const readFirst = size === 1 || ctx.client.protocol === "file";
    const rangeEnd = readFirst
      ? ((await this.#plan.readRangeEnd(ctx.client, start, size)) ?? maxKey)
      : undefined;
    this.#stepKey = size === 1 ? (rangeEnd ?? null) : null;
    const failedAttempts = bisection.failedAttempts;
    const batch = this.#plan.stepBatch(
      this.#lease,
      start,
      size,
      this.#work.unrecordedBusyMs,
      failedAttempts,
      rangeEnd,
    );
    this.#stepSize = size;
    await ctx.stepConnection.beforeStep();
    // A step's duration is the time it held the write lock; its wait for the lock is reported apart (./write-batch.ts).
    const { results, waitedMs, heldMs } = await writeBatch(ctx.client, ctx.clock, batch.statements);
    const durationMs = heldMs;
    this.#stepSize = 0;
    const { cursor, rowsProcessed } = batch.decode(results);
    const rows = rowsProcessed - before.rowsProcessed;
    this.#row = {
      ...before,
      cursor,
      rowsProcessed,
      steps: before.steps + 1n,
      failedSteps: before.failedSteps + BigInt(failedAttempts),
    };
    bisection.stepped(size);
    const work = this.#work;
    work.steps++;
    work.rows += rows;
    work.covered = rowsProcessed + this.#row.quarantined;
    work.unrecordedBusyMs = durationMs; // the previous unrecorded time went into this step's progress update
    ctx.throttle.recordAttempt(name);
    this.#sizer.observe(size, durationMs);
    ctx.states.set(name, { reason: null, attempts: 0, batchSize: this.#sizer.size, lastStepMs: durationMs });
    ctx.emit({
      type: "step",
      name,
      batchSize: size,
      rows,
      cursor,
      rowsProcessed,
      durationMs,
      lockWaitMs: waitedMs,
      nextBatchSize: this.#sizer.size,
    });
    // The log the step wrote is copied back outside the step, then writers get the whole yield: a yield
    // shortened by the checkpoint's time starved the benchmark's ingest (README "Benchmark").
    await ctx.stepConnection.afterStep();
    await this.#pause(waitedMs + heldMs);
    return undefined;
  }

  /**
   * The pause after work that waited for and then held the write lock for `contendedMs` in all, so waiting writers
   * get it (../yield.ts): a writer that queued behind the same holder while the work waited has slept as long.
   */
  #pause(contendedMs: number): Promise<void> {
    return this.#ctx.yielder.after(contendedMs, this.#t.yieldMs, this.#share.signal);
  }

  /** The key a bisection ended on failed on its own: quarantine it (./quarantine.ts) and go on after it. */
  async #quarantinePoison(): Promise<MigrationOutcome | undefined> {
    const bisection = this.#bisection;
    const poison = bisection.poison!;
    const began = this.#ctx.clock.now();
    bisection.poison = null;
    const quarantined = await quarantine(
      this.#ctx,
      this.#plan,
      this.#lease,
      this.#row,
      this.#t,
      poison,
      bisection.failedAttempts,
    );
    if (typeof quarantined === "string") return quarantined;
    this.#row = quarantined;
    bisection.quarantined();
    this.#work.covered = quarantined.rowsProcessed + quarantined.quarantined;
    await this.#pause(this.#ctx.clock.now() - began);
    return undefined;
  }

  /**
   * The failed attempt may have committed with its answer lost (a dropped connection, a 5xx after COMMIT):
   * continue from the stored row, never from memory, or that range would be applied twice.
   */
  async #reloadRow(): Promise<void> {
    const lease = this.#lease;
    const fresh = await this.#ctx.store.get(this.#name);
    if (!fresh || fresh.leaseOwner !== lease.owner || fresh.leaseEpoch !== lease.epoch) {
      throw new LeaseLostError(this.#name);
    }
    this.#row = fresh;
    this.#reload = false;
  }

  /**
   * What an error means for the run: a lost lease ends this part of the slice; a deterministic error fails the
   * migration unless a row may cause it (then bisect, or quarantine the named key — within the fail ratio); a
   * transient one backs off, with the reason recorded, and the run goes on from the stored row.
   */
  async #afterError(thrown: unknown): Promise<MigrationOutcome | undefined> {
    const ctx = this.#ctx;
    const t = this.#t;
    const name = this.#name;
    const lease = this.#lease;
    const row = this.#row;
    const bisection = this.#bisection;
    const error = classifyError(thrown);
    if (error.kind === "lease-lost") {
      ctx.emit({ type: "lease-lost", name });
      return "lease-lost";
    }
    if (error.kind === "deterministic") {
      const stepSize = this.#stepSize;
      const rowLevel = stepSize > 0 && t.maxQuarantined > 0 && isRowLevelError(error);
      if (!rowLevel) return fail(ctx, lease, error.message, { row, failedSteps: bisection.failedAttempts });
      bisection.failedAttempts++;
      const attempts = Number(row.steps + row.failedSteps) + bisection.failedAttempts;
      const failed = Number(row.failedSteps) + bisection.failedAttempts;
      if (attempts >= t.failRatioMinSteps && failed / attempts > t.failRatio) {
        return fail(
          ctx,
          lease,
          `${failed} of ${attempts} step attempts failed (more than ${Math.round(t.failRatio * 100)}% of at least ${t.failRatioMinSteps}); last error: ${error.message}`,
          { row, failedSteps: bisection.failedAttempts },
        );
      }
      // The poison key is quarantined at the top of the loop, where its own errors are handled like a step's.
      bisection.failed(stepSize, this.#stepKey, error);
      return undefined;
    }
    this.#reload = true;
    ctx.throttle.recordAttempt(name, error.code);
    const delayMs = backoff(ctx, name, t, error, this.#sizer);
    await ctx.store.recordReason(lease, ctx.states.get(name).reason);
    if (ctx.clock.now() + delayMs >= this.#share.deadline) return "retrying";
    await ctx.clock.sleep(delayMs, this.#share.signal);
    return undefined;
  }
}

/** Why a migration cannot start yet because of its dependencies, or `undefined`. */
function unmetDependencies(plan: MigrationPlan, slice: SliceState): string | undefined {
  const unmet = plan.migration.dependsOn.filter((dep) => slice.statuses.get(dep) !== "done");
  if (unmet.length === 0) return undefined;
  const list = unmet.map((dep) => `${dep} (${slice.statuses.get(dep) ?? "not registered"})`).join(", ");
  return `waiting: depends on ${list}`;
}

/** Why a migration cannot start yet because tables it needs are missing, or `undefined`. */
async function missingTables(ctx: RunContext, plan: MigrationPlan): Promise<string | undefined> {
  const requires = plan.migration.requires;
  const existing = await ctx.store.existingTables(requires);
  const missing = requires.filter((t) => !existing.has(t));
  return missing.length === 0
    ? undefined
    : `waiting: table ${missing.join(", ")} does not exist in this database`;
}

/** Runner defaults, then the definition's tuning, then the operator's live overrides stored in the row. */
function tuningFor(ctx: RunContext, plan: MigrationPlan, row: MigrationRow): Tuning {
  return withLiveOverrides(ctx.tuningOf(plan.migration.name), row.tuning);
}

/** The ETA window with this slice's point added, when there is one to add. */
function ratePoint(ctx: RunContext, row: MigrationRow, work: Work): { rateWindow?: string } {
  if (work.covered === null) return {};
  const now = ctx.wallClock();
  const points = [...(work.window ?? row.rateWindow ?? [])];
  const last = points.at(-1);
  if (last && now - last[0] < RATE_POINT_MIN_MS) return {};
  points.push([now, Number(work.covered)]);
  return { rateWindow: JSON.stringify(points.slice(-RATE_WINDOW_POINTS)) };
}
