/**
 * The SQL of one migration on the user's table: the bounds read that starts a run, the batches of a run — a step,
 * a piece of a read-only walk, a quarantine, a retry — each composed with the state writes it carries
 * (src/engine/state/statements.ts) and decoded into a typed result, the whole-table verification read, and the
 * prerequisites. Everything here builds statements or reads; nothing here decides when to run them.
 */
import type { Client, InStatement, InValue, ResultSet } from "@libsql/client";
import type { ResolvedMigration, StepRange } from "../migrations/define.ts";
import { fragmentProblem, keyProblem as provenKeyProblem } from "./plan/key-check.ts";
import { isSatisfied, prerequisiteStatement } from "./plan/prerequisites.ts";
import { quote } from "./sql.ts";
import { type Lease, type MigrationRow, type ScanPhase, toBigIntOrNull } from "./state/row.ts";
import type { Queryable } from "./state/schema.ts";
import {
  addProcessed,
  advanceCursor,
  cursorTo,
  fence,
  notQuarantined,
  type QuarantineFailure,
  quarantineRecord,
  type RetryCounts,
  readQuarantineRecord,
  readRetryResolved,
  readScanRecord,
  readStepProgress,
  retryResolved,
  type ScanRecord,
  type StepProgress,
  scanRecord,
  stepProgress,
  storedCursor,
} from "./state/statements.ts";
import type { StateStore } from "./state/store.ts";

export type { Queryable } from "./state/schema.ts";
export type { RetryCounts, ScanRecord, StepProgress } from "./state/statements.ts";

/**
 * The statements of one write batch and how to read its answer: whoever runs `statements` in one
 * `client.batch(..., "write")` hands the results to `decode` and gets the batch's typed result (or a
 * `LeaseLostError` when the migration's row no longer answers).
 */
export interface Batch<T> {
  readonly statements: InStatement[];
  decode(results: readonly ResultSet[]): T;
}

/** One piece of a walk as `readScanPiece` counted it (the columns `scanRecord` records). */
export interface ScanFigures {
  readonly keys: bigint;
  readonly last: bigint | null;
  readonly matches: bigint | null;
  readonly firstMatch: bigint | null;
  readonly lastMatch: bigint | null;
  readonly bad: string | null;
}

/** A piece counted beforehand, as the one-row SELECT `scanRecord` records: its figures, bound. */
function countedPiece(f: ScanFigures): { piece: string; args: Record<string, InValue> } {
  return {
    piece: `SELECT :trickle_keys AS keys, :trickle_last AS last, :trickle_matches AS matches,
              :trickle_first_match AS first_match, :trickle_last_match AS last_match, :trickle_bad AS bad`,
    args: {
      ":trickle_keys": f.keys,
      ":trickle_last": f.last,
      ":trickle_matches": f.matches,
      ":trickle_first_match": f.firstMatch,
      ":trickle_last_match": f.lastMatch,
      ":trickle_bad": f.bad,
    },
  };
}

/** Where one step starts: after the cursor, or (first step of a pass) at the run's lower bound inclusive. */
export interface StepStart {
  readonly cursor: bigint | null;
  readonly minKey: bigint;
  readonly maxKey: bigint;
  readonly pass: number;
}

export interface RunBounds {
  readonly minKey: bigint | null;
  readonly maxKey: bigint | null;
  readonly rowsTotal: bigint;
}

export class MigrationPlan {
  readonly migration: ResolvedMigration;
  readonly #table: string;
  readonly #key: string;

  constructor(migration: ResolvedMigration) {
    this.migration = migration;
    this.#table = quote(migration.table);
    this.#key = quote(migration.key);
  }

