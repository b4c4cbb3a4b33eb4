/**
 * Dry-run: one REAL step of a migration inside a transaction that is always rolled back, to show what a run would
 * do and how long it would take, while changing nothing.
 *
 * Inside one write transaction it creates what a run would create (the state table, the row, a dry-run lease,
 * missing prerequisite columns), freezes the bounds a run starting now would freeze, reads a few candidate rows of
 * the first range, runs the first step's statements exactly as a run would (fence, cursor, data change,
 * progress), reads the same rows again, and rolls everything back. From the step's measured time it projects the
 * whole run for the current schedule (slice budget, tick interval, yields between steps).
 *
 * Why an interactive transaction and not a batch: a `batch` that ends in a statement that always fails would be
 * one round trip and could never commit — but @libsql/client discards the results of every statement of a batch
 * that fails, and SQLite 3.45's RAISE() only takes a literal message, so neither the sample rows nor the step's
 * counts could come back out of it. The interactive transaction here is never committed: no COMMIT is ever sent;
 * `rollback()` ends it, and if that request is lost (a dropped connection, an expired stream on a remote server),
 * the server rolls the transaction back by itself. It holds the write lock for the step plus a few small reads —
 * one short operator action, not a recurring one (design invariant 1 is about the runner's steps). Index
 * prerequisites are never built here: building an index inside the transaction would hold the lock for as long
 * as the build takes; the report says so instead.
 *
 * A deterministic error inside the transaction (a poison row whose change violates a CHECK constraint, a `set`
 * that raises) is the dry-run's finding, not its failure: the report carries it in `failure` (what failed, the
 * key range, SQLite's code and message) with a note on what a run would do. Transient errors (the lock is busy)
 * are thrown, worth retrying. Either way the transaction ends in a rollback, also when SQLite has already rolled
 * it back itself (a trigger's `RAISE(ROLLBACK)`).
 *
 * Portable: only the `Client`/`Transaction` interfaces and `performance.now()`.
 */
import type { Client, InValue, Row, Transaction } from "@libsql/client";
import type { MigrationDefinition, ResolvedMigration } from "../migrations/define.ts";
import { classifyError, isRowLevelError } from "./errors.ts";
import { isSatisfied, prerequisiteStatement } from "./plan/prerequisites.ts";
import { MigrationPlan } from "./plan.ts";
import { quote } from "./sql.ts";
import { type Lease, toBigIntOrNull } from "./state/row.ts";
import { prepareStateIn } from "./state/schema.ts";
import {
  dryRunLeaseStatement,
  readLeaseEpoch,
  readRowsProcessed,
  rowsProcessedStatement,
} from "./state/statements.ts";
import { StateStore } from "./state/store.ts";
import { resolveTuning, type Tuning, withLiveOverrides } from "./tuning.ts";
import { writersPauseMs } from "./yield.ts";

export type JsonValue = string | number | boolean | null;

export interface DryRunOptions {
  /** Keys the step covers (default: the migration's current batch size, else the initial batch). */
  readonly batchSize?: number;
  /**
   * Time between the starts of two slices while work remains, ms. Default: back to back (slice budget plus the
   * yield), as the in-process scheduler runs them; give an external cron's interval (e.g. 60000) instead.
   */
  readonly tickIntervalMs?: number;
  /** Candidate rows shown before and after (default 3, at most 20). */
  readonly sampleSize?: number;
  /** The runner's tuning (the definition's tuning and live overrides are applied on top). */
  readonly tuning?: Partial<Tuning>;
}

/** One candidate row of the first range, before and after the rolled-back step. */
export interface DryRunSample {
  /** The row's key, as decimal text. */
  readonly key: string;
  readonly before: Readonly<Record<string, JsonValue>>;
  /** Null when the step deleted the row. */
  readonly after: Readonly<Record<string, JsonValue>> | null;
  /** Columns whose value the step changed. */
  readonly changed: readonly string[];
}

/** The one step that ran (and was rolled back). */
export interface DryRunStep {
  readonly batchSize: number;
  /** First and last key of the range (inclusive). */
  readonly fromKey: bigint;
  readonly toKey: bigint;
  /** Keys in the range, candidates or not. */
  readonly keys: bigint;
  /** Candidate rows the step changed (what `rows_processed` would count). */
  readonly rows: bigint;
  readonly durationMs: number;
}

