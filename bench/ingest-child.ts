/**
 * The ingest load: CoreScope's hot path at a fixed rate, in a process of its own with its own connection.
 *
 * Each message inserts an observation of an existing recent transmission and then bumps that transmission's
 * `last_seen` the way CoreScope's `stmtBumpTxLastSeen` does — each statement its own small write transaction,
 * with CoreScope's busy timeout of 5000 ms: SQLite's standard busy handler (the `timeout` option sets
 * `sqlite3_busy_timeout`), which sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100, 100… ms between tries, as
 * Go's `_busy_timeout`, Python's `sqlite3`, better-sqlite3, Rails and Django do. A message whose statement failed
 * with SQLITE_BUSY (the lock was not free within 5 s) counts as a busy failure.
 *
 * Messages are scheduled open-loop (message i at start + i / rate); a message that is late runs at once, so a
 * stall is followed by a backlog, as with a buffered MQTT feed. A message's latency runs from its intended
 * start to the end of its second statement: a message that waited behind a stalled one counts the stall too
 * (no coordinated omission), as the packet waiting in the feed does.
 *
 * Usage: node --import tsx bench/ingest-child.ts <database-url> <messages-per-second>
 * Prints `{"type":"ready"}` once running; on the line `stop` on stdin prints `{"type":"result",…}` and exits.
 */
import { createClient } from "@libsql/client";
import { nowMs, sleep } from "./procs.ts";

const CORESCOPE_BUSY_TIMEOUT_MS = 5000;
/** Recent transmissions: the newest tenth of the table (97.8 % of CoreScope's observations are re-sightings). */
const RECENT_FRACTION = 0.1;
const OBSERVERS = 997;

const OUTCOME = { ok: 0, busy: 1, error: 2 } as const;

async function main(): Promise<void> {
  const [url, rateText] = process.argv.slice(2);
  const rate = Number(rateText);
  if (!url || !(rate > 0)) throw new Error("usage: ingest-child.ts <database-url> <messages-per-second>");
  const client = createClient({ url, timeout: CORESCOPE_BUSY_TIMEOUT_MS });
  await client.execute("PRAGMA foreign_keys = ON");
  const top = Number(
    (await client.execute("SELECT COALESCE(MAX(id), 0) AS m FROM transmissions")).rows[0]?.m,
  );
  if (!(top > 0)) throw new Error("the database has no transmissions to observe");
  const lowest = Math.max(1, Math.floor(top * (1 - RECENT_FRACTION)));

  // Flat columns: start (epoch ms), latency ms, outcome code.
  const samples: number[] = [];
  const errors: string[] = [];
  let stopping = false;
  let sequence = 0;
  let random = 0x2545f491;
  const nextRandom = () => {
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) / 4_294_967_296;
  };

  process.stdin.setEncoding("utf8");
  let input = "";
  process.stdin.on("data", (chunk: string) => {
    input += chunk;
    if (input.includes("stop")) stopping = true;
  });

  /** One message: both statements, each its own transaction; its outcome code. */
  const send = async (): Promise<number> => {
    const id = lowest + Math.floor(nextRandom() * (top - lowest + 1));
    const seconds = Math.floor(Date.now() / 1000);
    sequence++;
    try {
      await client.execute({
        sql: `INSERT INTO observations (transmission_id, observer_idx, direction, snr, rssi, score, path_json, timestamp)
              VALUES (?, ?, 'rx', ?, ?, ?, ?, ?)`,
        // A path unique to this message keeps the dedup index (transmission, observer, path) satisfied.
        args: [id, sequence % OBSERVERS, -5.5, -90, 50, `["bench","${sequence}"]`, seconds],
      });
      await client.execute({
        sql: "UPDATE transmissions SET last_seen = ? WHERE id = ? AND last_seen < ?",
        args: [seconds, id, seconds],
      });
      return OUTCOME.ok;
    } catch (error) {
      const code = String((error as { code?: unknown }).code ?? "");
      const message = (error as Error).message ?? String(error);
      const outcome =
        code.startsWith("SQLITE_BUSY") || /SQLITE_BUSY|database is locked/i.test(message)
          ? OUTCOME.busy
          : OUTCOME.error;
      if (outcome === OUTCOME.error && errors.length < 5) errors.push(message.slice(0, 200));
      return outcome;
    }
  };

  const interval = 1000 / rate;
  /** Waits until message `i` of a schedule that began at `start` is due (open loop: a late one goes at once). */
  const dueAt = async (start: number, i: number): Promise<number> => {
    const due = start + i * interval;
    const wait = due - nowMs();
    if (wait > 0) await sleep(wait);
    else if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve)); // let "stop" arrive
    return due;
  };

  // Warm-up, not recorded: a fresh process on a freshly copied file first stalls for up to a second (cold
  // pages, first statements), and its backlog would be charged to whatever phase began next. It ends after
  // one second of messages on schedule (each done within 20 ms of its intended start), or after 30 s.
  const warmupStart = nowMs();
  for (let i = 0, onTime = 0; onTime < rate && nowMs() - warmupStart < 30_000; i++) {
    const due = await dueAt(warmupStart, i);
    await send();
    onTime = nowMs() - due <= 20 ? onTime + 1 : 0;
  }

  process.stdout.write(`${JSON.stringify({ type: "ready", recentFrom: lowest, recentTo: top })}\n`);
  const start = nowMs();
  for (let i = 0; !stopping; i++) {
    const due = await dueAt(start, i);
    if (stopping) break;
    const outcome = await send();
    // From the intended start (`due`), not from when this loop got round to it.
    samples.push(Math.round(due * 100) / 100, Math.round((nowMs() - due) * 1000) / 1000, outcome);
  }
  client.close();
  process.stdout.write(`${JSON.stringify({ type: "result", samples, errors })}\n`, () => process.exit(0));
}

main().catch((error: unknown) => {
  process.stderr.write(`ingest-child: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