  /**
   * The table's largest key, by one index (or rowid) lookup: the frozen upper bound of a new run's walks
   * (invariant 2). Null for an empty table. A largest value that is not an integer (TEXT and BLOB sort after
   * every number) is reported as `badKey`.
   */
  async readKeyEnd(client: Queryable): Promise<{ end: bigint | null; badKey: string | null }> {
    const row = (
      await client.execute(
        `SELECT CAST(m AS TEXT) AS m, typeof(m) AS t, quote(m) AS q FROM (SELECT MAX(${this.#key}) AS m FROM ${this.#table})`,
      )
    ).rows[0];
    if (!row || row.t === "null") return { end: null, badKey: null };
    if (row.t !== "integer") return { end: null, badKey: `${String(row.t)} ${String(row.q)}` };
    return { end: toBigIntOrNull(row.m), badKey: null };
  }

  /**
   * One piece of a read-only walk over the key (invariant 10), as ONE fenced write batch: the next `size` keys
   * after `row.scanCursor` (or from the walk's start) up to `row.scanEnd` are counted — candidates while
   * counting, rows still needing work (not quarantined) while verifying — and the walk's cursor and count move
   * in the same transaction (`scanRecord`), so a piece is counted exactly once whatever crashes or takeovers
   * happen around it. With `counted` (the piece read just before by `readScanPiece`, on a local file) the batch
   * records those figures instead: still exactly once, because the fence lets only the lease holder that read them
   * move the cursor from where the read began. Every key in the piece must be an integer (invariant 11): if one is
   * not, nothing moves and the piece decodes as `bad-key`. While counting, the first and last candidate keys widen
   * the data walk's range. The data table is only read.
   */
  scanBatch(
    lease: Lease,
    phase: ScanPhase,
    row: MigrationRow,
    size: number,
    counted?: ScanFigures,
  ): Batch<ScanRecord> {
    const { piece, args } = counted ? countedPiece(counted) : this.#scanPiece(phase, row);
    const name = this.migration.name;
    return {
      statements: [fence(lease), scanRecord(lease, phase, { piece, end: row.scanEnd, size }, args)],
      decode: (results) => readScanRecord(results[1], name),
    };
  }

  /**
   * Counts one piece of a walk with a read of its own, for `scanBatch` to record: on a local file the walk reads
   * first, so the write lock covers the record alone, as a step reads its range end first.
   */
  async readScanPiece(q: Queryable, phase: ScanPhase, row: MigrationRow, size: number): Promise<ScanFigures> {
    const { piece, args } = this.#scanPiece(phase, row);
    const result = await q.execute({
      sql: `SELECT CAST(keys AS TEXT) AS keys, CAST(last AS TEXT) AS last, CAST(matches AS TEXT) AS matches,
              CAST(first_match AS TEXT) AS first_match, CAST(last_match AS TEXT) AS last_match, bad FROM (${piece})`,
      args: {
        ...args,
        ":trickle_hi": row.scanEnd,
        ":trickle_piece": BigInt(size),
        ":trickle_name": this.migration.name,
      },
    });
    const r = result.rows[0];
    return {
      keys: toBigIntOrNull(r?.keys) ?? 0n,
      last: toBigIntOrNull(r?.last),
      matches: toBigIntOrNull(r?.matches),
      firstMatch: toBigIntOrNull(r?.first_match),
      lastMatch: toBigIntOrNull(r?.last_match),
      bad: r?.bad === null || r?.bad === undefined ? null : String(r.bad),
    };
  }

