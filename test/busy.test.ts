/**
 * Invariant 6 against a real lock: another process (the application) holds a write transaction open while a
 * runner works on the same file. The runner must back off with SQLITE_BUSY as its visible reason, the
 * migration must stay `running` (never `failed`), and once the lock is released the run must finish with exact
 * results — using the runner's own client, with no help from outside.
 *
 * The holder is a child process because the embedded client's busy wait is synchronous: the runner, in this
 * process, blocks the event loop for up to its 50 ms busy timeout per attempt, which a holder here would share.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@libsql/client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RunnerEvent } from "../src/engine/events.ts";
import { Runner } from "../src/engine/runner.ts";
import { StateStore } from "../src/engine/state-store.ts";
import type { Tuning } from "../src/engine/tuning.ts";
import { waitUntil } from "./fixtures/freeze.ts";
import {
  counterHistogram,
  createCounters,
  killAllChildren,
  spawnLockHolder,
  testCounterV1,
} from "./fixtures/multiprocess.ts";
import { type TempDb, tempDb } from "./helpers/db.ts";

const NAME = testCounterV1.name;
const ROWS = 20_000;

const TUNING: Partial<Tuning> = {
  initialBatch: 100,
  maxBatch: 200,
  yieldMs: 20,
  sliceBudgetMs: 30_000,
  leaseTtlMs: 20_000,
  retryMinMs: 25,
  retryMaxMs: 250,
};

let db: TempDb;
let abort: AbortController;

beforeEach(() => {
  db = tempDb();
  abort = new AbortController();
});

afterEach(async () => {
  abort.abort();
  await killAllChildren();
  db.cleanup();
});

async function setup(): Promise<{
  runnerClient: Client;
  monitor: Client;
  runner: Runner;
  events: RunnerEvent[];
}> {
  const monitor = db.open();
  await createCounters(monitor, ROWS);
  await monitor.execute("CREATE TABLE app_writes (id INTEGER PRIMARY KEY, at TEXT NOT NULL)");
  const runnerClient = db.open({ timeout: 50 });
  const runner = new Runner({
    client: runnerClient,
    migrations: [testCounterV1],
    tuning: TUNING,
    owner: "runner",
  });
  const events: RunnerEvent[] = [];
  runner.on((event) => events.push(event));
  return { runnerClient, monitor, runner, events };
}

/** Awaits `promise`, failing with the runner's last events if it takes longer than `ms`. */
async function within<T>(ms: number, promise: Promise<T>, events: readonly RunnerEvent[]): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const tail = events
        .slice(-5)
        .map((e) => JSON.stringify(e, (_k, v) => (typeof v === "bigint" ? `${v}` : v)));
      reject(new Error(`no result within ${ms} ms; last runner events: ${tail.join(" | ")}`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function expectFinishedExactly(monitor: Client, events: readonly RunnerEvent[]) {
  const row = (await new StateStore(monitor).get(NAME))!;
  expect(row.status).toBe("done");
  expect(row.error).toBeNull();
  expect(row.rowsProcessed).toBe(BigInt(ROWS));
  expect(row.rowsTotal).toBe(BigInt(ROWS));
  expect(await counterHistogram(monitor)).toEqual({ "1": BigInt(ROWS) });
  expect(events.filter((e) => e.type === "failed")).toEqual([]);
  // The application's write went through as well.
  const app = await monitor.execute("SELECT COUNT(*) AS c FROM app_writes");
  expect(BigInt(app.rows[0]!.c as bigint)).toBe(1n);
}

describe("another process holds the write lock for seconds", () => {
  it("a runner in the middle of a slice backs off with SQLITE_BUSY visible and finishes exactly afterwards", async () => {
    const { monitor, runner, events } = await setup();
    // The application is up before the run starts and takes the lock when told: mid-run, however long a process
    // takes to start on this machine. It holds the lock until the runner was seen backing off: sized by what
    // happened, not by how long the lock was held.
    const take = join(db.dir, "take");
    const release = join(db.dir, "release");
    const holder = spawnLockHolder("app", { dbPath: db.path, startFile: take, untilFile: release });
    await holder.waitForLine((l) => l.type === "waiting", 60_000);
    const run = runner.runUntilDone({ signal: abort.signal, idleWaitMs: 20 });
    run.catch(() => {}); // awaited below; a rejection before that must not go unhandled
    await waitUntil("three steps", () => events.filter((e) => e.type === "step").length >= 3, 20_000);
    writeFileSync(take, "");
    await holder.waitForLine((l) => l.type === "locked", 20_000);
    const eventsWhenLocked = events.length;
    const busyRetries = () =>
      events.slice(eventsWhenLocked).filter((e) => e.type === "retrying" && e.code === "SQLITE_BUSY").length;
    const reasons: (string | null)[] = [];
    const statuses: string[] = [];
    const store = new StateStore(monitor);
    await waitUntil(
      "two SQLITE_BUSY retries and the reason visible while the lock is held",
      async () => {
        reasons.push(runner.state().find((s) => s.name === NAME)?.reason ?? null);
        // A read: in WAL mode it does not wait for the writer.
        statuses.push((await store.get(NAME))?.status ?? "missing");
        return busyRetries() >= 2 && reasons.some((r) => r?.startsWith("SQLITE_BUSY"));
      },
      60_000,
    );
    writeFileSync(release, "");
    expect(await holder.waitForExit(20_000), holder.describe()).toEqual({ code: 0, signal: null });
    // While the lock was held the row stayed running (never failed).
    expect(new Set(statuses)).toEqual(new Set(["running"]));

    await within(20_000, run, events);
    await expectFinishedExactly(monitor, events);
    expect(runner.state().find((s) => s.name === NAME)?.reason).toBeNull();
  });

  it("a tick that starts while the lock is held reports a retry instead of throwing, then finishes", async () => {
    const { monitor, runner, events } = await setup();
    // Start the run (status running, bounds frozen), then let the application take the lock between ticks.
    await runner.runSlice(200);
    expect((await new StateStore(monitor).get(NAME))?.status).toBe("running");

    const release = join(db.dir, "release");
    const holder = spawnLockHolder("app", { dbPath: db.path, untilFile: release });
    await holder.waitForLine((l) => l.type === "locked", 20_000);
    const slice = await within(10_000, runner.runSlice(500, abort.signal), events);
    expect(slice.moreWork).toBe(true);
    expect(slice.steps).toBe(0);
    expect(events.some((e) => e.type === "retrying" && e.code === "SQLITE_BUSY")).toBe(true);
    expect(runner.state().find((s) => s.name === NAME)?.reason).toMatch(/^SQLITE_BUSY/);
    expect((await new StateStore(monitor).get(NAME))?.status).toBe("running");
    writeFileSync(release, "");
    expect(await holder.waitForExit(20_000), holder.describe()).toEqual({ code: 0, signal: null });

    await within(20_000, runner.runUntilDone({ signal: abort.signal, idleWaitMs: 20 }), events);
    await expectFinishedExactly(monitor, events);
  });
});
