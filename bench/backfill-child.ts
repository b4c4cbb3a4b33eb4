/**
 * The two baselines trickle is measured against, each run by a process of its own against the database file
 * while the service serves it (the way CoreScope's ingestor ran the backfill next to its read-only server):
 *
 * - `oneShot`: CoreScope's original single statement (the physical limit for total time).
 * - `fixedBatch`: the seed PR's loop (#1725, as re-cut in #1735): 5 000 rows per batch chosen by
 *   `WHERE last_seen = 0 AND id <= :maxId ORDER BY id LIMIT 5000`, the COALESCE set, a 100 ms sleep after each
 *   batch, progress written in its own transaction at most once per second, until a batch matches nothing.
 *   The candidate subquery carries #1735's EXISTS fix so rows without observations cannot keep the loop alive
 *   (corescope-facts §4 row 1). The EXISTS also asks for a non-zero timestamp: with #1735's plain EXISTS a
 *   transmission whose observations all carry timestamp 0 keeps `last_seen = 0` after its update and matches
 *   every later batch, so the loop never ends on such data (§4 row 2, which the synthetic database includes).
 *
 * Both use CoreScope's busy timeout (5000 ms). Each statement's duration is one step.
 *
 * Usage: node --import tsx bench/backfill-child.ts <database-url> oneShot|fixedBatch
 * Prints `{"type":"progress",…}` lines and finally `{"type":"result",…}`.
 */
import { type Client, createClient, type InStatement } from "@libsql/client";
import { ONE_SHOT_SQL } from "../src/seed/corescope.ts";
import { nowMs, sleep } from "./procs.ts";

const CANDIDATE =
  "last_seen = 0 AND id <= :max_id AND EXISTS (SELECT 1 FROM observations WHERE transmission_id = transmissions.id AND timestamp <> 0)";

export const FIXED_BATCH_SQL = `UPDATE transmissions SET last_seen = COALESCE((SELECT MAX(timestamp) FROM observations WHERE transmission_id = transmissions.id), last_seen)
  WHERE id IN (SELECT id FROM transmissions WHERE ${CANDIDATE} ORDER BY id LIMIT :batch)`;

export const FIXED_BATCH_SIZE = 5000;
export const FIXED_BATCH_SLEEP_MS = 100;
const PROGRESS_INTERVAL_MS = 1000;
const CORESCOPE_BUSY_TIMEOUT_MS = 5000;
const PROGRESS_TABLE = "_bench_fixed_batch_progress";

type Step = [endAt: number, ms: number, rows: number, rowsProcessed: number];

function emit(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function isBusy(error: unknown): boolean {
  const code = String((error as { code?: unknown }).code ?? "");
  return code.startsWith("SQLITE_BUSY") || /SQLITE_BUSY|database is locked/i.test(String(error));
}

/** Runs `statement`, retrying after SQLITE_BUSY (CoreScope would fail the migration; here it is counted). */
async function timed(
  client: Client,
  statement: InStatement,
  counters: { busyRetries: number },
): Promise<{ rows: number; began: number; ended: number }> {
  for (;;) {
    const began = nowMs();
    try {
      const result = await client.execute(statement);
      return { rows: result.rowsAffected, began, ended: nowMs() };
    } catch (error) {
      if (!isBusy(error)) throw error;
      counters.busyRetries++;
    }
  }
}

async function oneShot(client: Client): Promise<void> {
  const counters = { busyRetries: 0 };
  emit({ type: "started", at: nowMs() });
  const { rows, began, ended } = await timed(client, ONE_SHOT_SQL, counters);
  const step: Step = [ended, ended - began, rows, rows];
  emit({
    type: "result",
    startedAt: began,
    endedAt: ended,
    rowsTotal: rows,
    steps: [step],
    busyRetries: counters.busyRetries,
  });
}

async function fixedBatch(client: Client): Promise<void> {
  const counters = { busyRetries: 0 };
  // Bookkeeping of the benchmark, not of the loop: created before the clock starts.
  await client.execute(
    `CREATE TABLE IF NOT EXISTS ${PROGRESS_TABLE} (name TEXT PRIMARY KEY, rows_processed INTEGER, rows_total INTEGER, last_update_at TEXT)`,
  );
  const writeProgress = (processed: number, total: number) =>
    timed(
      client,
      {
        sql: `INSERT INTO ${PROGRESS_TABLE} (name, rows_processed, rows_total, last_update_at) VALUES ('tx_last_seen_backfill_v1', ?, ?, ?)
              ON CONFLICT(name) DO UPDATE SET rows_processed = excluded.rows_processed, rows_total = excluded.rows_total,
              last_update_at = excluded.last_update_at`,
        args: [processed, total, new Date().toISOString()],
      },
      counters,
    );

  const startedAt = nowMs();
  emit({ type: "started", at: startedAt });
  const maxId = Number(
    (await client.execute("SELECT COALESCE(MAX(id), 0) AS m FROM transmissions")).rows[0]?.m,
  );
  const total = Number(
    (
      await client.execute({
        sql: `SELECT COUNT(*) AS n FROM transmissions WHERE ${CANDIDATE}`,
        args: { ":max_id": maxId },
      })
    ).rows[0]?.n,
  );
  const steps: Step[] = [];
  let processed = 0;
  let lastProgress = Number.NEGATIVE_INFINITY;
  for (;;) {
    const { rows, began, ended } = await timed(
      client,
      { sql: FIXED_BATCH_SQL, args: { ":max_id": maxId, ":batch": FIXED_BATCH_SIZE } },
      counters,
    );
    processed += rows;
    steps.push([ended, ended - began, rows, processed]);
    if (rows === 0) break;
    if (nowMs() - lastProgress >= PROGRESS_INTERVAL_MS) {
      await writeProgress(processed, total);
      lastProgress = nowMs();
      emit({ type: "progress", done: processed, total });
    }
    await sleep(FIXED_BATCH_SLEEP_MS);
  }
  await writeProgress(processed, total); // the terminal write is not rate-limited
  const endedAt = nowMs();
  emit({ type: "progress", done: processed, total });
  emit({ type: "result", startedAt, endedAt, rowsTotal: total, steps, busyRetries: counters.busyRetries });
}

async function main(): Promise<void> {
  const [url, mode] = process.argv.slice(2);
  if (!url || (mode !== "oneShot" && mode !== "fixedBatch")) {
    throw new Error("usage: backfill-child.ts <database-url> oneShot|fixedBatch");
  }
  const client = createClient({ url, timeout: CORESCOPE_BUSY_TIMEOUT_MS });
  try {
    if (mode === "oneShot") await oneShot(client);
    else await fixedBatch(client);
  } finally {
    client.close();
  }
}

main().then(
  () => process.stdout.write("", () => process.exit(0)),
  (error: unknown) => {
    process.stderr.write(`backfill-child: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
