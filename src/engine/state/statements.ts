/**
 * The writes to trickle's own tables that travel inside someone else's batch or transaction: the fence and the
 * lease renewal that every fenced batch carries, and the `_async_migrations` / `_async_migration_failures` parts
 * of a step, a walk piece, a quarantine and a retry (src/engine/plan.ts composes those batches with the SQL on the
 * user's table), plus the dry-run's lease. Each statement that returns the row comes with the decoder of what it
 * returns, so no caller reads a column of a result by name.
 *
 * SQL that the plan splices in (`nextKey`, `processed`, `piece`) is SQL on the user's table built by the plan;
 * the named parameters it may use are listed where it is taken. Every `:trickle_name` binds the migration's name.
 */
import type { InStatement, InValue, ResultSet } from "@libsql/client";
import { LeaseLostError } from "../errors.ts";
import { literal, SQL_NOW, sqlNowPlus } from "../sql.ts";
import { type Lease, MAX_ERROR_TEXT, type ScanPhase, toBigIntOrNull } from "./row.ts";
import { FAILURES_TABLE, FENCE_VIEW, STATE_TABLE } from "./schema.ts";

/** The statement that aborts its batch unless `lease` is still valid; first in every fenced batch (invariant 3). */
export function fence(lease: Lease): InStatement {
  return {
    sql: `INSERT INTO ${FENCE_VIEW} (name, owner, epoch) VALUES (?, ?, ?)`,
    args: [lease.name, lease.owner, lease.epoch],
  };
}

/** The assignments that renew `lease` and record the time of progress; every fenced write of a run has them. */
export function renewal(lease: Lease): string {
  return `last_update_at = ${SQL_NOW}, lease_expires_at = ${sqlNowPlus(lease.ttlMs)}`;
}

/**
 * The migration's cursor as stored, as an SQL expression: a step's data change reads its upper bound from the
 * cursor update that precedes it in the same transaction.
 */
export function storedCursor(name: string): string {
  return `(SELECT cursor FROM ${STATE_TABLE} WHERE name = ${literal(name)})`;
}

/**
 * Moves the cursor to `nextKey` (a scalar subquery on the user's table; NULL when no key is left), or to the
 * frozen upper bound `:trickle_hi` when it is NULL. `args` binds what `nextKey` uses, `:trickle_hi` and
 * `:trickle_name` included.
 */
export function advanceCursor(nextKey: string, args: Record<string, InValue>): InStatement {
  return {
    sql: `UPDATE ${STATE_TABLE} SET cursor = COALESCE((${nextKey}),
              :trickle_hi)
            WHERE name = :trickle_name`,
    args,
  };
}

/** Moves the cursor to `key` (a single-key step, or a quarantined key). */
export function cursorTo(name: string, key: bigint): InStatement {
  return {
    sql: `UPDATE ${STATE_TABLE} SET cursor = :trickle_key WHERE name = :trickle_name`,
    args: { ":trickle_key": key, ":trickle_name": name },
  };
}

/** What a step's progress update returns. */
export interface StepProgress {
  readonly cursor: bigint;
  readonly rowsProcessed: bigint;
}

/**
 * A step's progress update: `rows_processed` grows by `processed` (SQL: `changes()` right after a data UPDATE, or
 * a count of the range's candidates), the step is counted, the sizer's batch size, the busy time not yet recorded
 * and the failed attempts before this step are saved, the reason and any throttle are cleared, and the lease is
 * renewed. `args` binds what `processed` uses. Returns the new cursor and `rows_processed` (`readStepProgress`).
 */
