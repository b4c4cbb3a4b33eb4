/**
 * A write batch's time, split into its wait for the write lock and the time it held it (src/engine/run/write-batch.ts),
 * against a real lock: another process (the application) holds a write transaction while the batch starts. The
 * holder is a child process because the embedded client's busy wait is synchronous.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type Clock, systemClock } from "../../src/engine/clock.ts";
import type { RunnerEvent } from "../../src/engine/events.ts";
import { writeBatch } from "../../src/engine/run/write-batch.ts";
import { Runner } from "../../src/engine/runner.ts";
import { writersPauseMs } from "../../src/engine/yield.ts";
import {
  counterHistogram,
  createCounters,
  killAllChildren,
  spawnLockHolder,
  testCounterV1,
} from "../fixtures/multiprocess.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";

let db: TempDb;
afterEach(async () => {
  await killAllChildren();
  db?.cleanup();
});

describe("writeBatch on a local file", () => {
  it("reports the wait for another process's lock apart from the time the batch held it", async () => {
    db = tempDb();
    const client = db.open({ timeout: 30_000 });
    await client.execute("PRAGMA journal_mode = WAL");
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    // Held for long enough that the batch starts while it is held on a loaded machine too (checked below).
    const holder = spawnLockHolder("app", { dbPath: db.path, holdMs: 3_000 });
    await holder.waitForLine((l) => l.type === "locked", 60_000);

    const wallBefore = Date.now();
    const began = performance.now();
    const timed = await writeBatch(client, systemClock, [
      { sql: "INSERT INTO t (v) VALUES (?)", args: ["a"] },
      { sql: "INSERT INTO t (v) VALUES (?)", args: ["b"] },
    ]);
    const totalMs = performance.now() - began;
    const released = await holder.waitForLine((l) => l.type === "released", 60_000);
    const releasedAt = Number(released.at);

    expect(releasedAt, "the lock was still held when the batch began").toBeGreaterThan(wallBefore);
    // It could not take the lock before the holder let go (both are this machine's wall clock, ms resolution).
    expect(timed.waitedMs).toBeGreaterThanOrEqual(releasedAt - wallBefore - 2);
    expect(timed.waitedMs + timed.heldMs).toBeLessThanOrEqual(totalMs); // the two parts of the batch's own time
    expect(timed.heldMs).toBeLessThanOrEqual(totalMs - (releasedAt - wallBefore) + 2);
    // One result per statement given: the clock read is the helper's own.
    expect(timed.results.map((r) => r.rowsAffected)).toEqual([1, 1]);
    expect((await client.execute("SELECT v FROM t ORDER BY id")).rows.map((r) => r.v)).toEqual(["a", "b"]);
    client.close();
  });

  it("a batch that took the lock at once waited for none of it, whatever the clocks' millisecond ticks say", async () => {
    db = tempDb();
    const client = db.open();
    await client.execute("PRAGMA journal_mode = WAL");
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    // Nothing else holds the lock. Both clocks count whole milliseconds, so a sub-millisecond batch that
    // straddles a tick reads as having waited one; without the resolution bound about a tenth of these did.
    let quick = 0;
    for (let i = 0; i < 3_000 && quick < 100; i++) {
      const began = performance.now();
      const timed = await writeBatch(client, systemClock, [
        { sql: "INSERT INTO t (v) VALUES (?)", args: [`v${i}`] },
      ]);
      const totalMs = performance.now() - began;
      // Under a millisecond, the clocks' readings differ by at most one tick. A batch descheduled for longer on a
      // loaded machine may show that as a wait.
      if (totalMs >= 1) continue;
      quick++;
      expect(timed.waitedMs, `batch ${i} (${totalMs.toFixed(2)} ms)`).toBe(0);
      expect(timed.heldMs).toBeGreaterThan(0);
      expect(timed.heldMs).toBeLessThanOrEqual(totalMs);
    }
    expect(quick, "batches under 1 ms").toBeGreaterThanOrEqual(30);
    client.close();
  });

  it("a failing statement rolls the whole batch back, as client.batch does", async () => {
    db = tempDb();
    const client = db.open();
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    await expect(
      writeBatch(client, systemClock, [
        { sql: "INSERT INTO t (v) VALUES (?)", args: ["a"] },
        { sql: "INSERT INTO t (v) VALUES (NULL)", args: [] },
      ]),
    ).rejects.toThrow(/NOT NULL/);
    expect((await client.execute("SELECT COUNT(*) AS c FROM t")).rows[0]?.c).toBe(0n);
    client.close();
  });
});

/** Blocks this thread for `ms` (a runner's event callback is synchronous; the holder is another process). */
function blockFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe("a step that waited for the write lock", () => {
  it("is sized by the time it held the lock, not by its wait (invariant 5), and the writers' pause covers both", async () => {
    db = tempDb();
    const client = db.open({ timeout: 30_000 });
    await createCounters(client, 20_000);
    const take = join(db.dir, "take");
    const locked = join(db.dir, "locked");
    // The application holds the lock twice as long as an overrun (1.5 × the 1 s target): a sizer that took the wait
    // for the step's time would halve the next step. A target this long leaves a step of at most 1,000 rows seconds
    // of slack on a loaded machine before its hold alone would be an overrun.
    const TARGET_MS = 1_000;
    const holder = spawnLockHolder("app", {
      dbPath: db.path,
      startFile: take,
      lockedFile: locked,
      holdMs: 3 * TARGET_MS,
    });
    await holder.waitForLine((l) => l.type === "waiting", 60_000);
    const steps: Extract<RunnerEvent, { type: "step" }>[] = [];
    // Every pause the runner asks for, with the number of steps committed before it.
    const sleeps: { afterSteps: number; ms: number }[] = [];
    const clock: Clock = {
      now: () => systemClock.now(),
      wall: () => Date.now(),
      sleep: (ms, signal) => {
        sleeps.push({ afterSteps: steps.length, ms });
        return systemClock.sleep(ms, signal);
      },
    };
    const runner = new Runner({
      client,
      clock,
      migrations: [testCounterV1],
      tuning: {
        initialBatch: 100,
        maxBatch: 1_000,
        stepTargetMs: TARGET_MS,
        yieldMs: 0,
        sliceBudgetMs: 60_000,
      },
      onEvent: (event) => {
        if (event.type !== "step") return;
        steps.push(event);
        if (steps.length !== 3) return;
        // After the third step, the application takes the lock before the fourth begins.
        writeFileSync(take, "");
        while (!existsSync(locked)) blockFor(5);
      },
    });
    await runner.runUntilDone();
    const lockedLine = await holder.waitForLine((l) => l.type === "locked", 60_000);
    const released = await holder.waitForLine((l) => l.type === "released", 60_000);
    const holdMs = Number(released.at) - Number(lockedLine.at);

    expect(await counterHistogram(client)).toEqual({ "1": 20_000n });
    const waited = steps[3]!;
    // It began early in the hold (a few ms after the lock was taken) and could not start before the release.
    expect(waited.lockWaitMs).toBeGreaterThan(holdMs / 2);
    expect(waited.durationMs, "the step's own time is its hold, not an overrun").toBeLessThan(
      1.5 * TARGET_MS,
    );
    // Not an overrun: the next step is not halved (it was sized from the time the lock was held).
    expect(waited.nextBatchSize).toBeGreaterThan(waited.batchSize / 2);
    // No other step waited that long.
    for (const [i, step] of steps.entries()) if (i !== 3) expect(step.lockWaitMs).toBeLessThan(holdMs / 2);
    // The pause after it: the application's writers that queued behind the holder have slept through the wait too,
    // so the pause is sized by the wait and the hold (the holder's commit was seen: a writers' pause).
    const pause = sleeps.find((s) => s.afterSteps === 4);
    expect(pause?.ms).toBe(writersPauseMs(waited.lockWaitMs + waited.durationMs, 0));
    expect(pause!.ms).toBeGreaterThan(writersPauseMs(waited.durationMs, 0));
    client.close();
  });
});