/** The whole run, projected from the measured step for the current schedule. */
export interface DryRunProjection {
  /** Keys a run walks (every key in the frozen range, candidate or not). */
  readonly keysInRange: bigint;
  readonly rowsTotal: bigint;
  /** Keys per second inside steps, as measured. */
  readonly keysPerSecond: number;
  /** Batch size a run settles at (the step target at the measured rate, within min/max batch). */
  readonly batchAtTarget: number;
  readonly steps: number;
  readonly slices: number;
  /** Time inside steps. */
  readonly busySeconds: number;
  /** Wall time: steps, the yields between them, and the gaps between slices. */
  readonly wallSeconds: number;
  /**
   * The same while the application writes throughout the run: the default `writers` pause policy then waits,
   * after each step, for the longest busy-handler sleep a writer can be in (engine/yield.ts). A lower bound:
   * writers' backlogs extend some pauses further.
   */
  readonly wallSecondsWhileWriting: number;
  /** Share of wall time the migration may run: slice budget / tick interval (≤ 1). */
  readonly dutyCycle: number;
  readonly schedule: {
    readonly sliceBudgetMs: number;
    readonly tickIntervalMs: number;
    readonly yieldMs: number;
    /** The pause after each step while the application writes (`writers` policy). */
    readonly pauseWhileWritingMs: number;
    readonly stepTargetMs: number;
  };
}

/** A deterministic error the dry-run ran into inside its transaction (it changed nothing). */
export interface DryRunFailure {
  /**
   * What failed: `prepare` (creating the state row or a prerequisite column), `bounds` (finding the candidates),
   * `read` (counting keys, reading sample rows) or `step` (the step's statements: the data change).
   */
  readonly phase: "prepare" | "bounds" | "read" | "step";
  /** The key range of the step (inclusive); null before the range was known. */
  readonly fromKey: bigint | null;
  readonly toKey: bigint | null;
  /** SQLite's (or the client's) error code, e.g. `SQLITE_CONSTRAINT_CHECK`. */
  readonly code: string;
  /** SQLite's message. */
  readonly message: string;
}

/** What a run of this migration would do, from one real step that was rolled back. */
export interface DryRunReport {
  readonly name: string;
  readonly description: string;
  readonly table: string;
  readonly key: string;
  readonly filter: string;
  readonly status: string | null;
  /** Set when the migration cannot start here (missing tables, a key that cannot be walked). */
  readonly blockedBy: string | null;
  /** Candidate rows now, and the key range a run starting now would freeze; null when blocked. */
  readonly candidates: {
    readonly rowsTotal: bigint;
    readonly minKey: bigint | null;
    readonly maxKey: bigint | null;
  } | null;
  readonly prerequisites: MigrationDefinition["prerequisites"];
  /** SQL of one step (fence, cursor advance, data change, progress), for review. */
  readonly stepSql: readonly string[];
  /** True when a step ran inside the transaction and the transaction was rolled back. */
  readonly rolledBack: boolean;
  readonly step: DryRunStep | null;
  /**
   * Set when a deterministic error stopped the dry-run inside its transaction (then `step` and `projection` are
   * null, and nothing was changed); null otherwise.
   */
  readonly failure: DryRunFailure | null;
  readonly samples: readonly DryRunSample[];
  readonly projection: DryRunProjection | null;
  /** What the report could not show or had to assume. */
  readonly notes: readonly string[];
}

const DRY_RUN_OWNER = "trickle-dry-run";

/**
 * Runs one step of `migration` in a transaction that is rolled back, and reports it. Changes nothing in the
 * database. A deterministic error inside the transaction is reported in `failure`; other errors are thrown (a
 * transient one — the lock is busy — is worth retrying).
 */
