/**
 * The tick loop: slices never overlap, the next tick comes right away while there is work and after the idle
 * interval when there is none, HTTP ticks join the slice in flight, and stop() waits for the slice to end.
 */
import { afterEach, describe, expect, it } from "vitest";
import { moved, Runner, type SliceResult } from "../../src/engine/runner.ts";
import { Scheduler, SchedulerStoppedError } from "../../src/engine/scheduler.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import { createCoreScopeSchema, insertCoreScopeRows, type TempDb, tempDb } from "../helpers/db.ts";
import { legacyTransmissions } from "../helpers/engine.ts";

const result = (moreWork: boolean, steps = 1, pieces = 0): SliceResult => ({
  steps,
  rows: BigInt(steps),
  pieces,
  outcomes: [],
  moreWork,
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let scheduler: Scheduler | undefined;
let db: TempDb | undefined;
afterEach(async () => {
  await scheduler?.stop();
  scheduler = undefined;
  db?.cleanup();
  db = undefined;
});

describe("Scheduler", () => {
  it("never overlaps slices, ticks again at once while there is work, and waits tickMs when idle", async () => {
    let active = 0;
    let maxActive = 0;
    let calls = 0;
    let markIdle!: () => void;
    const idleSince = new Promise<void>((r) => {
      markIdle = r;
    });
    scheduler = new Scheduler({
      sliceBudgetMs: 100,
      tickMs: 60_000, // an idle tick would come only after a minute: the test sees at most the first one
      yieldMs: 0,
      runSlice: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        calls++;
        await sleep(2);
        active--;
        if (calls === 20) markIdle();
        return result(calls < 20);
      },
    });
    scheduler.start();
    // Concurrent HTTP ticks join whatever slice is in flight instead of starting another one.
    const joined = await Promise.all(Array.from({ length: 10 }, () => scheduler!.runOnce()));
    expect(new Set(joined).size).toBe(1);
    await idleSince;
    await sleep(50);
    expect(calls).toBe(20); // 20 slices back to back, then nothing during the idle interval
    expect(maxActive).toBe(1);
  });

  it("spaces slices with work by sliceIntervalMs from start to start (a duty cycle), yieldMs at the least", async () => {
    const starts: number[] = [];
    let markDone!: () => void;
    const done = new Promise<void>((r) => {
      markDone = r;
    });
    scheduler = new Scheduler({
      sliceBudgetMs: 100,
      tickMs: 60_000,
      yieldMs: 0,
      sliceIntervalMs: 80,
      runSlice: async () => {
        starts.push(performance.now());
        await sleep(20); // a slice shorter than the interval: the rest of it is the pause
        if (starts.length === 4) markDone();
        return result(starts.length < 4);
      },
    });
    scheduler.start();
    await done;
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    expect(gaps).toHaveLength(3);
    // Timers fire late on a busy machine, never early (allowing Node's 1 ms rounding).
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(79);
  });

  it("does not spin when a slice reports work but makes no progress (lease held elsewhere)", async () => {
    let calls = 0;
    scheduler = new Scheduler({
      sliceBudgetMs: 100,
      tickMs: 60_000,
      yieldMs: 0,
      runSlice: async () => {
        calls++;
        return result(true, 0);
      },
    });
    scheduler.start();
    await sleep(50);
    expect(calls).toBe(1);
  });

  it("ticks again at once after a slice that only counted or verified: walk pieces are progress", async () => {
    let calls = 0;
    let markSecond!: () => void;
    const second = new Promise<void>((r) => {
      markSecond = r;
    });
    scheduler = new Scheduler({
      sliceBudgetMs: 100,
      tickMs: 60_000, // were a walk-only slice taken for no progress, the next would come after a minute
      yieldMs: 0,
      runSlice: async () => {
        calls++;
        if (calls === 2) markSecond();
        return result(calls < 2, 0, 5); // no step, five pieces of a verification walk
      },
    });
    scheduler.start();
    await second;
    expect(calls).toBe(2);
    expect(moved(result(true, 0, 5))).toBe(true);
    expect(moved(result(true, 0, 0))).toBe(false);
  });

  it("wake() runs the next tick now instead of after the idle interval", async () => {
    let calls = 0;
    scheduler = new Scheduler({
      sliceBudgetMs: 100,
      tickMs: 60_000,
      yieldMs: 0,
      runSlice: async () => {
        calls++;
        return result(false, 0);
      },
    });
    scheduler.start();
    await sleep(20);
    expect(calls).toBe(1);
    scheduler.wake();
    await sleep(20);
    expect(calls).toBe(2);
  });

  it("stop() aborts the slice's signal and resolves only after the slice returned", async () => {
    let sliceEnded = false;
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    scheduler = new Scheduler({
      sliceBudgetMs: 100,
      tickMs: 10,
      yieldMs: 0,
      runSlice: async (_budget, signal) => {
        started();
        await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
        await sleep(30); // the step in flight finishes and the lease is released
        sliceEnded = true;
        return result(true);
      },
    });
    scheduler.start();
    await running;
    await scheduler.stop();
    expect(sliceEnded).toBe(true);
    await expect(scheduler.runOnce()).rejects.toBeInstanceOf(SchedulerStoppedError);
  });

  it("keeps ticking after a slice throws, reporting the error", async () => {
    const errors: unknown[] = [];
    let calls = 0;
    scheduler = new Scheduler({
      sliceBudgetMs: 100,
      tickMs: 1,
      yieldMs: 0,
      runSlice: async () => {
        calls++;
        if (calls <= 2) throw new Error(`unreachable ${calls}`);
        return result(false, 0);
      },
      onError: (e) => errors.push(e),
    });
    scheduler.start();
    for (let i = 0; i < 1000 && calls < 3; i++) await sleep(5);
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(errors.map((e) => (e as Error).message)).toEqual(["unreachable 1", "unreachable 2"]);
  });

  it("rejects bad intervals", () => {
    expect(
      () =>
        new Scheduler({
          sliceBudgetMs: 100,
          tickMs: Number.NaN,
          yieldMs: 0,
          runSlice: async () => result(false),
        }),
    ).toThrow(/tickMs/);
  });

  it("drives a real runner to the end of a backfill and releases the lease when stopped", async () => {
    db = tempDb();
    const client = db.open({ timeout: 1000 });
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, legacyTransmissions(5000));
    const runner = new Runner({ client, migrations: [txLastSeenBackfillV1], tuning: { yieldMs: 0 } });
    let finished!: () => void;
    const done = new Promise<void>((r) => {
      finished = r;
    });
    scheduler = new Scheduler({
      sliceBudgetMs: 200,
      tickMs: 60_000,
      yieldMs: 0,
      runSlice: (budget, signal) => runner.runSlice(budget, signal),
      onSlice: (r) => {
        if (!r.moreWork) finished();
      },
    });
    scheduler.start();
    await done;
    await scheduler.stop();
    const row = (await client.execute("SELECT status, rows_processed, lease_owner FROM _async_migrations"))
      .rows[0];
    expect(row).toMatchObject({ status: "done", rows_processed: 5000n, lease_owner: null });
  });
});
