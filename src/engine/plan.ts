/**
 * The SQL of one migration: the bounds read that starts a run, the statements of one step, the verification
 * read, and the prerequisites. Everything here builds statements; nothing here decides when to run them.
 */
import type { Client, InStatement, InValue, ResultSet } from "@libsql/client";
import type { Prerequisite, ResolvedMigration, StepRange } from "../migrations/define.ts";
import { fragmentProblem, keyProblem as provenKeyProblem } from "./plan/key-check.ts";
import { literal, quote, SQL_NOW } from "./sql.ts";
import type { Lease, MigrationRow, ScanPhase, StateStore } from "./state-store.ts";
import { FAILURES_TABLE, STATE_TABLE, toBigIntOrNull } from "./state-store.ts";

/** Anything that runs one statement: a `Client`, or a `Transaction` (the dry-run reads inside its own). */
export interface Queryable {
  execute(statement: InStatement): Promise<ResultSet>;
}

/** Error text stored with a quarantined row is cut to this length. */
const MAX_ERROR_TEXT = 2000;

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
  /** The step's upper bound as stored by the step's own cursor update, read back inside the same transaction. */
  readonly #upper: string;

  constructor(migration: ResolvedMigration) {
    this.migration = migration;
    this.#table = quote(migration.table);
    this.#key = quote(migration.key);
    this.#upper = `(SELECT cursor FROM ${STATE_TABLE} WHERE name = ${literal(migration.name)})`;
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
   * in the same transaction, so a piece is counted exactly once whatever crashes or takeovers happen around it.
   * Every key in the piece must be an integer (invariant 11): if one is not, nothing moves and `scan_problem`
   * names it. While counting, the first and last candidate keys widen the data walk's range. The data table is
   * only read. The statement at `progressIndex` returns the walk's state.
   */
  scanStatements(
    store: StateStore,
    lease: Lease,
    phase: ScanPhase,
    row: MigrationRow,
    size: number,
  ): { statements: InStatement[]; progressIndex: number } {
    const k = this.#key;
    const args: Record<string, InValue> = {
      ":trickle_hi": row.scanEnd,
      ":trickle_piece": BigInt(size),
      ":trickle_name": this.migration.name,
      ":trickle_phase": phase,
    };
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
        ? `(${this.migration.verify}) AND ${this.#notQuarantined()}`
        : this.migration.filter;
    const counting = phase === "counting" ? "1" : "0";
    const piece = `SELECT COUNT(*) AS keys, MAX(k) AS last, SUM(c) AS matches,
        MIN(CASE WHEN c THEN k END) AS first_match, MAX(CASE WHEN c THEN k END) AS last_match,
        MIN(CASE WHEN typeof(k) <> 'integer' THEN typeof(k) || ' ' || quote(k) END) AS bad
      FROM (SELECT ${k} AS k, CASE WHEN (${condition}) THEN 1 ELSE 0 END AS c FROM ${this.#table}
            WHERE ${lower} AND ${k} <= :trickle_hi ORDER BY ${k} LIMIT :trickle_piece)`;
    const update: InStatement = {
      sql: `UPDATE ${STATE_TABLE} SET
              scan_cursor = CASE WHEN p.bad IS NOT NULL THEN scan_cursor
                WHEN p.keys < :trickle_piece OR p.last >= :trickle_hi THEN :trickle_hi ELSE p.last END,
              scan_count = scan_count + CASE WHEN p.bad IS NULL THEN COALESCE(p.matches, 0) ELSE 0 END,
              min_key = CASE WHEN ${counting} AND p.bad IS NULL THEN COALESCE(min_key, p.first_match) ELSE min_key END,
              max_key = CASE WHEN ${counting} AND p.bad IS NULL THEN COALESCE(p.last_match, max_key) ELSE max_key END,
              scan_problem = p.bad, progress_at = ${SQL_NOW}, ${store.renewal(lease)}
            FROM (${piece}) AS p
            WHERE name = :trickle_name AND phase = :trickle_phase
            RETURNING CAST(scan_cursor AS TEXT) AS scan_cursor, CAST(scan_count AS TEXT) AS scan_count,
              CAST(min_key AS TEXT) AS min_key, CAST(max_key AS TEXT) AS max_key, scan_problem`,
      args,
    };
    return { statements: [store.fence(lease), update], progressIndex: 1 };
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
   * One step as one write batch (invariant 1): fence, advance the cursor over the next `size` keys, the data
   * change for exactly that range, and the progress update — committed together or not at all. The last
   * statement of `progressIndex` returns the new cursor and `rows_processed`.
   */
  stepStatements(
    store: StateStore,
    lease: Lease,
    start: StepStart,
    size: number,
    busyMs: number,
    failedAttempts = 0,
    key?: bigint,
  ): { statements: InStatement[]; progressIndex: number } {
    const m = this.migration;
    const k = this.#key;
    // Re-sweeps only visit rows that still need work, and not the quarantined ones (they would fail again).
    const filter = start.pass > 1 ? `(${m.verify}) AND ${this.#notQuarantined()}` : m.filter;
    const lower = start.cursor === null ? `${k} >= :trickle_lo` : `${k} > :trickle_lo`;
    const lo = start.cursor ?? start.minKey;
    const inRange = `${lower} AND ${k} <= ${this.#upper}`;
    const nameArg = { ":trickle_name": m.name };
    // A single-key step names its key (read just before), so a failure can quarantine exactly that key.
    const advance = key === undefined ? this.#advance(start, size) : this.#advanceTo(key);
    const progress = (processed: string, args: Record<string, InValue>): InStatement => ({
      sql: `UPDATE ${STATE_TABLE} SET rows_processed = rows_processed + ${processed}, steps = steps + 1,
              batch_size = :trickle_n, busy_ms = busy_ms + :trickle_busy, reason = NULL,
              failed_steps = failed_steps + :trickle_failed, progress_at = ${SQL_NOW}, throttle_reason = NULL,
              throttled_until = NULL, ${store.renewal(lease)}
            WHERE name = :trickle_name RETURNING CAST(cursor AS TEXT) AS cursor, CAST(rows_processed AS TEXT) AS rows_processed`,
      args: {
        ":trickle_n": BigInt(size),
        ":trickle_busy": BigInt(Math.round(busyMs)),
        ":trickle_failed": BigInt(failedAttempts),
        ...nameArg,
        ...args,
      },
    });
    if (m.definition.set !== undefined) {
      const data: InStatement = {
        sql: `UPDATE ${this.#table} SET ${m.definition.set} WHERE ${inRange} AND (${filter})`,
        args: { ":trickle_lo": lo, ...nameArg },
      };
      // changes() is the number of rows the data UPDATE matched, i.e. the candidates in this range.
      return { statements: [store.fence(lease), advance, data, progress("changes()", {})], progressIndex: 3 };
    }
    const range: StepRange = {
      where: inRange,
      candidates: `${inRange} AND (${filter})`,
      args: { ":trickle_lo": lo, ...nameArg },
    };
    const custom = m.definition.step(range);
    // Custom steps may change anything, so candidates are counted before they run.
    const counted = progress(`(SELECT COUNT(*) FROM ${this.#table} WHERE ${inRange} AND (${filter}))`, {
      ":trickle_lo": lo,
    });
    return { statements: [store.fence(lease), advance, counted, ...custom], progressIndex: 2 };
  }

  /**
   * Quarantines `key`, the key of a single-key step that failed deterministically, in ONE fenced write batch: the
   * cursor moves to it and the failure record is written in the same transaction, so a crash either loses both
   * (the key is tried again) or keeps both. The key is the one that failed, read before that step: if its row
   * has gone since, no other row is skipped. The row is not counted in `rows_processed`; the migration's
   * `quarantined` is recounted from the failures table. Returns the statements and the index of the one
   * returning `cursor`, `rows_processed` and `quarantined`.
   */
  quarantineStatements(
    store: StateStore,
    lease: Lease,
    key: bigint,
    pass: number,
    error: string,
    failedAttempts: number,
  ): { statements: InStatement[]; progressIndex: number } {
    const name = { ":trickle_name": this.migration.name };
    const statements: InStatement[] = [
      store.fence(lease),
      this.#advanceTo(key),
      {
        sql: `INSERT INTO ${FAILURES_TABLE} (name, key, error, at, attempts, pass)
              VALUES (:trickle_name, :trickle_key, :trickle_error, ${SQL_NOW}, 1, :trickle_pass)
              ON CONFLICT (name, key) DO UPDATE SET error = excluded.error, at = excluded.at,
                attempts = attempts + 1, pass = excluded.pass, resolved_at = NULL, resolution = NULL,
                retry_requested_at = NULL`,
        args: {
          ...name,
          ":trickle_key": key,
          ":trickle_error": error.slice(0, MAX_ERROR_TEXT),
          ":trickle_pass": BigInt(pass),
        },
      },
      {
        sql: `UPDATE ${STATE_TABLE} SET quarantined = ${this.#unresolvedCount()},
                failed_steps = failed_steps + :trickle_failed, progress_at = ${SQL_NOW}, ${store.renewal(lease)}
              WHERE name = :trickle_name
              RETURNING CAST(cursor AS TEXT) AS cursor, CAST(rows_processed AS TEXT) AS rows_processed,
                CAST(quarantined AS TEXT) AS quarantined`,
        args: { ...name, ":trickle_failed": BigInt(failedAttempts) },
      },
    ];
    return { statements, progressIndex: 3 };
  }

  /**
   * Re-applies the change to one quarantined key (an operator asked for it), fenced, in one write batch: the data
   * change, `rows_processed` (+ the rows changed), and the failure marked resolved. The cursor does not move.
   * The last statement returns `rows_processed` and `quarantined`.
   */
  retryStatements(store: StateStore, lease: Lease, key: bigint): InStatement[] {
    const m = this.migration;
    const k = this.#key;
    const args = { ":trickle_lo": key, ":trickle_name": m.name };
    const where = `${k} >= :trickle_lo AND ${k} <= :trickle_lo`;
    const resolve: InStatement[] = [
      {
        sql: `UPDATE ${FAILURES_TABLE} SET resolved_at = ${SQL_NOW}, resolution = 'retried', retry_requested_at = NULL
              WHERE name = :trickle_name AND key = :trickle_lo`,
        args,
      },
      {
        sql: `UPDATE ${STATE_TABLE} SET quarantined = ${this.#unresolvedCount()}, progress_at = ${SQL_NOW},
                ${store.renewal(lease)}
              WHERE name = :trickle_name
              RETURNING CAST(rows_processed AS TEXT) AS rows_processed, CAST(quarantined AS TEXT) AS quarantined`,
        args: { ":trickle_name": m.name },
      },
    ];
    const processed = (count: string): InStatement => ({
      sql: `UPDATE ${STATE_TABLE} SET rows_processed = rows_processed + ${count} WHERE name = :trickle_name`,
      args: { ":trickle_name": m.name, ...(count.includes(":trickle_lo") ? { ":trickle_lo": key } : {}) },
    });
    if (m.definition.set !== undefined) {
      const data: InStatement = {
        sql: `UPDATE ${this.#table} SET ${m.definition.set} WHERE ${where} AND (${m.filter})`,
        args: { ":trickle_lo": key },
      };
      return [store.fence(lease), data, processed("changes()"), ...resolve];
    }
    const custom = m.definition.step({ where, candidates: `${where} AND (${m.filter})`, args: { ...args } });
    const counted = processed(`(SELECT COUNT(*) FROM ${this.#table} WHERE ${where} AND (${m.filter}))`);
    return [store.fence(lease), counted, ...custom, ...resolve];
  }

  /** The last key of the `size` keys from `start` (the range a step of that size covers), or null if none. */
  rangeEndStatement(start: StepStart, size: number): InStatement {
    const k = this.#key;
    const lower = start.cursor === null ? `${k} >= :trickle_lo` : `${k} > :trickle_lo`;
    return {
      sql: `SELECT CAST(MAX(k) AS TEXT) AS k FROM (SELECT ${k} AS k FROM ${this.#table}
            WHERE ${lower} AND ${k} <= :trickle_hi AND typeof(${k}) = 'integer' ORDER BY ${k} LIMIT :trickle_n)`,
      args: {
        ":trickle_lo": start.cursor ?? start.minKey,
        ":trickle_hi": start.maxKey,
        ":trickle_n": BigInt(size),
      },
    };
  }

  /** Moves the cursor over the next `size` keys (candidates or not) within the frozen upper bound. */
  #advance(start: StepStart, size: number): InStatement {
    const k = this.#key;
    const lower = start.cursor === null ? `${k} >= :trickle_lo` : `${k} > :trickle_lo`;
    return {
      // The new cursor is the largest of the next `size` keys, or the frozen upper bound if fewer remain;
      // keys are strictly greater than the old cursor, so the cursor strictly increases. Only integer keys can
      // become the cursor: the count proved the range holds no other, and a REAL one inserted since must not
      // turn the cursor into something that is not an integer (invariants 8 and 11).
      sql: `UPDATE ${STATE_TABLE} SET cursor = COALESCE((SELECT MAX(k) FROM (SELECT ${k} AS k FROM ${this.#table}
              WHERE ${lower} AND ${k} <= :trickle_hi AND typeof(${k}) = 'integer' ORDER BY ${k} LIMIT :trickle_n)),
              :trickle_hi)
            WHERE name = :trickle_name`,
      args: {
        ":trickle_lo": start.cursor ?? start.minKey,
        ":trickle_hi": start.maxKey,
        ":trickle_n": BigInt(size),
        ":trickle_name": this.migration.name,
      },
    };
  }

  /** Moves the cursor to `key` (a single-key step, or a quarantined key). */
  #advanceTo(key: bigint): InStatement {
    return {
      sql: `UPDATE ${STATE_TABLE} SET cursor = :trickle_key WHERE name = :trickle_name`,
      args: { ":trickle_key": key, ":trickle_name": this.migration.name },
    };
  }

  /** SQL condition: this row of the table is not an unresolved quarantined key (uses `:trickle_name`). */
  #notQuarantined(): string {
    return `NOT EXISTS (SELECT 1 FROM ${FAILURES_TABLE} trickle_f WHERE trickle_f.name = :trickle_name
      AND trickle_f.key = ${this.#table}.${this.#key} AND trickle_f.resolved_at IS NULL)`;
  }

  #unresolvedCount(): string {
    return `(SELECT COUNT(*) FROM ${FAILURES_TABLE} WHERE name = :trickle_name AND resolved_at IS NULL)`;
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

