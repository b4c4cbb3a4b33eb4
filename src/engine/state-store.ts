/**
 * `_async_migrations`: the one row per migration that holds its status, cursor, counts and lease.
 *
 * Times are ISO-8601 UTC text with milliseconds (`2026-11-24T04:31:00.123Z`), produced by the database
 * (`strftime`) so that every runner compares leases against one clock. Text was chosen over integer ms because
 * databases created by CoreScope already have TEXT time columns (`datetime('now')`), which readers also accept.
 *
 * Every write that acts on behalf of a runner is *fenced*: its batch starts with an insert into the
 * `_async_migrations_fence` view, whose trigger aborts the whole transaction unless the row still carries the
 * runner's lease owner and epoch and the lease has not expired (invariant 3).
 */
import type { Client, InStatement, InValue, Row } from "@libsql/client";
import { classifyError } from "./errors.ts";
import { SQL_NOW, sqlNowPlus } from "./sql.ts";

export const STATE_TABLE = "_async_migrations";

/** Statuses trickle writes. A row may hold others (older versions, manual edits); readers map those to `unknown`. */
export type MigrationStatus = "pending" | "running" | "paused" | "done" | "failed" | "cancelled";
export const MIGRATION_STATUSES: readonly MigrationStatus[] = [
  "pending",
  "running",
  "paused",
  "done",
  "failed",
  "cancelled",
];

/** Columns in creation order; older tables get the missing ones added in place (all nullable or defaulted). */
const COLUMNS: ReadonlyArray<readonly [name: string, definition: string]> = [
  ["status", "TEXT NOT NULL DEFAULT 'pending'"],
  ["cursor", "INTEGER"],
  ["min_key", "INTEGER"],
  ["max_key", "INTEGER"],
  ["rows_processed", "INTEGER NOT NULL DEFAULT 0"],
  ["rows_total", "INTEGER NOT NULL DEFAULT 0"],
  ["started_at", "TEXT"],
  ["ended_at", "TEXT"],
  ["last_update_at", "TEXT"],
  ["error", "TEXT"],
  ["reason", "TEXT"],
  ["lease_owner", "TEXT"],
  ["lease_expires_at", "TEXT"],
  ["lease_epoch", "INTEGER NOT NULL DEFAULT 0"],
  ["pass", "INTEGER NOT NULL DEFAULT 0"],
  ["steps", "INTEGER NOT NULL DEFAULT 0"],
  ["batch_size", "INTEGER"],
  ["rate", "REAL"],
  ["busy_ms", "INTEGER NOT NULL DEFAULT 0"],
  ["verified_at", "TEXT"],
  ["residual", "INTEGER"],
  ["created_at", "TEXT"],
  // Live tuning overrides set by an operator (JSON object of Tuning fields); read at every lease acquisition.
  ["tuning", "TEXT"],
  // Unresolved rows of this migration in _async_migration_failures (poison rows skipped by the cursor).
  ["quarantined", "INTEGER NOT NULL DEFAULT 0"],
  // Step attempts of the current run that failed deterministically (for the fail ratio).
  ["failed_steps", "INTEGER NOT NULL DEFAULT 0"],
  // A throttle decision every runner respects until `throttled_until` (ISO-8601 text, like the other times).
  ["throttle_reason", "TEXT"],
  ["throttled_until", "TEXT"],
  // When the cursor last moved (a step, a quarantined row, a new pass): "stuck" detection.
  ["progress_at", "TEXT"],
  // Recent (wall ms, rows covered) points, JSON `[[ms, rows], ...]`, for the ETA band.
  ["rate_window", "TEXT"],
  // A read-only walk of the key in budgeted pieces (invariant 10): `counting` candidates before the data walk,
  // `verifying` after it; NULL while the data walk runs. Its cursor, its running count and its upper bound.
  ["phase", "TEXT"],
  ["scan_cursor", "INTEGER"],
  ["scan_count", "INTEGER NOT NULL DEFAULT 0"],
  ["scan_end", "INTEGER"],
  // A key the walk met that is not an integer (`real 2.5`, `text 'abc'`): the run stops there (invariant 11).
  ["scan_problem", "TEXT"],
];

export const FAILURES_TABLE = "_async_migration_failures";

const FENCE_VIEW = "_async_migrations_fence";

