/**
 * The `_async_migrations` row and a quarantined row as trickle reads them, and the codecs between SQLite values
 * and those types. Keys and counters are exact (`bigint`, invariant 8): integer columns are selected as text,
 * so they stay exact whatever `intMode` the caller's client uses.
 */
import type { InValue, Row } from "@libsql/client";

/** The read-only walks of a run (invariant 10). */
export type ScanPhase = "counting" | "verifying";

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
  /** How long counting took (wall ms from the run's start), once it has ended; null before. */
  readonly countingMs: number | null;
}

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

/** The right to run one migration, as taken by `StateStore.acquireLease`. */
export interface Lease {
  readonly name: string;
  readonly owner: string;
  readonly epoch: bigint;
  readonly ttlMs: number;
}

/** Error text stored with a failure or a quarantined row is cut to this length. */
export const MAX_ERROR_TEXT = 2000;

/** Keeps at most this many points in `rate_window`. */
export const RATE_WINDOW_POINTS = 32;

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
  "counting_ms",
];

/** The select list of a row; columns not in `present` (a table nothing has upgraded yet) read as NULL. */
export function selectList(present?: ReadonlySet<string>): string {
  return READ_COLUMNS.map((c) => {
    if (present && !present.has(c)) return `NULL AS ${c}`;
    return INTEGER_COLUMNS.has(c) ? `CAST(${c} AS TEXT) AS ${c}` : c;
  }).join(", ");
}

/** The select list of a row of an up-to-date table (also a `RETURNING` list). */
export const ROW_COLUMNS = selectList();

export function toMigrationRow(r: Row): MigrationRow {
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
    countingMs: toNumberOrNull(r.counting_ms),
  };
}

/** The select list of a quarantined row (`toFailureRow` reads it). */
export const FAILURE_COLUMNS =
  "name, CAST(key AS TEXT) AS key, error, at, attempts, pass, resolved_at, resolution, retry_requested_at";

export function toFailureRow(r: Row): FailureRow {
  return {
    name: String(r.name),
    key: toBigIntOrNull(r.key) ?? 0n,
    error: String(r.error),
    at: String(r.at),
    attempts: toNumberOrNull(r.attempts) ?? 1,
    pass: toNumberOrNull(r.pass),
    resolvedAt: text(r.resolved_at),
    resolution: text(r.resolution),
    retryRequestedAt: text(r.retry_requested_at),
  };
}

/** The range of a SQLite INTEGER (a signed 64-bit integer): the keys trickle walks and stores. */
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/**
 * The key as a `bigint` when it is an exact integer in [-2^63, 2^63 - 1]: a safe-integer JSON number, or its
 * decimal text (an optional minus sign and digits). Anything else is undefined.
 */
export function int64Key(value: unknown): bigint | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) ? BigInt(value) : undefined;
  if (typeof value !== "string" || !/^-?\d+$/.test(value)) return undefined;
  const key = BigInt(value);
  return key >= INT64_MIN && key <= INT64_MAX ? key : undefined;
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
