/**
 * `StateStore`: every read and write of trickle's own tables that runs on a client by itself — the schema and its
 * upgrade, registration, the lease (compare-and-set), the lifecycle writes of a run, failures, operator controls
 * and live tuning. The writes that ride inside a step's batch are built in ./statements.ts; the shape of the
 * tables is in ./schema.ts and the row codec in ./row.ts.
 *
 * Every write that acts on behalf of a runner is *fenced*: its batch starts with an insert into the
 * `_async_migrations_fence` view, whose trigger aborts the whole transaction unless the row still carries the
 * runner's lease owner and epoch and the lease has not expired (invariant 3).
 */
import type { Client, InStatement, InValue } from "@libsql/client";
import { classifyError } from "../errors.ts";
import { SQL_NOW, sqlNowPlus } from "../sql.ts";
import {
  FAILURE_COLUMNS,
  type FailureRow,
  type Lease,
  MAX_ERROR_TEXT,
  type MigrationRow,
  ROW_COLUMNS,
  selectList,
  toBigIntOrNull,
  toFailureRow,
  toMigrationRow,
} from "./row.ts";
import {
  FAILURES_TABLE,
  type MigrationStatus,
  missingColumnStatements,
  presentColumns,
  registerStatement,
  STATE_TABLE,
  schemaStatements,
} from "./schema.ts";
import { fence, renewal } from "./statements.ts";

/** Wall ms since the run started, by the database's clock (both times are its `SQL_NOW` text). */
const SQL_MS_SINCE_START = `CAST(ROUND((julianday(${SQL_NOW}) - julianday(started_at)) * 86400000) AS INTEGER)`;

const SELECT_ROW = `SELECT ${ROW_COLUMNS} FROM ${STATE_TABLE}`;

export type ControlAction = "pause" | "resume" | "cancel" | "retry";

export type ControlResult =
  | { readonly status: "ok"; readonly name: string; readonly from: string; readonly to: MigrationStatus }
  | { readonly status: "not-found"; readonly name: string }
  | { readonly status: "conflict"; readonly name: string; readonly from: string; readonly message: string };

/** Which statuses each control action accepts, and what it moves to. */
const TRANSITIONS: Record<ControlAction, { from: readonly string[]; to: string }> = {
  pause: { from: ["pending", "running"], to: "'paused'" },
  // A run that had started (pass > 0) continues from its cursor; one that had not starts from the beginning.
  resume: { from: ["paused"], to: "CASE WHEN pass > 0 THEN 'running' ELSE 'pending' END" },
  cancel: { from: ["pending", "running", "paused", "failed"], to: "'cancelled'" },
  retry: { from: ["failed", "cancelled"], to: "CASE WHEN pass > 0 THEN 'running' ELSE 'pending' END" },
};

/** Extra assignments per action. */
const SIDE_EFFECTS: Record<ControlAction, string> = {
  // Pausing and cancelling revoke the lease, so a runner in the middle of a slice stops at its next step.
  pause: ", lease_owner = NULL, lease_expires_at = NULL",
  resume: "",
  cancel: `, lease_owner = NULL, lease_expires_at = NULL, ended_at = ${SQL_NOW}`,
  // A run that failed verification after its last pass gets its sweeps back; any other continues from its cursor.
  // The fail ratio starts over too: the operator retries because the cause was dealt with.
  retry:
    ", ended_at = NULL, error = NULL, failed_steps = 0, pass = CASE WHEN cursor IS NOT NULL AND cursor >= max_key THEN 1 ELSE pass END",
};

export class StateStore {
  readonly #client: Client;

  constructor(client: Client) {
    this.#client = client;
  }

