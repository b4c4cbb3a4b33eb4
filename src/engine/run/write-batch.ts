/**
 * A write batch (invariant 1), timed as the application's writers feel it.
 *
 * The batch's time includes its wait for SQLite's write lock: `BEGIN IMMEDIATE` waits in the busy handler while
 * the application's writers commit, and that handler sleeps 1, 2, 5, … up to 100 ms between tries, so after a
 * few lost races it sleeps on while the lock is free. The benchmark saw a step of 1,512 keys "take" 195 ms of
 * which it held the lock 15 ms. Taken for the step's time, such a wait shrank the next step (an overrun) and showed
 * as a slow step. The pause after the step still covers both: the application's writers that queued behind the
 * same holder have been sleeping in their busy handlers as long (with the pause sized by the hold alone, the
 * benchmark's writer p99 was 98–124 ms in three rounds).
 *
 * On a local file the batch's first statement therefore reads SQLite's clock, which runs once the lock is held;
 * it is this machine's wall clock, compared with the engine clock's `wall()`, so the batch's time splits into
 * the wait and the hold. Both clocks count whole milliseconds, so a batch that took the lock at once can read as
 * having waited one: a wait shorter than `RESOLUTION_MS` counts as held. (Split anyway, a first step that held
 * the lock under a millisecond read as holding it for none, and the ramp took its keys per ms from that.) Remote
 * servers and D1 give no such split (their clock is another machine's, and the lock is taken there), nor does a
 * simulated clock: the whole time counts as held.
 */
import type { Client, InStatement, ResultSet } from "@libsql/client";
import type { Clock } from "../clock.ts";

/** SQLite's wall clock in ms (unix epoch), read inside the write transaction. */
const LOCKED_AT: InStatement = { sql: "SELECT unixepoch('subsec') * 1000 AS locked_at", args: [] };

/** Waits shorter than this are within the two clocks' resolution: the whole time counts as held. */
const RESOLUTION_MS = 2;

export interface TimedBatch {
  /** One result per statement given. */
  readonly results: ResultSet[];
  /** How long the batch waited for the write lock, ms (0 where it cannot be told apart). */
  readonly waitedMs: number;
  /** How long it held the lock (the rest of its time), ms. */
  readonly heldMs: number;
}

/** Runs `statements` as one `client.batch(…, "write")` and splits its time into the lock's wait and hold. */
export async function writeBatch(
  client: Client,
  clock: Pick<Clock, "now" | "wall">,
  statements: readonly InStatement[],
): Promise<TimedBatch> {
  const began = clock.now();
  if (client.protocol !== "file" || clock.wall === undefined) {
    const results = await client.batch([...statements], "write");
    return { results, waitedMs: 0, heldMs: clock.now() - began };
  }
  const wallBegan = clock.wall();
  const [lockedAt, ...results] = await client.batch([LOCKED_AT, ...statements], "write");
  const totalMs = clock.now() - began;
  const waited = Number(lockedAt?.rows[0]?.[0]) - wallBegan;
  const waitedMs = Number.isFinite(waited) && waited >= RESOLUTION_MS ? Math.min(waited, totalMs) : 0;
  return { results, waitedMs, heldMs: totalMs - waitedMs };
}