const SCHEMA_STATEMENTS = [
  `CREATE TABLE IF NOT EXISTS ${STATE_TABLE} (name TEXT PRIMARY KEY, ${COLUMNS.map(([n, d]) => `${n} ${d}`).join(", ")})`,
  `CREATE VIEW IF NOT EXISTS ${FENCE_VIEW} AS SELECT NULL AS name, NULL AS owner, NULL AS epoch`,
  `CREATE TRIGGER IF NOT EXISTS ${FENCE_VIEW}_check INSTEAD OF INSERT ON ${FENCE_VIEW}
   BEGIN
     SELECT RAISE(ABORT, 'trickle_lease_lost') WHERE NOT EXISTS (
       SELECT 1 FROM ${STATE_TABLE}
       WHERE name = NEW.name AND lease_owner = NEW.owner AND lease_epoch = NEW.epoch
         AND lease_expires_at > ${SQL_NOW});
   END`,
  // Quarantined (poison) rows: one per migration and key; `resolved_at` is set once a retry succeeded or a new run
  // superseded it. `retry_requested_at` marks rows an operator asked to retry (the runner does it, fenced).
  `CREATE TABLE IF NOT EXISTS ${FAILURES_TABLE} (name TEXT NOT NULL, key INTEGER NOT NULL, error TEXT NOT NULL,
     at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1, pass INTEGER, resolved_at TEXT, resolution TEXT,
     retry_requested_at TEXT, PRIMARY KEY (name, key))`,
];

/** The statements that create the state tables, the fence and the failures table (idempotent). */
export function schemaStatements(): readonly string[] {
  return SCHEMA_STATEMENTS;
}

/** `ALTER TABLE` statements for the columns a state table with `present` columns lacks. */
export function missingColumnStatements(present: ReadonlySet<string>): string[] {
  return COLUMNS.filter(([name]) => !present.has(name)).map(
    ([name, definition]) => `ALTER TABLE ${STATE_TABLE} ADD COLUMN ${name} ${definition}`,
  );
}

/** One `_async_migrations` row as trickle reads it. Keys and counters are exact (`bigint`). */
export interface MigrationRow {
  readonly name: string;
  /** As stored; may be a value trickle does not know (see `MIGRATION_STATUSES`). */
  readonly status: string;
  readonly cursor: bigint | null;
  readonly minKey: bigint | null;
  readonly maxKey: bigint | null;
  readonly rowsProcessed: bigint;
  readonly rowsTotal: bigint;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  readonly lastUpdateAt: string | null;
  readonly error: string | null;
  readonly reason: string | null;
  readonly leaseOwner: string | null;
  readonly leaseExpiresAt: string | null;
  readonly leaseEpoch: bigint;
  readonly pass: number;
  readonly steps: bigint;
  readonly batchSize: number | null;
  readonly rate: number | null;
  readonly busyMs: number;
  readonly verifiedAt: string | null;
  readonly residual: bigint | null;
  /** Operator overrides (`PATCH /api/migrations/:name`); validated again when applied. */
  readonly tuning: Readonly<Record<string, number>> | null;
  /** Unresolved quarantined rows (in `_async_migration_failures`). */
  readonly quarantined: bigint;
  /** Step attempts of this run that failed deterministically. */
  readonly failedSteps: bigint;
  readonly throttleReason: string | null;
  readonly throttledUntil: string | null;
  /** When the cursor last moved. */
  readonly progressAt: string | null;
  /** Recent `[wall ms, rows covered]` points, oldest first. */
  readonly rateWindow: ReadonlyArray<readonly [number, number]> | null;
  /** The read-only walk in progress (`counting` before the data walk, `verifying` after it), or null. */
  readonly phase: ScanPhase | null;
  /** Last key the walk covered (null: not started); it covers `(scanCursor, scanEnd]`. */
  readonly scanCursor: bigint | null;
  /** Rows the walk counted so far: candidates while counting, rows still needing work while verifying. */
  readonly scanCount: bigint;
  readonly scanEnd: bigint | null;
  /** A key the walk met that is not an integer, e.g. `real 2.5`; the run failed there. */
  readonly scanProblem: string | null;
}

/** The read-only walks of a run (invariant 10). */
export type ScanPhase = "counting" | "verifying";

/** One quarantined row. */
export interface FailureRow {
  readonly name: string;
  readonly key: bigint;
  readonly error: string;
  readonly at: string;
  readonly attempts: number;
  readonly pass: number | null;
  readonly resolvedAt: string | null;
  /** `retried` (a retry succeeded) or `new run` (a later run covered the key again). */
  readonly resolution: string | null;
  readonly retryRequestedAt: string | null;
}

/** The right to run one migration, as taken by `acquireLease`. */
export interface Lease {
  readonly name: string;
  readonly owner: string;
  readonly epoch: bigint;
  readonly ttlMs: number;
}

