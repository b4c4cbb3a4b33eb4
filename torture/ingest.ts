/**
 * The concurrent ingest of the crash scenario (torture/ingest-child.ts): its configuration, its log table, and
 * starting it as a child process.
 */
import { fileURLToPath } from "node:url";
import { ChildHandle } from "../test/fixtures/multiprocess.ts";

const INGEST_CHILD = fileURLToPath(new URL("./ingest-child.ts", import.meta.url));

export interface IngestConfig {
  readonly dbPath: string;
  /** The backfill whose progress decides whether a bumped row was "stolen". */
  readonly migration: string;
  /** Pause between messages, ms. */
  readonly intervalMs: number;
  /** Every n-th message inserts a new transmission instead of observing an existing one. */
  readonly newEvery: number;
  readonly seed: number;
}

/** Larger than every timestamp the seeded data set uses. */
export const INGEST_FIRST_TIMESTAMP = 2_000_000_000n;

/**
 * One row per ingest message, written in the message's own transaction. `was_zero`: the row still had
 * `last_seen = 0` before the bump; `stolen`: and the backfill had not reached it yet.
 */
export const INGEST_LOG_SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS torture_ingest_log (
    seq INTEGER PRIMARY KEY, tx_id INTEGER NOT NULL, ts INTEGER NOT NULL, kind TEXT NOT NULL,
    was_zero INTEGER NOT NULL, stolen INTEGER NOT NULL)`,
  // The oracle looks entries up per transmission.
  "CREATE INDEX IF NOT EXISTS torture_ingest_log_tx ON torture_ingest_log (tx_id, stolen)",
];

export function spawnIngest(config: IngestConfig): ChildHandle {
  return new ChildHandle("ingest", INGEST_CHILD, JSON.stringify(config));
}