export async function dryRunMigration(
  client: Client,
  migration: ResolvedMigration,
  options: DryRunOptions = {},
): Promise<DryRunReport> {
  const store = new StateStore(client);
  const plan = new MigrationPlan(migration);
  const tables = await store.existingTables([...new Set([migration.table, ...migration.requires])]);
  const missing = migration.requires.filter((t) => !tables.has(t));
  const stateExists = await store.hasState();
  const row = stateExists ? await store.get(migration.name) : undefined;
  let blockedBy: string | null = missing.length > 0 ? `table ${missing.join(", ")} does not exist` : null;
  if (blockedBy === null) blockedBy = (await plan.keyProblem(client)) ?? null;
  const tuning = effectiveTuning(migration, options.tuning, row?.tuning ?? null);
  const size = Math.max(
    tuning.minBatch,
    Math.min(tuning.maxBatch, Math.floor(options.batchSize ?? row?.batchSize ?? tuning.initialBatch)),
  );
  const base = {
    name: migration.name,
    description: migration.definition.description,
    table: migration.table,
    key: migration.key,
    filter: migration.filter,
    status: row?.status ?? null,
    prerequisites: migration.prerequisites,
  };
  const reviewLease: Lease = { name: migration.name, owner: DRY_RUN_OWNER, epoch: 0n, ttlMs: 60_000 };
  const sql = (minKey: bigint | null, maxKey: bigint | null) =>
    plan
      .stepBatch(reviewLease, { cursor: null, minKey: minKey ?? 0n, maxKey: maxKey ?? 0n, pass: 1 }, size, 0)
      .statements.map((s) => (typeof s === "string" ? s : s.sql).replace(/\s+/g, " ").trim());
  if (blockedBy !== null) {
    return {
      ...base,
      blockedBy,
      candidates: null,
      stepSql: sql(null, null),
      rolledBack: false,
      step: null,
      failure: null,
      samples: [],
      projection: null,
      notes: [],
    };
  }

  const notes: string[] = [];
  // Where the dry-run is, for the report of a failure: the phase, and what it knows so far.
  let phase: DryRunFailure["phase"] = "prepare";
  let candidates: DryRunReport["candidates"] = null;
  let range: { fromKey: bigint | null; toKey: bigint | null } = { fromKey: null, toKey: null };
  const tx = await client.transaction("write");
  try {
    await prepareStateIn(tx, migration.name);
    await preparePrerequisites(tx, migration, notes);
    phase = "bounds";
    const bounds = await plan.readBounds(tx);
    candidates = bounds;
    if (bounds.minKey === null || bounds.maxKey === null) {
      notes.push("no candidate rows: a run would verify and finish at once");
      return {
        ...base,
        blockedBy: null,
        candidates,
        stepSql: sql(null, null),
        rolledBack: true,
        step: null,
        failure: null,
        samples: [],
        projection: projectRun(0n, bounds.rowsTotal, null, tuning, options.tickIntervalMs),
        notes,
      };
    }
    phase = "read";
    const start = { cursor: null, minKey: bounds.minKey, maxKey: bounds.maxKey, pass: 1 };
    const lease = await takeDryRunLease(tx, migration.name, bounds.minKey, bounds.maxKey);
    const toKey = (await plan.readRangeEnd(tx, start, size)) ?? bounds.maxKey;
    range = { fromKey: bounds.minKey, toKey };
    const k = quote(migration.key);
    const t = quote(migration.table);
    const keysInRange = countOf(
      await tx.execute({
        sql: `SELECT CAST(COUNT(*) AS TEXT) AS n FROM ${t} WHERE ${k} >= ? AND ${k} <= ?`,
        args: [bounds.minKey, bounds.maxKey],
      }),
    );
    const keysInStep = countOf(
      await tx.execute({
        sql: `SELECT CAST(COUNT(*) AS TEXT) AS n FROM ${t} WHERE ${k} >= ? AND ${k} <= ?`,
        args: [bounds.minKey, toKey],
      }),
    );
    const sampleSize = Math.max(0, Math.min(20, Math.floor(options.sampleSize ?? 3)));
    const before = await tx.execute({
      sql: `SELECT CAST(${k} AS TEXT) AS trickle_key, * FROM ${t}
            WHERE ${k} >= ? AND ${k} <= ? AND (${migration.filter}) ORDER BY ${k} LIMIT ?`,
      args: [bounds.minKey, toKey, BigInt(sampleSize)],
    });
    const batch = plan.stepBatch(lease, start, size, 0);
    const processedBefore = readRowsProcessed(await tx.execute(rowsProcessedStatement(migration.name)));
    phase = "step";
    const began = performance.now();
    const results = await tx.batch(batch.statements);
    const durationMs = performance.now() - began;
    phase = "read";
    const processedAfter = batch.decode(results).rowsProcessed;
    const keys = before.rows.map((r) => String(r.trickle_key));
    const after =
      keys.length === 0
        ? undefined
        : await tx.execute({
            sql: `SELECT CAST(${k} AS TEXT) AS trickle_key, * FROM ${t} WHERE ${k} IN (${keys.map(() => "?").join(", ")})`,
            args: keys.map((key) => BigInt(key)),
          });
    const afterByKey = new Map((after?.rows ?? []).map((r) => [String(r.trickle_key), r]));
    const columns = before.columns.filter((c) => c !== "trickle_key");
    const samples = before.rows.map((r): DryRunSample => {
      const key = String(r.trickle_key);
      const was = rowObject(r, columns);
      const nowRow = afterByKey.get(key);
      const is = nowRow ? rowObject(nowRow, columns) : null;
      const changed = is === null ? columns : columns.filter((c) => was[c] !== is[c]);
      return { key, before: was, after: is, changed };
    });
    const step: DryRunStep = {
      batchSize: size,
      fromKey: bounds.minKey,
      toKey,
      keys: keysInStep,
      rows: processedBefore !== null ? processedAfter - processedBefore : 0n,
      durationMs: round(durationMs, 3),
    };
    return {
      ...base,
      blockedBy: null,
      candidates,
      stepSql: sql(bounds.minKey, bounds.maxKey),
      rolledBack: true,
      step,
      failure: null,
      samples,
      projection: projectRun(keysInRange, bounds.rowsTotal, step, tuning, options.tickIntervalMs),
      notes,
    };
  } catch (thrown) {
    const error = classifyError(thrown);
    if (error.kind !== "deterministic") throw thrown;
    const failure: DryRunFailure = {
      phase,
      ...range,
      code: error.code,
      message: sqliteMessage(error.message),
    };
    notes.push(failureNote(migration, failure, isRowLevelError(error), tuning));
    return {
      ...base,
      blockedBy: null,
      candidates,
      stepSql: sql(range.fromKey, candidates?.maxKey ?? null),
      rolledBack: true,
      step: null,
      failure,
      samples: [],
      projection: null,
      notes,
    };
  } finally {
    // Never a COMMIT: whatever happened above, the transaction ends in a rollback.
    await endTransaction(tx);
  }
}

