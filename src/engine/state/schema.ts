/**
 * The shape of trickle's own tables: `_async_migrations` (one row per migration: status, cursor, counts, lease),
 * the fence view whose trigger guards every fenced batch, and `_async_migration_failures` (quarantined rows).
 *
 * Times are ISO-8601 UTC text with milliseconds (`2026-11-24T04:31:00.123Z`), produced by the database
 * (`strftime`) so that every runner compares leases against one clock. Text was chosen over integer ms because
 * databases created by CoreScope already have TEXT time columns (`datetime('now')`), which readers also accept.
 *
 * Existing databases upgrade in place: every column after `name` is nullable or has a default, and a table an
 * older version created gets the missing ones added (`StateStore.ensureSchema`, or `prepareStateIn` inside a
 * dry-run's transaction).
 */
import type { InStatement, ResultSet } from "@libsql/client";
import { SQL_NOW } from "../sql.ts";

export const STATE_TABLE = "_async_migrations";
export const FAILURES_TABLE = "_async_migration_failures";
export const FENCE_VIEW = "_async_migrations_fence";

/** Anything that runs one statement: a `Client`, or a `Transaction` (the dry-run works inside its own). */
export interface Queryable {
  execute(statement: InStatement): Promise<ResultSet>;
}

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
export const COLUMNS: ReadonlyArray<readonly [name: string, definition: string]> = [
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
  // How long counting took, wall ms from the run's start (ticks and gaps included): the ETA's estimate of the
  // verification walk, which reads the same keys again (progress/rate.ts).
  ["counting_ms", "INTEGER"],
];

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

/** Columns the state table has now. */
export async function presentColumns(q: Queryable): Promise<Set<string>> {
  const info = await q.execute(`PRAGMA table_info(${STATE_TABLE})`);
  return new Set(info.rows.map((r) => String(r.name)));
}

/** Adds a `pending` row for `name` unless it has one. */
export function registerStatement(name: string): InStatement {
  return {
    sql: `INSERT INTO ${STATE_TABLE} (name, status, created_at) VALUES (?, 'pending', ${SQL_NOW}) ON CONFLICT(name) DO NOTHING`,
    args: [name],
  };
}

/**
 * What a run creates before its first step — the tables, the fence, missing columns, the migration's row — one
 * statement at a time on `q`: the dry-run does it inside its transaction, so the rollback takes it all back.
 */
export async function prepareStateIn(q: Queryable, name: string): Promise<void> {
  for (const statement of SCHEMA_STATEMENTS) await q.execute(statement);
  for (const alter of missingColumnStatements(await presentColumns(q))) await q.execute(alter);
  await q.execute(registerStatement(name));
}