  /** The SELECT that counts one piece of a walk (see `scanRecord` for its columns). */
  #scanPiece(phase: ScanPhase, row: MigrationRow): { piece: string; args: Record<string, InValue> } {
    const k = this.#key;
    const args: Record<string, InValue> = {};
    let lower = "1";
    if (row.scanCursor !== null) {
      lower = `${k} > :trickle_lo`;
      args[":trickle_lo"] = row.scanCursor;
    } else if (phase === "verifying" && row.minKey !== null) {
      lower = `${k} >= :trickle_lo`;
      args[":trickle_lo"] = row.minKey;
    }
    const condition =
      phase === "verifying"
        ? `(${this.migration.verify}) AND ${notQuarantined(this.#table, k)}`
        : this.migration.filter;
    const piece = `SELECT COUNT(*) AS keys, MAX(k) AS last, SUM(c) AS matches,
        MIN(CASE WHEN c THEN k END) AS first_match, MAX(CASE WHEN c THEN k END) AS last_match,
        MIN(CASE WHEN typeof(k) <> 'integer' THEN typeof(k) || ' ' || quote(k) END) AS bad
      FROM (SELECT ${k} AS k, CASE WHEN (${condition}) THEN 1 ELSE 0 END AS c FROM ${this.#table}
            WHERE ${lower} AND ${k} <= :trickle_hi ORDER BY ${k} LIMIT :trickle_piece)`;
    return { piece, args };
  }

  /** The message for a key value that is not an integer (invariant 11). */
  badKeyMessage(badKey: string): string {
    return `table "${this.migration.table}", key "${this.migration.key}" holds the value ${badKey}, not an integer: the key must hold only distinct, non-NULL integers`;
  }

  /** Whether verification can find anything: a definition without filter or verify has nothing to look for. */
  get verifies(): boolean {
    return this.migration.verify.trim() !== "0";
  }

  /** Candidate bounds and count for a new run; the upper bound is frozen from here on (invariant 2). */
  boundsStatement(): InStatement {
    return `SELECT CAST(MIN(${this.#key}) AS TEXT) AS min_key, CAST(MAX(${this.#key}) AS TEXT) AS max_key,
      CAST(COUNT(*) AS TEXT) AS total FROM ${this.#table} WHERE (${this.migration.filter})`;
  }

  async readBounds(client: Queryable): Promise<RunBounds> {
    const row = (await client.execute(this.boundsStatement())).rows[0];
    if (!row) throw new Error(`bounds query for ${this.migration.name} returned no row`);
    const rowsTotal = toBigIntOrNull(row.total);
    if (rowsTotal === null) throw new Error(`bounds query for ${this.migration.name} returned no count`);
    return { minKey: toBigIntOrNull(row.min_key), maxKey: toBigIntOrNull(row.max_key), rowsTotal };
  }

  /**
   * Rows of the whole table that still need work (the definition's `verify` condition), for `trickle verify`:
   * walked read-only by key in pieces of at most `pieceKeys` keys (invariant 10), so no statement scales with the
   * table. Nothing is recorded; `onPiece` sees the running count.
   */
  async readResidual(
    client: Queryable,
    options: { pieceKeys?: number; onPiece?: (keysSeen: bigint, residual: bigint) => void } = {},
  ): Promise<bigint> {
    const k = this.#key;
    const pieceKeys = BigInt(options.pieceKeys ?? 50_000);
    let after: bigint | null = null;
    let residual = 0n;
    let seen = 0n;
    for (;;) {
      const lower = after === null ? "1" : `${k} > :trickle_lo`;
      const row = (
        await client.execute({
          sql: `SELECT COUNT(*) AS keys, CAST(MAX(k) AS TEXT) AS last, CAST(SUM(c) AS TEXT) AS matches
                FROM (SELECT ${k} AS k, CASE WHEN (${this.migration.verify}) THEN 1 ELSE 0 END AS c
                      FROM ${this.#table} WHERE ${lower} AND typeof(${k}) = 'integer'
                      ORDER BY ${k} LIMIT :trickle_piece)`,
          args: { ":trickle_piece": pieceKeys, ...(after === null ? {} : { ":trickle_lo": after }) },
        })
      ).rows[0];
      const keys = BigInt(Number(row?.keys ?? 0));
      residual += toBigIntOrNull(row?.matches) ?? 0n;
      seen += keys;
      options.onPiece?.(seen, residual);
      const last = toBigIntOrNull(row?.last);
      if (keys < pieceKeys || last === null) return residual;
      after = last;
    }
  }

  /**
   * One step as one write batch (invariant 1): fence, advance the cursor over the next `size` keys (or to `key`,
   * the range's last key when the runner read it just before, with `readRangeEnd`), the data change for exactly
   * that range, and the progress update — committed together or not at all. Decodes into the new cursor and
   * `rows_processed`.
   */
  stepBatch(
    lease: Lease,
    start: StepStart,
    size: number,
    busyMs: number,
    failedAttempts = 0,
    key?: bigint,
  ): Batch<StepProgress> {
    const m = this.migration;
    const k = this.#key;
    // Re-sweeps only visit rows that still need work, and not the quarantined ones (they would fail again).
    const filter = start.pass > 1 ? `(${m.verify}) AND ${notQuarantined(this.#table, k)}` : m.filter;
    const lower = start.cursor === null ? `${k} >= :trickle_lo` : `${k} > :trickle_lo`;
    const lo = start.cursor ?? start.minKey;
    // The step's upper bound is the cursor as its own cursor update stored it, read inside the same transaction.
    const inRange = `${lower} AND ${k} <= ${storedCursor(m.name)}`;
    const nameArg = { ":trickle_name": m.name };
    const advance = key === undefined ? this.#advance(start, size) : cursorTo(m.name, key);
    const step = { size, busyMs, failedAttempts };
    if (m.definition.set !== undefined) {
      const data: InStatement = {
        sql: `UPDATE ${this.#table} SET ${m.definition.set} WHERE ${inRange} AND (${filter})`,
        args: { ":trickle_lo": lo, ...nameArg },
      };
      // changes() is the number of rows the data UPDATE matched, i.e. the candidates in this range.
      const progress = stepProgress(lease, "changes()", step, {});
      return {
        statements: [fence(lease), advance, data, progress],
        decode: (results) => readStepProgress(results[3], m.name),
      };
    }
    const range: StepRange = {
      where: inRange,
      candidates: `${inRange} AND (${filter})`,
      args: { ":trickle_lo": lo, ...nameArg },
    };
    const custom = m.definition.step(range);
    // Custom steps may change anything, so candidates are counted before they run.
    const counted = stepProgress(
      lease,
      `(SELECT COUNT(*) FROM ${this.#table} WHERE ${inRange} AND (${filter}))`,
      step,
      { ":trickle_lo": lo },
    );
    return {
      statements: [fence(lease), advance, counted, ...custom],
      decode: (results) => readStepProgress(results[2], m.name),
    };
  }

  /**
   * Quarantines `key`, the key of a single-key step that failed deterministically, in ONE fenced write batch: the
   * cursor moves to it and the failure record is written in the same transaction, so a crash either loses both
   * (the key is tried again) or keeps both. The key is the one that failed, read before that step: if its row
   * has gone since, no other row is skipped. The row is not counted in `rows_processed`; the migration's
   * `quarantined` is recounted from the failures table. Decodes into the cursor and the new count.
   */
  quarantineBatch(
    lease: Lease,
    failure: QuarantineFailure,
  ): Batch<{ readonly cursor: bigint; readonly quarantined: bigint }> {
    const name = this.migration.name;
    const statements = [fence(lease), cursorTo(name, failure.key), ...quarantineRecord(lease, failure)];
    return { statements, decode: (results) => readQuarantineRecord(results.at(-1), name) };
  }

  /**
   * Re-applies the change to one quarantined key (an operator asked for it), fenced, in one write batch: the data
   * change, `rows_processed` (+ the rows changed), and the failure marked resolved. The cursor does not move.
   * Decodes into `rows_processed` and `quarantined`.
   */
  retryBatch(lease: Lease, key: bigint): Batch<RetryCounts> {
    const m = this.migration;
    const k = this.#key;
    const where = `${k} >= :trickle_lo AND ${k} <= :trickle_lo`;
    const resolve = retryResolved(lease, key);
    const decode = (results: readonly ResultSet[]) => readRetryResolved(results.at(-1), m.name);
    if (m.definition.set !== undefined) {
      const data: InStatement = {
        sql: `UPDATE ${this.#table} SET ${m.definition.set} WHERE ${where} AND (${m.filter})`,
        args: { ":trickle_lo": key },
      };
      return { statements: [fence(lease), data, addProcessed(m.name, "changes()"), ...resolve], decode };
    }
    const custom = m.definition.step({
      where,
      candidates: `${where} AND (${m.filter})`,
      args: { ":trickle_lo": key, ":trickle_name": m.name },
    });
    const counted = addProcessed(
      m.name,
      `(SELECT COUNT(*) FROM ${this.#table} WHERE ${where} AND (${m.filter}))`,
      { ":trickle_lo": key },
    );
    return { statements: [fence(lease), counted, ...custom, ...resolve], decode };
  }

  /**
   * The last key of the `size` keys from `start` (the range a step of that size covers), or null if there is
   * none: a single-key step names its key with it, the dry-run its range.
   */
  async readRangeEnd(q: Queryable, start: StepStart, size: number): Promise<bigint | null> {
    const { sql, args } = this.#lastOfNextKeys(start, size);
    const result = await q.execute({ sql: `SELECT CAST((${sql}) AS TEXT) AS k`, args });
    return toBigIntOrNull(result.rows[0]?.k);
  }

  /** Moves the cursor over the next `size` keys (candidates or not) within the frozen upper bound. */
  #advance(start: StepStart, size: number): InStatement {
    // The new cursor is the largest of the next `size` keys, or the frozen upper bound if fewer remain; keys are
    // strictly greater than the old cursor, so the cursor strictly increases.
    const { sql, args } = this.#lastOfNextKeys(start, size);
    return advanceCursor(sql, { ...args, ":trickle_name": this.migration.name });
  }

  /**
   * The last of the next `size` keys after the cursor (or from the run's lower bound), up to the frozen upper
   * bound: the end of one step's range. Only integer keys count: the count proved the range holds no other, and a
   * REAL one inserted since must not become the cursor (invariants 8 and 11).
   */
  #lastOfNextKeys(start: StepStart, size: number): { sql: string; args: Record<string, InValue> } {
    const k = this.#key;
    const lower = start.cursor === null ? `${k} >= :trickle_lo` : `${k} > :trickle_lo`;
    return {
      sql: `SELECT MAX(k) FROM (SELECT ${k} AS k FROM ${this.#table}
              WHERE ${lower} AND ${k} <= :trickle_hi AND typeof(${k}) = 'integer' ORDER BY ${k} LIMIT :trickle_n)`,
      args: {
        ":trickle_lo": start.cursor ?? start.minKey,
        ":trickle_hi": start.maxKey,
        ":trickle_n": BigInt(size),
      },
    };
  }

  /** Creates missing prerequisites, each in a fenced transaction. */
  async ensurePrerequisites(client: Client, store: StateStore, lease: Lease): Promise<void> {
    for (const p of this.migration.prerequisites) {
      if (await isSatisfied(client, p)) continue;
      if (p.kind === "index" && client.protocol === "file") {
        // libSQL is built with SQLITE_TEMP_STORE=2, so CREATE INDEX would sort every key of a large table in
        // memory (tens of GB for 20M rows); spill the sort to temporary files. Best effort, connection-level.
        await client.execute("PRAGMA temp_store = FILE").catch(() => undefined);
      }
      try {
        await store.fenced(lease, [prerequisiteStatement(p)]);
      } catch (error) {
        // another runner or the application created it between our check and our write
        if (!(await isSatisfied(client, p))) throw error;
      }
    }
  }

  /** Why this migration's key cannot be walked, or `undefined` if it can. Needs the table to exist. */
  async keyProblem(client: Client): Promise<string | undefined> {
    // The key is proven first (schema, then bounded value checks), then the fragments are compiled against the
    // live schema (src/engine/plan/key-check.ts, invariant 11).
    return (
      (await provenKeyProblem(client, this.migration)) ?? (await fragmentProblem(client, this.migration))
    );
  }
}