export function stepProgress(
  lease: Lease,
  processed: string,
  step: { readonly size: number; readonly busyMs: number; readonly failedAttempts: number },
  args: Record<string, InValue>,
): InStatement {
  return {
    sql: `UPDATE ${STATE_TABLE} SET rows_processed = rows_processed + ${processed}, steps = steps + 1,
              batch_size = :trickle_n, busy_ms = busy_ms + :trickle_busy, reason = NULL,
              failed_steps = failed_steps + :trickle_failed, progress_at = ${SQL_NOW}, throttle_reason = NULL,
              throttled_until = NULL, ${renewal(lease)}
            WHERE name = :trickle_name RETURNING CAST(cursor AS TEXT) AS cursor, CAST(rows_processed AS TEXT) AS rows_processed`,
    args: {
      ":trickle_n": BigInt(step.size),
      ":trickle_busy": BigInt(Math.round(step.busyMs)),
      ":trickle_failed": BigInt(step.failedAttempts),
      ":trickle_name": lease.name,
      ...args,
    },
  };
}

/** The answer of `stepProgress`; no row means the migration's row vanished: the run cannot go on. */
export function readStepProgress(result: ResultSet | undefined, name: string): StepProgress {
  const row = result?.rows[0];
  const cursor = toBigIntOrNull(row?.cursor);
  const rowsProcessed = toBigIntOrNull(row?.rows_processed);
  if (cursor === null || rowsProcessed === null) throw new LeaseLostError(name);
  return { cursor, rowsProcessed };
}

/** What recording one piece of a read-only walk returns. */
export type ScanRecord =
  | {
      readonly kind: "piece";
      readonly scanCursor: bigint;
      readonly scanCount: bigint;
      readonly minKey: bigint | null;
      readonly maxKey: bigint | null;
    }
  /** The piece met a key that is not an integer (`real 2.5`); nothing moved. */
  | { readonly kind: "bad-key"; readonly badKey: string };

/**
 * Records one piece of a read-only walk (invariant 10) in the same transaction that reads it: `piece` is a
 * one-row SELECT on the user's table with the columns `keys` (keys read), `last` (the last of them), `matches`
 * (rows counted), `first_match` / `last_match` (first and last counted key) and `bad` (a key that is not an
 * integer, or NULL). The walk's cursor moves to `last`, or to its end `:trickle_hi` once fewer than
 * `:trickle_piece` keys were left; its count grows by `matches`; while counting, the first and last counted keys
 * widen the data walk's range. Nothing moves when `bad` is set (`scan_problem` names it). Only a row still in
 * `phase` is touched. `piece` may use `:trickle_hi`, `:trickle_piece`, `:trickle_name` and what `args` binds.
 */
export function scanRecord(
  lease: Lease,
  phase: ScanPhase,
  walk: { readonly piece: string; readonly end: bigint | null; readonly size: number },
  args: Record<string, InValue>,
): InStatement {
  const counting = phase === "counting" ? "1" : "0";
  return {
    sql: `UPDATE ${STATE_TABLE} SET
              scan_cursor = CASE WHEN p.bad IS NOT NULL THEN scan_cursor
                WHEN p.keys < :trickle_piece OR p.last >= :trickle_hi THEN :trickle_hi ELSE p.last END,
              scan_count = scan_count + CASE WHEN p.bad IS NULL THEN COALESCE(p.matches, 0) ELSE 0 END,
              min_key = CASE WHEN ${counting} AND p.bad IS NULL THEN COALESCE(min_key, p.first_match) ELSE min_key END,
              max_key = CASE WHEN ${counting} AND p.bad IS NULL THEN COALESCE(p.last_match, max_key) ELSE max_key END,
              scan_problem = p.bad, progress_at = ${SQL_NOW}, ${renewal(lease)}
            FROM (${walk.piece}) AS p
            WHERE name = :trickle_name AND phase = :trickle_phase
            RETURNING CAST(scan_cursor AS TEXT) AS scan_cursor, CAST(scan_count AS TEXT) AS scan_count,
              CAST(min_key AS TEXT) AS min_key, CAST(max_key AS TEXT) AS max_key, scan_problem`,
    args: {
      ":trickle_hi": walk.end,
      ":trickle_piece": BigInt(walk.size),
      ":trickle_name": lease.name,
      ":trickle_phase": phase,
      ...args,
    },
  };
}