function prerequisiteStatement(p: Prerequisite): InStatement {
  if (p.kind === "column") return `ALTER TABLE ${quote(p.table)} ADD COLUMN ${quote(p.column)} ${p.type}`;
  return `CREATE INDEX IF NOT EXISTS ${quote(p.name)} ON ${quote(p.table)} (${p.columns.map(quote).join(", ")})`;
}

async function isSatisfied(client: Client, p: Prerequisite): Promise<boolean> {
  if (p.kind === "column") {
    const cols = await client.execute({ sql: "SELECT name FROM pragma_table_info(?)", args: [p.table] });
    return cols.rows.some((r) => String(r.name).toLowerCase() === p.column.toLowerCase());
  }
  // Any index whose leading columns are the wanted ones will do, whatever its name (CoreScope's
  // idx_observations_tx_ts already covers observations(transmission_id, timestamp)).
  const indexes = await client.execute({ sql: "SELECT name FROM pragma_index_list(?)", args: [p.table] });
  for (const index of indexes.rows) {
    const info = await client.execute({
      sql: "SELECT name FROM pragma_index_info(?) ORDER BY seqno",
      args: [String(index.name)],
    });
    const leading = info.rows.slice(0, p.columns.length).map((r) => String(r.name).toLowerCase());
    if (leading.length === p.columns.length && leading.every((c, i) => c === p.columns[i]?.toLowerCase()))
      return true;
  }
  return false;
}