// Integer columns are read as text so they are exact whatever `intMode` the caller's client uses.
const INTEGER_COLUMNS = new Set([
  "cursor",
  "min_key",
  "max_key",
  "rows_processed",
  "rows_total",
  "lease_epoch",
  "steps",
  "residual",
  "quarantined",
  "failed_steps",
  "scan_cursor",
  "scan_count",
  "scan_end",
]);
const READ_COLUMNS = [
  "name",
  "status",
  "cursor",
  "min_key",
  "max_key",
  "rows_processed",
  "rows_total",
  "started_at",
  "ended_at",
  "last_update_at",
  "error",
  "reason",
  "lease_owner",
  "lease_expires_at",
  "lease_epoch",
  "pass",
  "steps",
  "batch_size",
  "rate",
  "busy_ms",
  "verified_at",
  "residual",
  "tuning",
  "quarantined",
  "failed_steps",
  "throttle_reason",
  "throttled_until",
  "progress_at",
  "rate_window",
  "phase",
  "scan_cursor",
  "scan_count",
  "scan_end",
  "scan_problem",
];

/** The select list; columns not in `present` (a table nothing has upgraded yet) read as NULL. */
function selectList(present?: ReadonlySet<string>): string {
  return READ_COLUMNS.map((c) => {
    if (present && !present.has(c)) return `NULL AS ${c}`;
    return INTEGER_COLUMNS.has(c) ? `CAST(${c} AS TEXT) AS ${c}` : c;
  }).join(", ");
}

const ROW_COLUMNS = selectList();
const SELECT_ROW = `SELECT ${ROW_COLUMNS} FROM ${STATE_TABLE}`;