/** The answer of `scanRecord`; no row means the row vanished or left this phase: the run cannot go on. */
export function readScanRecord(result: ResultSet | undefined, name: string): ScanRecord {
  const row = result?.rows[0];
  if (!row) throw new LeaseLostError(name);
  if (row.scan_problem !== null && row.scan_problem !== undefined) {
    return { kind: "bad-key", badKey: String(row.scan_problem) };
  }
  const scanCursor = toBigIntOrNull(row.scan_cursor);
  const scanCount = toBigIntOrNull(row.scan_count);
  if (scanCursor === null || scanCount === null) throw new LeaseLostError(name);
  return {
    kind: "piece",
    scanCursor,
    scanCount,
    minKey: toBigIntOrNull(row.min_key),
    maxKey: toBigIntOrNull(row.max_key),
  };
}

/**
 * SQL condition on a row of the user's table `table` (quoted) keyed by `key` (quoted): it is not an unresolved
 * quarantined key of the migration `:trickle_name`.
 */
export function notQuarantined(table: string, key: string): string {
  return `NOT EXISTS (SELECT 1 FROM ${FAILURES_TABLE} trickle_f WHERE trickle_f.name = :trickle_name
      AND trickle_f.key = ${table}.${key} AND trickle_f.resolved_at IS NULL)`;
}

/** The migration's unresolved quarantined rows, counted from the failures table (uses `:trickle_name`). */
const UNRESOLVED_COUNT = `(SELECT COUNT(*) FROM ${FAILURES_TABLE} WHERE name = :trickle_name AND resolved_at IS NULL)`;

/** What a successful retry of a quarantined row returns. */
export interface RetryCounts {
  readonly rowsProcessed: bigint;
  readonly quarantined: bigint;
}

/** A single key whose step failed deterministically, as the quarantine records it. */
export interface QuarantineFailure {
  readonly key: bigint;
  /** The pass of the run it failed in. */
  readonly pass: number;
  readonly error: string;
  /** Deterministic step failures before this record, added to `failed_steps`. */
  readonly failedAttempts: number;
}

/**
 * Records `key` as quarantined (a new failure, or one more attempt of a known one) and recounts the migration's
 * quarantined rows; the failed attempts before it are added to `failed_steps` and the lease is renewed. Goes in the
 * batch that moves the cursor to `key` (`cursorTo`). The last statement returns the cursor, `rows_processed` and
 * `quarantined` (`readQuarantineRecord`).
 */
export function quarantineRecord(lease: Lease, failure: QuarantineFailure): InStatement[] {
  const name = { ":trickle_name": lease.name };
  return [
    {
      sql: `INSERT INTO ${FAILURES_TABLE} (name, key, error, at, attempts, pass)
              VALUES (:trickle_name, :trickle_key, :trickle_error, ${SQL_NOW}, 1, :trickle_pass)
              ON CONFLICT (name, key) DO UPDATE SET error = excluded.error, at = excluded.at,
                attempts = attempts + 1, pass = excluded.pass, resolved_at = NULL, resolution = NULL,
                retry_requested_at = NULL`,
      args: {
        ...name,
        ":trickle_key": failure.key,
        ":trickle_error": failure.error.slice(0, MAX_ERROR_TEXT),
        ":trickle_pass": BigInt(failure.pass),
      },
    },
    {
      sql: `UPDATE ${STATE_TABLE} SET quarantined = ${UNRESOLVED_COUNT},
                failed_steps = failed_steps + :trickle_failed, progress_at = ${SQL_NOW}, ${renewal(lease)}
              WHERE name = :trickle_name
              RETURNING CAST(cursor AS TEXT) AS cursor, CAST(rows_processed AS TEXT) AS rows_processed,
                CAST(quarantined AS TEXT) AS quarantined`,
      args: { ...name, ":trickle_failed": BigInt(failure.failedAttempts) },
    },
  ];
}