/**
 * Rolls the transaction back and releases it. SQLite may have rolled it back already (a trigger's
 * `RAISE(ROLLBACK)`, some I/O errors): then there is nothing to roll back, and asking would only fail.
 */
async function endTransaction(tx: Transaction): Promise<void> {
  try {
    if (!tx.closed) await tx.rollback();
  } finally {
    tx.close();
  }
}

/** The message without the code prefixes @libsql/client puts before it (`SQLITE_ERROR: SQLITE_ERROR: …`). */
function sqliteMessage(message: string): string {
  return message.replace(/^(?:[A-Z][A-Z0-9_]*: )+/, "");
}

/** One line for the operator: what failed, where, and what a run would do about it. */
function failureNote(
  migration: ResolvedMigration,
  failure: DryRunFailure,
  rowLevel: boolean,
  tuning: Tuning,
): string {
  const where = failure.fromKey === null ? "" : ` over ${migration.key} ${failure.fromKey}..${failure.toKey}`;
  const what = failure.phase === "step" ? `the step${where}` : `the dry-run (${failure.phase}${where})`;
  let run = "a run would meet the same error";
  if (failure.phase === "step" && !rowLevel) {
    run = "a run would fail with this message (the statement fails whatever the rows)";
  } else if (failure.phase === "step" && tuning.maxQuarantined === 0) {
    run = "a run would fail with this message (quarantine is off)";
  } else if (failure.phase === "step") {
    run =
      `a run would bisect it and quarantine the failing rows (at most ${tuning.maxQuarantined}), or fail ` +
      "if every row of the range fails alike";
  }
  return `${what} failed: ${failure.message} (${failure.code}); nothing was changed; ${run}`;
}

/**
 * Projects a run from one measured step. Steps settle at the step target (`batchAtTarget` keys at the measured
 * rate); each is followed by the yield; a slice fills its budget with steps and yields; slices start every tick
 * interval, so between slices the run waits out the rest of the interval (only `dutyCycle` of wall time is spent
 * in slices). Verification at the end and the first, smaller steps are not included.
 */
