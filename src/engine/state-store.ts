/**
 * `_async_migrations` and `_async_migration_failures`: trickle's own tables. This module only gathers the state
 * module's public names for importers that know it by this path; the code lives in src/engine/state/:
 * schema.ts (tables, fence, upgrade), row.ts (the row and its codec), store.ts (`StateStore`: lease, lifecycle
 * writes, failures, controls) and statements.ts (the state writes inside a step's batch).
 */
export {
  type FailureRow,
  type Lease,
  type MigrationRow,
  RATE_WINDOW_POINTS,
  type ScanPhase,
  toBigIntOrNull,
} from "./state/row.ts";
export {
  FAILURES_TABLE,
  MIGRATION_STATUSES,
  type MigrationStatus,
  missingColumnStatements,
  type Queryable,
  STATE_TABLE,
  schemaStatements,
} from "./state/schema.ts";
export { type ControlAction, type ControlResult, StateStore } from "./state/store.ts";