/** The answer of the last statement of `quarantineRecord`: the cursor (the quarantined key) and the new count. */
export function readQuarantineRecord(
  result: ResultSet | undefined,
  name: string,
): { readonly cursor: bigint; readonly quarantined: bigint } {
  const row = result?.rows[0];
  const cursor = toBigIntOrNull(row?.cursor);
  const quarantined = toBigIntOrNull(row?.quarantined);
  if (cursor === null || quarantined === null) throw new LeaseLostError(name);
  return { cursor, quarantined };
}

/** `rows_processed` grows by `processed` (SQL: `changes()` or a count); `args` binds what it uses. */
export function addProcessed(
  name: string,
  processed: string,
  args: Record<string, InValue> = {},
): InStatement {
  return {
    sql: `UPDATE ${STATE_TABLE} SET rows_processed = rows_processed + ${processed} WHERE name = :trickle_name`,
    args: { ":trickle_name": name, ...args },
  };
}

/**
 * A retried quarantined `key` succeeded: its failure is marked resolved, the quarantined rows are recounted and
 * the lease renewed. Goes last in the retry's batch; the last statement returns `rows_processed` and
 * `quarantined` (`readRetryResolved`).
 */
export function retryResolved(lease: Lease, key: bigint): InStatement[] {
  return [
    {
      sql: `UPDATE ${FAILURES_TABLE} SET resolved_at = ${SQL_NOW}, resolution = 'retried', retry_requested_at = NULL
              WHERE name = :trickle_name AND key = :trickle_lo`,
      args: { ":trickle_lo": key, ":trickle_name": lease.name },
    },
    {
      sql: `UPDATE ${STATE_TABLE} SET quarantined = ${UNRESOLVED_COUNT}, progress_at = ${SQL_NOW},
                ${renewal(lease)}
              WHERE name = :trickle_name
              RETURNING CAST(rows_processed AS TEXT) AS rows_processed, CAST(quarantined AS TEXT) AS quarantined`,
      args: { ":trickle_name": lease.name },
    },
  ];
}

/** The answer of the last statement of `retryResolved`. */
export function readRetryResolved(result: ResultSet | undefined, name: string): RetryCounts {
  const row = result?.rows[0];
  const rowsProcessed = toBigIntOrNull(row?.rows_processed);
  const quarantined = toBigIntOrNull(row?.quarantined);
  if (rowsProcessed === null || quarantined === null) throw new LeaseLostError(name);
  return { rowsProcessed, quarantined };
}

/** `rows_processed` of `name` (the dry-run reads it before and after its step, inside its transaction). */
export function rowsProcessedStatement(name: string): InStatement {
  return {
    sql: `SELECT CAST(rows_processed AS TEXT) AS n FROM ${STATE_TABLE} WHERE name = ?`,
    args: [name],
  };
}

export function readRowsProcessed(result: ResultSet | undefined): bigint | null {
  return toBigIntOrNull(result?.rows[0]?.n);
}

/**
 * Sets up the row as a run starting now would (running, first pass, bounds frozen) and takes a lease for `owner`
 * — inside the dry-run's transaction only, so the rollback restores the run's own state. Returns the new epoch
 * (`readLeaseEpoch`).
 */
export function dryRunLeaseStatement(
  name: string,
  owner: string,
  range: { readonly minKey: bigint; readonly maxKey: bigint },
  ttlMs: number,
): InStatement {
  return {
    sql: `UPDATE ${STATE_TABLE} SET status = 'running', cursor = NULL, min_key = ?, max_key = ?, pass = 1,
            lease_owner = ?, lease_epoch = lease_epoch + 1, lease_expires_at = ${sqlNowPlus(ttlMs)}
          WHERE name = ${literal(name)} RETURNING CAST(lease_epoch AS TEXT) AS epoch`,
    args: [range.minKey, range.maxKey, owner],
  };
}

export function readLeaseEpoch(result: ResultSet | undefined): bigint | null {
  return toBigIntOrNull(result?.rows[0]?.epoch);
}