  /** Creates `_async_migrations` and the fence, or adds missing columns to a table an older version created. */
  async ensureSchema(): Promise<void> {
    await this.#client.batch([...schemaStatements()], "write");
    for (const alter of missingColumnStatements(await presentColumns(this.#client))) {
      try {
        await this.#client.execute(alter);
      } catch (error) {
        // Two processes upgrading at once: the other one added it first, which is what we wanted.
        if (!/duplicate column name/i.test(classifyError(error).message)) throw error;
      }
    }
  }

  /** Adds a `pending` row for each name that has none; adopts rows an older runner left as `pending_async`. */
  async register(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    const statements: InStatement[] = names.flatMap((name) => [
      registerStatement(name),
      {
        sql: `UPDATE ${STATE_TABLE} SET status = 'pending' WHERE name = ? AND status = 'pending_async'`,
        args: [name],
      },
    ]);
    await this.#client.batch(statements, "write");
  }

  async list(): Promise<MigrationRow[]> {
    const result = await this.#select("ORDER BY name", []);
    return result.rows.map(toMigrationRow);
  }

  async get(name: string): Promise<MigrationRow | undefined> {
    const result = await this.#select("WHERE name = ?", [name]);
    const row = result.rows[0];
    return row ? toMigrationRow(row) : undefined;
  }

  /**
   * Reads rows; a table an older version created and nothing has upgraded yet (read-only commands such as
   * `trickle status` never upgrade) lacks the newer columns, which then read as NULL.
   */
  async #select(tail: string, args: InValue[]) {
    try {
      return await this.#client.execute({ sql: `${SELECT_ROW} ${tail}`, args });
    } catch (error) {
      if (!/no such column/i.test(classifyError(error).message)) throw error;
      const columns = selectList(await presentColumns(this.#client));
      return this.#client.execute({ sql: `SELECT ${columns} FROM ${STATE_TABLE} ${tail}`, args });
    }
  }

  /**
   * Takes the lease by compare-and-set: free, expired, or already ours (a previous slice of this runner whose
   * release failed). The epoch always increases, so anything still in flight under an older epoch is fenced off.
   */
  async acquireLease(
    name: string,
    owner: string,
    ttlMs: number,
  ): Promise<{ lease: Lease; row: MigrationRow } | undefined> {
    const result = await this.#client.execute({
      sql: `UPDATE ${STATE_TABLE}
            SET lease_owner = ?, lease_epoch = lease_epoch + 1, lease_expires_at = ${sqlNowPlus(ttlMs)}
            WHERE name = ? AND status IN ('pending', 'running')
              AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at IS NULL OR lease_expires_at <= ${SQL_NOW})
            RETURNING ${ROW_COLUMNS}`,
      args: [owner, name, owner],
    });
    const row = result.rows[0];
    if (!row) return undefined;
    const migration = toMigrationRow(row);
    return { lease: { name, owner, epoch: migration.leaseEpoch, ttlMs }, row: migration };
  }

  /** Gives the lease back and saves what the next slice should start from. Never throws. */
  async releaseLease(
    lease: Lease,
    save: { batchSize?: number; rate?: number; busyMs?: number; rateWindow?: string } = {},
  ): Promise<boolean> {
    try {
      const result = await this.#client.execute({
        sql: `UPDATE ${STATE_TABLE}
              SET lease_owner = NULL, lease_expires_at = NULL, batch_size = COALESCE(?, batch_size),
                  rate = COALESCE(?, rate), busy_ms = busy_ms + ?, rate_window = COALESCE(?, rate_window)
              WHERE name = ? AND lease_owner = ? AND lease_epoch = ?`,
        args: [
          save.batchSize === undefined ? null : BigInt(save.batchSize),
          save.rate ?? null,
          BigInt(Math.round(save.busyMs ?? 0)),
          save.rateWindow ?? null,
          lease.name,
          lease.owner,
          lease.epoch,
        ],
      });
      return result.rowsAffected === 1;
    } catch {
      return false; // it expires by itself; the same owner may also take it straight back
    }
  }

  /** Runs `statements` in one write transaction that commits only if `lease` is still held. */
  async fenced(lease: Lease, statements: readonly InStatement[]): Promise<void> {
    await this.#client.batch([fence(lease), ...statements], "write");
  }

  /** Records why a pending migration cannot start yet (its tables are missing…); stays `pending`. */
  async recordWaiting(lease: Lease, reason: string): Promise<void> {
    await this.fenced(lease, [
      { sql: `UPDATE ${STATE_TABLE} SET reason = ? WHERE name = ?`, args: [reason, lease.name] },
    ]);
  }

  /** Records a transient problem (the run goes on). Best effort: the lock may be what is failing. */
  async recordReason(lease: Lease, reason: string | null): Promise<void> {
    try {
      await this.fenced(lease, [
        { sql: `UPDATE ${STATE_TABLE} SET reason = ? WHERE name = ?`, args: [reason, lease.name] },
      ]);
    } catch {
      // the in-process state still carries the reason
    }
  }

  /**
   * pending → running. The walk's upper bound is frozen here (invariant 2): `scanEnd` is the table's largest key
   * now, and the run first counts its candidates up to it (`counting`); the data walk's own range, the first and
   * last candidate, comes out of that count. A table without rows has nothing to count: the run is empty.
   */
  async startRun(
    lease: Lease,
    start: { scanEnd: bigint | null; batchSize: number; rateWindow?: string },
  ): Promise<void> {
    await this.fenced(lease, [
      // Rows quarantined by an earlier run of this migration are covered again by this one.
      {
        sql: `UPDATE ${FAILURES_TABLE} SET resolved_at = ${SQL_NOW}, resolution = 'new run', retry_requested_at = NULL
              WHERE name = ? AND resolved_at IS NULL`,
        args: [lease.name],
      },
      {
        sql: `UPDATE ${STATE_TABLE}
              SET status = 'running', cursor = NULL, min_key = NULL, max_key = NULL, rows_total = 0, rows_processed = 0,
                  started_at = ${SQL_NOW}, ended_at = NULL, error = NULL, reason = NULL, pass = 1, steps = 0,
                  batch_size = ?, rate = NULL, busy_ms = 0, verified_at = NULL, residual = NULL, quarantined = 0,
                  failed_steps = 0, throttle_reason = NULL, throttled_until = NULL, progress_at = ${SQL_NOW},
                  rate_window = ?, phase = CASE WHEN ? IS NULL THEN NULL ELSE 'counting' END, scan_cursor = NULL,
                  scan_count = 0, scan_end = ?, scan_problem = NULL, counting_ms = NULL, ${renewal(lease)}
              WHERE name = ?`,
        args: [BigInt(start.batchSize), start.rateWindow ?? null, start.scanEnd, start.scanEnd, lease.name],
      },
    ]);
  }

  /** The count is complete: the data walk starts over the candidates' range with the count as its total. */
  async finishCounting(lease: Lease, rateWindow: string): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${STATE_TABLE} SET phase = NULL, rows_total = scan_count, cursor = NULL, progress_at = ${SQL_NOW},
                rate_window = ?, counting_ms = ${SQL_MS_SINCE_START}, ${renewal(lease)}
              WHERE name = ? AND phase = 'counting'`,
        args: [rateWindow, lease.name],
      },
    ]);
  }

  /** The data walk covered its range: walk it again, read-only, counting rows that still need work. */
  async startVerifying(lease: Lease): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${STATE_TABLE} SET phase = 'verifying', scan_cursor = NULL, scan_count = 0, scan_end = max_key,
                progress_at = ${SQL_NOW}, ${renewal(lease)}
              WHERE name = ?`,
        args: [lease.name],
      },
    ]);
  }

  /** Another pass over the run's range for rows that still need work; they join the total. */
  async startSweep(lease: Lease, residual: bigint): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${STATE_TABLE} SET cursor = NULL, phase = NULL, pass = pass + 1, rows_total = rows_total + ?, residual = ?,
                verified_at = ${SQL_NOW}, reason = ?, progress_at = ${SQL_NOW}, ${renewal(lease)} WHERE name = ?`,
        args: [residual, residual, `re-sweeping ${residual} rows that still need work`, lease.name],
      },
    ]);
  }

  async markDone(lease: Lease, busyMs: number): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${STATE_TABLE}
              SET status = 'done', ended_at = ${SQL_NOW}, verified_at = ${SQL_NOW}, residual = 0, error = NULL, phase = NULL,
                  reason = NULL, busy_ms = busy_ms + ?, lease_owner = NULL, lease_expires_at = NULL, last_update_at = ${SQL_NOW}
              WHERE name = ?`,
        args: [BigInt(Math.round(busyMs)), lease.name],
      },
    ]);
  }

  async markFailed(
    lease: Lease,
    message: string,
    fields: { residual?: bigint; failedSteps?: number } = {},
  ): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${STATE_TABLE}
              SET status = 'failed', ended_at = ${SQL_NOW}, error = ?1, reason = NULL, residual = COALESCE(?2, residual),
                  verified_at = CASE WHEN ?2 IS NULL THEN verified_at ELSE ${SQL_NOW} END,
                  failed_steps = failed_steps + ?3, lease_owner = NULL, lease_expires_at = NULL,
                  last_update_at = ${SQL_NOW}
              WHERE name = ?4`,
        args: [message, fields.residual ?? null, BigInt(fields.failedSteps ?? 0), lease.name],
      },
    ]);
  }

  /** Holds the migration back until `untilIso` (every runner skips it until then), with the reason shown. */
  async recordThrottle(lease: Lease, reason: string, untilIso: string): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${STATE_TABLE} SET throttle_reason = ?, throttled_until = ? WHERE name = ?`,
        args: [reason, untilIso, lease.name],
      },
    ]);
  }

  /** Records that a retry of a quarantined row failed again (the row stays quarantined). */
  async recordRetryFailure(lease: Lease, key: bigint, error: string, failedSteps: number): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${FAILURES_TABLE} SET attempts = attempts + 1, error = ?, at = ${SQL_NOW}, retry_requested_at = NULL
              WHERE name = ? AND key = ?`,
        args: [error.slice(0, MAX_ERROR_TEXT), lease.name, key],
      },
      {
        sql: `UPDATE ${STATE_TABLE} SET failed_steps = failed_steps + ?, ${renewal(lease)} WHERE name = ?`,
        args: [BigInt(failedSteps), lease.name],
      },
    ]);
  }

  /** Quarantined rows of `name`, by key; unresolved only unless `includeResolved`. */
  async listFailures(
    name: string,
    options: { includeResolved?: boolean; limit?: number } = {},
  ): Promise<FailureRow[]> {
    if ((await this.existingTables([FAILURES_TABLE])).size === 0) return [];
    const result = await this.#client.execute({
      sql: `SELECT ${FAILURE_COLUMNS} FROM ${FAILURES_TABLE} WHERE name = ? ${options.includeResolved ? "" : "AND resolved_at IS NULL"}
            ORDER BY key LIMIT ?`,
      args: [name, BigInt(options.limit ?? 1000)],
    });
    return result.rows.map(toFailureRow);
  }

  /** Unresolved quarantined rows an operator asked to retry, oldest key first. */
  async failuresToRetry(name: string, limit: number): Promise<bigint[]> {
    const result = await this.#client.execute({
      sql: `SELECT CAST(key AS TEXT) AS key FROM ${FAILURES_TABLE}
            WHERE name = ? AND resolved_at IS NULL AND retry_requested_at IS NOT NULL ORDER BY key LIMIT ?`,
      args: [name, BigInt(limit)],
    });
    return result.rows.flatMap((r) => {
      const key = toBigIntOrNull(r.key);
      return key === null ? [] : [key];
    });
  }

  /**
   * Asks the runner to re-apply the change to quarantined rows (all unresolved ones, or those of `keys`). A
   * migration that is `done` goes back to `running` so a runner picks the request up and verifies again; in any
   * other status the request waits until the migration runs (after resume or retry). One transaction.
   */
  async requestFailureRetry(
    name: string,
    keys?: readonly bigint[],
  ): Promise<{ requested: number; from: string; to: string } | undefined> {
    const before = await this.get(name);
    if (!before) return undefined;
    if ((await this.existingTables([FAILURES_TABLE])).size === 0) {
      return { requested: 0, from: before.status, to: before.status };
    }
    const only = keys && keys.length > 0 ? `AND key IN (${keys.map(() => "?").join(", ")})` : "";
    const results = await this.#client.batch(
      [
        {
          sql: `UPDATE ${FAILURES_TABLE} SET retry_requested_at = ${SQL_NOW}
                WHERE name = ? AND resolved_at IS NULL ${only}`,
          args: [name, ...(keys ?? [])],
        },
        {
          sql: `UPDATE ${STATE_TABLE} SET status = 'running', ended_at = NULL, last_update_at = ${SQL_NOW}
                WHERE name = ? AND status = 'done' AND changes() > 0 RETURNING status`,
          args: [name],
        },
      ],
      "write",
    );
    const requested = results[0]?.rowsAffected ?? 0;
    const moved = (results[1]?.rows.length ?? 0) > 0;
    return { requested, from: before.status, to: moved ? "running" : before.status };
  }

  /**
   * Operator controls. Pausing and cancelling also revoke the lease, so a runner in the middle of a slice stops
   * at its next step (its fence fails) instead of finishing the slice.
   */
  async control(name: string, action: ControlAction): Promise<ControlResult> {
    const { from, to } = TRANSITIONS[action];
    const before = await this.get(name);
    if (!before) return { status: "not-found", name };
    const result = await this.#client.execute({
      sql: `UPDATE ${STATE_TABLE} SET status = ${to}, reason = NULL${SIDE_EFFECTS[action]}, last_update_at = ${SQL_NOW}
            WHERE name = ? AND status IN (${from.map(() => "?").join(", ")}) RETURNING status`,
      args: [name, ...from],
    });
    const after = result.rows[0];
    if (!after) {
      const now = (await this.get(name))?.status ?? before.status;
      return { status: "conflict", name, from: now, message: `cannot ${action} a migration that is ${now}` };
    }
    return { status: "ok", name, from: before.status, to: String(after.status) as MigrationStatus };
  }

  /**
   * Stores live tuning overrides (merged into the existing ones; `null` clears a field). The runner applies
   * them from its next lease acquisition. Returns false if there is no such migration.
   */
  async setTuning(name: string, patch: Readonly<Record<string, number | null>>): Promise<boolean> {
    const row = await this.get(name);
    if (!row) return false;
    const merged: Record<string, number> = { ...(row.tuning ?? {}) };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete merged[k];
      else merged[k] = v;
    }
    const value = Object.keys(merged).length === 0 ? null : JSON.stringify(merged);
    const result = await this.#client.execute({
      sql: `UPDATE ${STATE_TABLE} SET tuning = ? WHERE name = ?`,
      args: [value, name],
    });
    return result.rowsAffected === 1;
  }

  /** Whether `_async_migrations` exists (read-only commands never create it). */
  async hasState(): Promise<boolean> {
    return (await this.existingTables([STATE_TABLE])).size > 0;
  }

  /** Names of the tables among `names` that exist in this database. */
  async existingTables(names: readonly string[]): Promise<Set<string>> {
    if (names.length === 0) return new Set();
    const result = await this.#client.execute({
      sql: `SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (${names.map(() => "?").join(", ")})`,
      args: [...names],
    });
    return new Set(result.rows.map((r) => String(r.name)));
  }
}