export function projectRun(
  keysInRange: bigint,
  rowsTotal: bigint,
  step: Pick<DryRunStep, "keys" | "durationMs"> | null,
  t: Tuning,
  tickIntervalMs?: number,
): DryRunProjection {
  const interval = Math.max(tickIntervalMs ?? t.sliceBudgetMs + t.yieldMs, t.sliceBudgetMs);
  const dutyCycle = t.sliceBudgetMs / interval;
  const keys = Number(keysInRange);
  const schedule = (pauseWhileWritingMs: number) => ({
    sliceBudgetMs: t.sliceBudgetMs,
    tickIntervalMs: interval,
    yieldMs: t.yieldMs,
    pauseWhileWritingMs,
    stepTargetMs: t.stepTargetMs,
  });
  if (step === null || keys === 0 || step.keys === 0n) {
    return {
      keysInRange,
      rowsTotal,
      keysPerSecond: 0,
      batchAtTarget: 0,
      steps: 0,
      slices: 0,
      busySeconds: 0,
      wallSeconds: 0,
      wallSecondsWhileWriting: 0,
      dutyCycle: round(dutyCycle, 4),
      schedule: schedule(writersPauseMs(t.stepTargetMs, t.yieldMs)),
    };
  }
  const keysPerMs = Number(step.keys) / Math.max(step.durationMs, 0.1);
  const batchAtTarget = Math.max(t.minBatch, Math.min(t.maxBatch, Math.floor(keysPerMs * t.stepTargetMs)));
  const stepMs = batchAtTarget / keysPerMs;
  const steps = Math.ceil(keys / batchAtTarget);
  const busyMs = keys / keysPerMs;
  const slicesAndWall = (pauseMs: number) => {
    // Within a slice each step is followed by a pause; the slice budget holds both.
    const inSlicesMs = busyMs / (stepMs / (stepMs + pauseMs));
    const count = Math.max(1, Math.ceil(inSlicesMs / t.sliceBudgetMs));
    // Every slice but the last is followed by the rest of its tick interval; the last ends the run.
    return { count, wallMs: (count - 1) * interval + (inSlicesMs - (count - 1) * t.sliceBudgetMs) };
  };
  const { count: slices, wallMs } = slicesAndWall(t.yieldMs);
  const writingPause = writersPauseMs(stepMs, t.yieldMs);
  return {
    keysInRange,
    rowsTotal,
    keysPerSecond: round(keysPerMs * 1000, 1),
    batchAtTarget,
    steps,
    slices,
    busySeconds: round(busyMs / 1000, 3),
    wallSeconds: round(wallMs / 1000, 3),
    wallSecondsWhileWriting: round(slicesAndWall(writingPause).wallMs / 1000, 3),
    dutyCycle: round(dutyCycle, 4),
    schedule: schedule(writingPause),
  };
}

function effectiveTuning(
  migration: ResolvedMigration,
  runner: Partial<Tuning> | undefined,
  overrides: Readonly<Record<string, number>> | null,
): Tuning {
  return withLiveOverrides(resolveTuning(runner, migration.tuning as Partial<Tuning>), overrides);
}

/** Columns a run would add are added here too (rolled back); missing indexes are reported, never built. */
async function preparePrerequisites(
  tx: Transaction,
  migration: ResolvedMigration,
  notes: string[],
): Promise<void> {
  for (const p of migration.prerequisites) {
    if (p.kind === "column") {
      if (await isSatisfied(tx, p)) continue;
      await tx.execute(prerequisiteStatement(p));
      notes.push(
        `column ${p.table}.${p.column} does not exist yet: added inside the rolled-back transaction`,
      );
      continue;
    }
    if (!(await isSatisfied(tx, p))) {
      notes.push(
        `index ${p.name} on ${p.table}(${p.columns.join(", ")}) does not exist yet; a run creates it before its ` +
          "first step, the dry-run does not (it would hold the write lock while building it), so the measured step " +
          "ran without it and the projection is pessimistic",
      );
    }
  }
}

/** A lease for the step's fence, held only inside the transaction: the run's own state is restored by rollback. */
async function takeDryRunLease(
  tx: Transaction,
  name: string,
  minKey: bigint,
  maxKey: bigint,
): Promise<Lease> {
  const ttlMs = 60_000;
  const result = await tx.execute(dryRunLeaseStatement(name, DRY_RUN_OWNER, { minKey, maxKey }, ttlMs));
  const epoch = readLeaseEpoch(result);
  if (epoch === null) throw new Error(`dry-run: no state row for ${name}`);
  return { name, owner: DRY_RUN_OWNER, epoch, ttlMs };
}

function countOf(result: { rows: Row[] }): bigint {
  return toBigIntOrNull(result.rows[0]?.n) ?? 0n;
}

function rowObject(row: Row, columns: readonly string[]): Record<string, JsonValue> {
  return Object.fromEntries(columns.map((c) => [c, jsonValue(row[c])]));
}

function jsonValue(value: InValue | undefined): JsonValue {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (typeof value === "number" || typeof value === "string" || typeof value === "boolean") return value;
  if (value instanceof ArrayBuffer) return `<blob ${value.byteLength} bytes>`;
  if (value instanceof Uint8Array) return `<blob ${value.byteLength} bytes>`;
  return String(value);
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
