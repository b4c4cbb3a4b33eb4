/**
 * Invariant 3 (fencing), deterministically in one process: a runner whose lease expired (a freeze) or was
 * taken over changes nothing with its next step — data included — and reports it as lease-lost, so a
 * non-idempotent migration (`n = n + 1`) still ends with every row incremented exactly once.
 */
import type { Client } from "@libsql/client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { classifyError } from "../../src/engine/errors.ts";
import { MigrationPlan } from "../../src/engine/plan.ts";
import { Runner, type SliceResult } from "../../src/engine/runner.ts";
import { StateStore } from "../../src/engine/state-store.ts";
import { resolveMigration } from "../../src/migrations/define.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  countersById,
  createCounterTable,
  dumpTable,
  EventLog,
  FakeClock,
} from "../helpers/engine.ts";

const NAME = "counter_v1";
const KEYS = Array.from({ length: 100 }, (_, i) => BigInt(i + 1));
const migration = counterMigration({ name: NAME });

let db: TempDb;
let client: Client;
beforeEach(async () => {
  db = tempDb();
  client = db.open();
  await createCounterTable(client, KEYS);
});
afterEach(() => db.cleanup());

/** Makes a lease look like its holder froze past its expiry. */
async function expireLease(): Promise<void> {
  await client.execute({
    sql: "UPDATE _async_migrations SET lease_expires_at = '2000-01-01T00:00:00.000Z' WHERE name = ?",
    args: [NAME],
  });
}

async function snapshot(): Promise<{ data: string[]; state: string[] }> {
  return { data: await dumpTable(client, "t"), state: await dumpTable(client, "_async_migrations") };
}

async function progress(): Promise<{ data: string[]; row: unknown }> {
  const row = await client.execute({
    sql: `SELECT CAST(cursor AS TEXT) AS cursor, CAST(rows_processed AS TEXT) AS rows_processed,
            CAST(steps AS TEXT) AS steps, CAST(lease_epoch AS TEXT) AS epoch, last_update_at, status
          FROM _async_migrations WHERE name = ?`,
    args: [NAME],
  });
  return { data: await dumpTable(client, "t"), row: { ...row.rows[0] } };
}

/** Waits until the runner is frozen in its yield; fails at once if its slice ended before getting there. */
async function frozen(held: { reached: Promise<void> }, slice: Promise<SliceResult>): Promise<void> {
  await Promise.race([
    held.reached,
    slice.then((r) => {
      throw new Error(`the slice ended before its first yield: ${JSON.stringify(r.outcomes)}`);
    }),
  ]);
}

/**
 * Makes the runner freeze in the yield after its first data step (the yields after the pieces of its count, which
 * come first, pass).
 */
function holdAfterFirstStep(r: Runner, clock: FakeClock): { reached: Promise<void>; release: () => void } {
  let held: ReturnType<FakeClock["hold"]> | undefined;
  let armed!: () => void;
  const stepped = new Promise<void>((resolve) => {
    armed = resolve;
  });
  const off = r.on((event) => {
    if (event.type !== "step" || held) return;
    held = clock.hold(); // events come before the yield, so this is the sleep that blocks
    off();
    armed();
  });
  return { reached: stepped.then(() => held!.reached), release: () => held?.release() };
}

function runner(owner: string, clock: FakeClock, log: EventLog): Runner {
  return new Runner({
    client: db.open(),
    migrations: [migration],
    owner,
    tuning: { initialBatch: 10, maxBatch: 10, yieldMs: 1 },
    clock,
    onEvent: log.listener,
  });
}