const MAX_ERROR_TEXT = 2000;

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

  get client(): Client {
    return this.#client;
  }

  /** Creates `_async_migrations` and the fence, or adds missing columns to a table an older version created. */
  async ensureSchema(): Promise<void> {
    await this.#client.batch(SCHEMA_STATEMENTS, "write");
    const info = await this.#client.execute(`PRAGMA table_info(${STATE_TABLE})`);
    const present = new Set(info.rows.map((r) => String(r.name)));
    for (const [name, definition] of COLUMNS) {
      if (present.has(name)) continue;
      try {
        await this.#client.execute(`ALTER TABLE ${STATE_TABLE} ADD COLUMN ${name} ${definition}`);
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
      {
        sql: `INSERT INTO ${STATE_TABLE} (name, status, created_at) VALUES (?, 'pending', ${SQL_NOW}) ON CONFLICT(name) DO NOTHING`,
        args: [name],
      },
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
      const info = await this.#client.execute(`PRAGMA table_info(${STATE_TABLE})`);
      const columns = selectList(new Set(info.rows.map((r) => String(r.name))));
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

  /** The statement that aborts its batch unless `lease` is still valid; first in every fenced batch. */
  fence(lease: Lease): InStatement {
    return {
      sql: `INSERT INTO ${FENCE_VIEW} (name, owner, epoch) VALUES (?, ?, ?)`,
      args: [lease.name, lease.owner, lease.epoch],
    };
  }

  /** The statement that renews `lease` and records the time of progress; used by every step. */
  renewal(lease: Lease): string {
    return `last_update_at = ${SQL_NOW}, lease_expires_at = ${sqlNowPlus(lease.ttlMs)}`;
  }

  /** Runs `statements` in one write transaction that commits only if `lease` is still held. */
  async fenced(lease: Lease, statements: readonly InStatement[]): Promise<void> {
    await this.#client.batch([this.fence(lease), ...statements], "write");
  }

  /** Extends the lease before a long read (verification), so the run is not taken over in the middle of it. */
  async renew(lease: Lease): Promise<void> {
    await this.fenced(lease, [
      { sql: `UPDATE ${STATE_TABLE} SET ${this.renewal(lease)} WHERE name = ?`, args: [lease.name] },
    ]);
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
                  scan_count = 0, scan_end = ?, scan_problem = NULL, ${this.renewal(lease)}
              WHERE name = ?`,
        args: [BigInt(start.batchSize), start.rateWindow ?? null, start.scanEnd, start.scanEnd, lease.name],
      },
    ]);
  }

  /** The count is complete: the data walk starts over the candidates' range with the count as its total. */
  async finishCounting(lease: Lease): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${STATE_TABLE} SET phase = NULL, rows_total = scan_count, cursor = NULL, progress_at = ${SQL_NOW},
                ${this.renewal(lease)}
              WHERE name = ? AND phase = 'counting'`,
        args: [lease.name],
      },
    ]);
  }

  /** The data walk covered its range: walk it again, read-only, counting rows that still need work. */
  async startVerifying(lease: Lease): Promise<void> {
    await this.fenced(lease, [
      {
        sql: `UPDATE ${STATE_TABLE} SET phase = 'verifying', scan_cursor = NULL, scan_count = 0, scan_end = max_key,
                progress_at = ${SQL_NOW}, ${this.renewal(lease)}
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
                verified_at = ${SQL_NOW}, reason = ?, progress_at = ${SQL_NOW}, ${this.renewal(lease)} WHERE name = ?`,
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
        sql: `UPDATE ${STATE_TABLE} SET failed_steps = failed_steps + ?, ${this.renewal(lease)} WHERE name = ?`,
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
      sql: `SELECT name, CAST(key AS TEXT) AS key, error, at, attempts, pass, resolved_at, resolution, retry_requested_at
            FROM ${FAILURES_TABLE} WHERE name = ? ${options.includeResolved ? "" : "AND resolved_at IS NULL"}
            ORDER BY key LIMIT ?`,
      args: [name, BigInt(options.limit ?? 1000)],
    });
    return result.rows.map((r) => ({
      name: String(r.name),
      key: toBigIntOrNull(r.key) ?? 0n,
      error: String(r.error),
      at: String(r.at),
      attempts: toNumberOrNull(r.attempts) ?? 1,
      pass: toNumberOrNull(r.pass),
      resolvedAt: text(r.resolved_at),
      resolution: text(r.resolution),
      retryRequestedAt: text(r.retry_requested_at),
    }));
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

function parseTuning(value: InValue | undefined): Record<string, number> | null {
  if (typeof value !== "string" || value === "") return null;
  try {
    const parsed: unknown = JSON.parse(value);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return null;
    return Object.fromEntries(Object.entries(parsed).filter(([, v]) => typeof v === "number")) as Record<
      string,
      number
    >;
  } catch {
    return null; // a hand-edited, unreadable value must not stop the run; defaults apply
  }
}

export function toBigIntOrNull(value: unknown): bigint | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return value;
  if (typeof value === "number") return BigInt(Math.trunc(value));
  const text = String(value);
  return /^-?\d+$/.test(text) ? BigInt(text) : null;
}

function toNumberOrNull(value: InValue | undefined): number | null {
  if (value === null || value === undefined) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function text(value: InValue | undefined): string | null {
  return value === null || value === undefined ? null : String(value);
}

function toMigrationRow(r: Row): MigrationRow {
  return {
    name: String(r.name),
    status: String(r.status),
    cursor: toBigIntOrNull(r.cursor),
    minKey: toBigIntOrNull(r.min_key),
    maxKey: toBigIntOrNull(r.max_key),
    rowsProcessed: toBigIntOrNull(r.rows_processed) ?? 0n,
    rowsTotal: toBigIntOrNull(r.rows_total) ?? 0n,
    startedAt: text(r.started_at),
    endedAt: text(r.ended_at),
    lastUpdateAt: text(r.last_update_at),
    error: text(r.error),
    reason: text(r.reason),
    leaseOwner: text(r.lease_owner),
    leaseExpiresAt: text(r.lease_expires_at),
    leaseEpoch: toBigIntOrNull(r.lease_epoch) ?? 0n,
    pass: toNumberOrNull(r.pass) ?? 0,
    steps: toBigIntOrNull(r.steps) ?? 0n,
    batchSize: toNumberOrNull(r.batch_size),
    rate: toNumberOrNull(r.rate),
    busyMs: toNumberOrNull(r.busy_ms) ?? 0,
    verifiedAt: text(r.verified_at),
    residual: toBigIntOrNull(r.residual),
    tuning: parseTuning(r.tuning),
    quarantined: toBigIntOrNull(r.quarantined) ?? 0n,
    failedSteps: toBigIntOrNull(r.failed_steps) ?? 0n,
    throttleReason: text(r.throttle_reason),
    throttledUntil: text(r.throttled_until),
    progressAt: text(r.progress_at),
    rateWindow: parseRateWindow(r.rate_window),
    phase: r.phase === "counting" || r.phase === "verifying" ? r.phase : null,
    scanCursor: toBigIntOrNull(r.scan_cursor),
    scanCount: toBigIntOrNull(r.scan_count) ?? 0n,
    scanEnd: toBigIntOrNull(r.scan_end),
    scanProblem: text(r.scan_problem),
  };
}

/** Keeps at most this many points in `rate_window`. */
export const RATE_WINDOW_POINTS = 32;

function parseRateWindow(value: InValue | undefined): Array<readonly [number, number]> | null {
  if (typeof value !== "string" || value === "") return null;
  try {
    const parsed: unknown = JSON.parse(value);
    if (!Array.isArray(parsed)) return null;
    return parsed
      .filter(
        (p): p is [number, number] =>
          Array.isArray(p) && p.length === 2 && Number.isFinite(p[0]) && Number.isFinite(p[1]),
      )
      .slice(-RATE_WINDOW_POINTS);
  } catch {
    return null; // an unreadable window only costs the ETA band
  }
}
