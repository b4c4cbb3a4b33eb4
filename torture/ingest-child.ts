/**
 * CoreScope's ingest hot path in a process of its own, running while the crash scenario kills backfill runners:
 * it inserts observations of existing transmissions and bumps their `last_seen`
 * (`UPDATE transmissions SET last_seen = ? WHERE id = ? AND last_seen < ?`), and now and then inserts a new
 * transmission beyond the run's frozen upper bound.
 *
 * Each message is one write transaction that also appends to `torture_ingest_log`, so the oracle knows exactly
 * what the ingest did even though it races the backfill: the timestamp it wrote, whether the row still had
 * `last_seen = 0`, and whether that row had not been reached by the backfill yet ("stolen": the backfill will
 * find it no longer a candidate, so it is not counted in `rows_processed`). Timestamps are larger than any
 * timestamp in the seeded data and strictly increasing, as new observations are.
 *
 * `node --import tsx torture/ingest-child.ts '<json IngestConfig>'`; prints `{"type":"ready"}`, and on SIGTERM
 * finishes the message in flight and prints `{"type":"exit","messages":n,"created":m}`.
 */
import { createClient, type InStatement } from "@libsql/client";
import { reopenAfterBusy } from "../src/engine/busy-recovery.ts";
import { classifyError } from "../src/engine/errors.ts";
import { print, runChild } from "../test/fixtures/child-io.ts";
import { INGEST_FIRST_TIMESTAMP, type IngestConfig } from "./ingest.ts";

function observe(id: bigint, ts: bigint, migration: string): InStatement[] {
  const args = { ":id": id, ":ts": ts, ":name": migration };
  return [
    {
      // Read before the bump, inside the same transaction: what the row and the backfill looked like.
      sql: `INSERT INTO torture_ingest_log (tx_id, ts, kind, was_zero, stolen)
            SELECT id, :ts, 'observe', last_seen = 0, last_seen = 0 AND NOT EXISTS (
              SELECT 1 FROM _async_migrations WHERE name = :name
                AND (status = 'done' OR (status = 'running' AND cursor IS NOT NULL AND cursor >= :id)))
            FROM transmissions WHERE id = :id`,
      args,
    },
    {
      sql: `INSERT INTO observations (transmission_id, timestamp, path_json) VALUES (:id, :ts, '["ingest"]')`,
      args: { ":id": id, ":ts": ts },
    },
    {
      sql: "UPDATE transmissions SET last_seen = :ts WHERE id = :id AND last_seen < :ts",
      args: { ":id": id, ":ts": ts },
    },
  ];
}

function create(id: bigint, ts: bigint): InStatement[] {
  return [
    {
      sql: "INSERT INTO transmissions (id, hash, last_seen) VALUES (:id, :hash, :ts)",
      args: { ":id": id, ":hash": `ingest-${id}`, ":ts": ts },
    },
    {
      sql: `INSERT INTO observations (transmission_id, timestamp, path_json) VALUES (:id, :ts, '["ingest"]')`,
      args: { ":id": id, ":ts": ts },
    },
    {
      sql: `INSERT INTO torture_ingest_log (tx_id, ts, kind, was_zero, stolen) VALUES (:id, :ts, 'new', 0, 0)`,
      args: { ":id": id, ":ts": ts },
    },
  ];
}

async function main(): Promise<void> {
  const text = process.argv[2];
  if (!text) throw new Error("ingest-child: pass a JSON config as the first argument");
  const config = JSON.parse(text) as IngestConfig;
  if (typeof config.dbPath !== "string" || config.dbPath === "")
    throw new Error("ingest-child: config.dbPath must be a file path");
  // CoreScope's busy timeout: the application waits for the lock rather than dropping a message.
  // reopenAfterBusy: a statement that failed with SQLITE_BUSY would otherwise break the connection's next
  // COMMIT (see src/engine/busy-recovery.ts).
  const client = reopenAfterBusy(
    createClient({ url: `file:${config.dbPath}`, intMode: "bigint", timeout: 5_000 }),
  );
  let stopping = false;
  process.once("SIGTERM", () => {
    stopping = true;
  });
  // Keys are sparse: observe only transmissions that exist (observations reference them).
  const ids = (await client.execute("SELECT id FROM transmissions ORDER BY id")).rows.map((r) =>
    BigInt(String(r.id)),
  );
  if (ids.length === 0) throw new Error("ingest-child: the database has no transmissions to observe");
  let top = ids.at(-1)!;
  let random = config.seed >>> 0 || 1;
  const next = () => {
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) / 4_294_967_296;
  };
  let ts = INGEST_FIRST_TIMESTAMP;
  let messages = 0;
  let created = 0;
  let busy = 0;
  print({ type: "ready", pid: process.pid });
  while (!stopping) {
    ts++;
    const isNew = config.newEvery > 0 && (messages + 1) % config.newEvery === 0;
    const id = isNew ? top + 1n : ids[Math.floor(next() * ids.length)]!;
    try {
      // One write transaction per message: the log can never disagree with the data.
      await client.batch(isNew ? create(id, ts) : observe(id, ts, config.migration), "write");
      messages++;
      if (isNew) {
        top = id;
        ids.push(id);
        created++;
      }
    } catch (error) {
      const classified = classifyError(error);
      if (classified.kind !== "transient") throw error;
      busy++; // the lock stayed taken for 5 s; a real ingest would retry the message later
    }
    await new Promise((resolve) => setTimeout(resolve, config.intervalMs));
  }
  client.close();
  print({ type: "exit", messages, created, busy });
}

runChild(main);