describe("a runner that froze past its lease", () => {
  it("changes nothing once another runner took over, and every row is incremented exactly once", async () => {
    const clockA = new FakeClock();
    const logA = new EventLog();
    const a = runner("runner-a", clockA, logA);
    const heldA = holdAfterFirstStep(a, clockA); // A freezes in the yield after its first step
    const sliceA = a.runSlice(60_000);
    await frozen(heldA, sliceA);
    expect(logA.of("step").map((s) => s.cursor)).toEqual([10n]);

    await expireLease();
    const clockB = new FakeClock();
    const logB = new EventLog();
    const b = runner("runner-b", clockB, logB);
    const heldB = clockB.hold(); // B takes over, does one step, and is still holding the lease
    const sliceB = b.runSlice(60_000);
    await frozen(heldB, sliceB);
    expect(logB.of("step").map((s) => s.cursor)).toEqual([20n]);

    const before = await snapshot();
    heldA.release(); // A wakes up and tries its next step (keys 11..20 again, by its stale cursor)
    const resultA = await sliceA;
    expect(resultA.outcomes).toEqual([{ name: NAME, outcome: "lease-lost" }]);
    expect(resultA.steps).toBe(1);
    expect(logA.of("lease-lost").length).toBe(1);
    expect(await snapshot()).toEqual(before); // not the data, not the row, not a lease release

    heldB.release();
    const resultB = await sliceB;
    expect(resultB.outcomes).toEqual([{ name: NAME, outcome: "done" }]);
    expect([...(await countersById(client)).values()]).toEqual(KEYS.map(() => 1n));
    const row = await b.store.get(NAME);
    expect(row?.status).toBe("done");
    expect(row?.rowsProcessed).toBe(100n);
  });

  it("changes nothing when its lease expired even if nobody took it, and a new slice goes on", async () => {
    const clock = new FakeClock();
    const log = new EventLog();
    const a = runner("runner-a", clock, log);
    const held = clock.hold();
    const slice = a.runSlice(60_000);
    await frozen(held, slice);
    await expireLease();
    const before = await progress();
    held.release();
    expect((await slice).outcomes).toEqual([{ name: NAME, outcome: "lease-lost" }]);
    // No step: data and progress as they were. (Releasing its own expired, untaken lease is allowed: no one
    // else holds it, and any new holder gets a higher epoch.)
    expect(await progress()).toEqual(before);

    await a.runUntilDone();
    expect([...(await countersById(client)).values()]).toEqual(KEYS.map(() => 1n));
    expect((await a.store.get(NAME))?.rowsProcessed).toBe(100n);
  });
});

describe("the fence on a step batch", () => {
  it("accepts only the current owner and epoch with an unexpired lease", async () => {
    const store = new StateStore(client);
    const plan = new MigrationPlan(resolveMigration(migration));
    await new Runner({ client, migrations: [migration] }).init();

    const first = await store.acquireLease(NAME, "runner-a", 60_000);
    expect(first).toBeDefined();
    const leaseA1 = first!.lease;
    await store.startRun(leaseA1, { scanEnd: (await plan.readKeyEnd(client)).end, batchSize: 10 });
    // A valid lease cannot be taken by someone else.
    expect(await store.acquireLease(NAME, "runner-b", 60_000)).toBeUndefined();

    const step = (lease: typeof leaseA1, cursor: bigint | null) =>
      plan.stepBatch(lease, { cursor, minKey: 1n, maxKey: 100n, pass: 1 }, 10, 0).statements;
    await client.batch(step(leaseA1, null), "write");
    expect((await store.get(NAME))?.cursor).toBe(10n);

    // The same owner re-acquires (e.g. a retried slice): the older epoch is fenced off.
    const leaseA2 = (await store.acquireLease(NAME, "runner-a", 60_000))!.lease;
    expect(leaseA2.epoch).toBe(leaseA1.epoch + 1n);
    const before = await snapshot();
    const stale = await client.batch(step(leaseA1, 10n), "write").catch((e: unknown) => e);
    expect(classifyError(stale).kind).toBe("lease-lost");
    expect(await snapshot()).toEqual(before);

    // Expired, then taken by B: A's current epoch is fenced off too, and A's release changes nothing.
    await expireLease();
    const leaseB = (await store.acquireLease(NAME, "runner-b", 60_000))!.lease;
    expect(leaseB.epoch).toBe(leaseA2.epoch + 1n);
    const beforeB = await snapshot();
    expect(classifyError(await client.batch(step(leaseA2, 10n), "write").catch((e: unknown) => e)).kind).toBe(
      "lease-lost",
    );
    expect(await store.releaseLease(leaseA2, { batchSize: 999 })).toBe(false);
    expect(await snapshot()).toEqual(beforeB);

    await client.batch(step(leaseB, 10n), "write");
    const counters = [...(await countersById(client)).values()];
    expect(counters).toEqual(KEYS.map((k) => (k <= 20n ? 1n : 0n)));
    expect(await store.releaseLease(leaseB)).toBe(true);
    expect((await store.get(NAME))?.leaseOwner).toBeNull();
  });
});
