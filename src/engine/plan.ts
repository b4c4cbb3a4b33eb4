/**
 * The SQL of one migration: the bounds read that starts a run, the statements of one step, the verification
 * read, and the prerequisites. Everything here builds statements; nothing here decides when to run them.
 */
import type { Client, InStatement, InValue, ResultSet } from "@libsql/client";
import type { Prerequisite, ResolvedMigration, StepRange } from "../migrations/define.ts";
import { literal, quote, SQL_NOW } from "./sql.ts";
import type { Lease, StateStore } from "./state-store.ts";
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
   * Rows in `[minKey, maxKey]` that still need work (the definition's `verify` condition). With
   * `excludeQuarantined`, rows quarantined in `_async_migration_failures` (and not resolved) are not counted:
   * they are accounted for separately, and re-sweeping them would only fail again.
   */
  async readResidual(
    client: Queryable,
    minKey: bigint | null,
    maxKey: bigint | null,
    options: { excludeQuarantined?: boolean } = {},
  ): Promise<bigint> {
    const range = minKey === null || maxKey === null ? "1" : `${this.#key} >= :lo AND ${this.#key} <= :hi`;
    const args: Record<string, InValue> =
      minKey === null || maxKey === null ? {} : { ":lo": minKey, ":hi": maxKey };
    const quarantine = options.excludeQuarantined ? ` AND ${this.#notQuarantined()}` : "";
    if (options.excludeQuarantined) args[":trickle_name"] = this.migration.name;
    const row = (
      await client.execute({
        sql: `SELECT CAST(COUNT(*) AS TEXT) AS n FROM ${this.#table}
              WHERE ${range} AND (${this.migration.verify})${quarantine}`,
        args,
      })
    ).rows[0];
    const n = toBigIntOrNull(row?.n);
    if (n === null) throw new Error(`verification query for ${this.migration.name} returned no count`);
    return n;
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
  ): { statements: InStatement[]; progressIndex: number } {
    const m = this.migration;
    const k = this.#key;
    // Re-sweeps only visit rows that still need work, and not the quarantined ones (they would fail again).
    const filter = start.pass > 1 ? `(${m.verify}) AND ${this.#notQuarantined()}` : m.filter;
    const lower = start.cursor === null ? `${k} >= :trickle_lo` : `${k} > :trickle_lo`;
    const lo = start.cursor ?? start.minKey;
    const inRange = `${lower} AND ${k} <= ${this.#upper}`;
    const nameArg = { ":trickle_name": m.name };
    const advance = this.#advance(start, size);
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
   * Quarantines the next key after the cursor (a single-key step failed deterministically) in ONE fenced write
   * batch: the cursor moves past it and the failure record is written in the same transaction, so a crash either
   * loses both (the key is tried again) or keeps both. The row is not counted in `rows_processed`; the
   * migration's `quarantined` is recounted from the failures table. Returns the statements and the index of the
   * one returning `cursor`, `rows_processed` and `quarantined`.
   */
  quarantineStatements(
    store: StateStore,
    lease: Lease,
    start: StepStart,
    error: string,
    failedAttempts: number,
  ): { statements: InStatement[]; progressIndex: number } {
    const name = { ":trickle_name": this.migration.name };
    const statements: InStatement[] = [
      store.fence(lease),
      this.#advance(start, 1),
      {
        sql: `INSERT INTO ${FAILURES_TABLE} (name, key, error, at, attempts, pass)
              VALUES (:trickle_name, ${this.#upper}, :trickle_error, ${SQL_NOW}, 1, :trickle_pass)
              ON CONFLICT (name, key) DO UPDATE SET error = excluded.error, at = excluded.at,
                attempts = attempts + 1, pass = excluded.pass, resolved_at = NULL, resolution = NULL,
                retry_requested_at = NULL`,
        args: {
          ...name,
          ":trickle_error": error.slice(0, MAX_ERROR_TEXT),
          ":trickle_pass": BigInt(start.pass),
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
            WHERE ${lower} AND ${k} <= :trickle_hi ORDER BY ${k} LIMIT :trickle_n)`,
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
      // keys are strictly greater than the old cursor, so the cursor strictly increases.
      sql: `UPDATE ${STATE_TABLE} SET cursor = COALESCE((SELECT MAX(k) FROM (SELECT ${k} AS k FROM ${this.#table}
              WHERE ${lower} AND ${k} <= :trickle_hi ORDER BY ${k} LIMIT :trickle_n)), :trickle_hi)
            WHERE name = :trickle_name`,
      args: {
        ":trickle_lo": start.cursor ?? start.minKey,
        ":trickle_hi": start.maxKey,
        ":trickle_n": BigInt(size),
        ":trickle_name": this.migration.name,
      },
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
    return keyProblem(client, this.migration.table, this.migration.key);
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

async function keyProblem(client: Client, table: string, key: string): Promise<string | undefined> {
  const where = `key "${key}" of table "${table}"`;
  if (["rowid", "_rowid_", "oid"].includes(key.toLowerCase())) {
    const sql = await client.execute({
      sql: "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
      args: [table],
    });
    return /WITHOUT\s+ROWID/i.test(String(sql.rows[0]?.sql ?? ""))
      ? `${where}: the table is WITHOUT ROWID`
      : undefined;
  }
  const cols = await client.execute({
    sql: "SELECT name, type, pk FROM pragma_table_info(?)",
    args: [table],
  });
  const column = cols.rows.find((r) => String(r.name).toLowerCase() === key.toLowerCase());
  if (!column) return `${where}: no such column`;
  if (!/INT/i.test(String(column.type)))
    return `${where} has type ${String(column.type) || "(none)"}; the key must be an integer column`;
  const pkColumns = cols.rows.filter((r) => Number(r.pk) > 0).length;
  if (Number(column.pk) > 0 && pkColumns === 1) return undefined;
  const indexes = await client.execute({
    sql: 'SELECT name, "unique" AS u FROM pragma_index_list(?)',
    args: [table],
  });
  for (const index of indexes.rows) {
    if (Number(index.u) !== 1) continue;
    const info = await client.execute({
      sql: "SELECT name FROM pragma_index_info(?)",
      args: [String(index.name)],
    });
    if (info.rows.length === 1 && String(info.rows[0]?.name).toLowerCase() === key.toLowerCase())
      return undefined;
  }
  return `${where} must be unique: an INTEGER PRIMARY KEY, rowid, or a column with a UNIQUE index`;
}
