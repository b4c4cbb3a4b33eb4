/**
 * The read path's cache (invariant 7): at most one database read per TTL per process however many requests
 * arrive, single-flight, errors not cached, published snapshots served without a read.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type Snapshot, SnapshotCache } from "../../src/progress/snapshot.ts";
import { type Harness, startHarness, TX } from "../fixtures/server-harness.ts";
import { type RecordedCall, recordingClient, sqlOf } from "../helpers/engine.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

/** Reads of the state table among the calls the wrapped client saw. */
function stateReads(calls: readonly RecordedCall[]): number {
  return calls.filter((c) => c.statements.some((s) => /FROM\s+_async_migrations\b/i.test(sqlOf(s)))).length;
}

describe("SnapshotCache behind the routes", () => {
  it("answers 1 000 concurrent /api/healthz and /api/perf requests with one database read per TTL", async () => {
    let now = 1_000_000;
    let calls: RecordedCall[] = [];
    h = await startHarness({
      env: { TRICKLE_SNAPSHOT_TTL_MS: "1000" },
      now: () => now,
      wrap: (client) => {
        const recording = recordingClient(client);
        calls = recording.calls;
        return recording.client;
      },
    });
    const burst = async () => {
      const responses = await Promise.all(
        Array.from({ length: 1000 }, (_, i) => h!.request("GET", i % 2 === 0 ? "/api/healthz" : "/api/perf")),
      );
      for (const res of responses) expect(res.status).toBe(200);
      const bodies = await Promise.all(responses.map((r) => r.json() as Promise<Record<string, unknown>>));
      return bodies;
    };

    calls.length = 0;
    const first = await burst();
    expect(stateReads(calls)).toBe(1);
    expect(calls.length).toBe(1); // nothing else touched the database either
    expect((first[0]!.async_migrations as { name: string }[])[0]?.name).toBe(TX);
    expect(h.service.snapshots.reads).toBe(1);

    now += 999; // still inside the TTL: served from memory
    calls.length = 0;
    await burst();
    expect(stateReads(calls)).toBe(0);

    now += 1; // the TTL has passed: exactly one new read for the whole burst
    calls.length = 0;
    await burst();
    expect(stateReads(calls)).toBe(1);
    expect(h.service.snapshots.reads).toBe(2);
  });

  it("serves what the runner published without reading, while it is fresher than the TTL", async () => {
    let now = 5_000;
    let calls: RecordedCall[] = [];
    h = await startHarness({
      env: { TRICKLE_SNAPSHOT_TTL_MS: "1000" },
      now: () => now,
      wrap: (client) => {
        const recording = recordingClient(client);
        calls = recording.calls;
        return recording.client;
      },
    });
    const published: Snapshot = {
      takenAt: now,
      migrations: [
        {
          name: TX,
          status: "running",
          rowsProcessed: 5,
          rowsTotal: 10,
          rate: 1,
          etaSeconds: 5,
          elapsedSeconds: 5,
          errorMessage: null,
          startedAt: null,
          endedAt: null,
          lastUpdateAt: null,
          percent: 50,
          busyRate: 2,
          reason: null,
          batchSize: 10,
          leaseOwner: "me",
          pass: 1,
          steps: 1,
          etaLowSeconds: null,
          etaHighSeconds: null,
          stuck: false,
          progressAt: null,
          quarantined: 0,
          verifiedAt: null,
          residual: null,
          throttle: null,
          ratePerSec: 1,
          etaSec: 5,
          elapsedSec: 5,
          phase: "backfilling",
          phaseCursor: 5,
          phaseEnd: 10,
          owned: true,
        },
      ],
    };
    h.service.snapshots.publish(published);
    calls.length = 0;
    now += 500;
    const body = (await (await h.request("GET", "/api/healthz")).json()) as Record<string, unknown>;
    expect(body.async_migrations_running).toBe(true);
    expect(body.snapshot_age_ms).toBe(500);
    expect(calls.length).toBe(0);
  });
});

describe("SnapshotCache", () => {
  const ok = (takenAt: number): Snapshot => ({ takenAt, migrations: [] });

  it("shares one in-flight read between concurrent callers and does not cache errors", async () => {
    let now = 0;
    let reads = 0;
    let fail = true;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const cache = new SnapshotCache({
      ttlMs: 1000,
      now: () => now,
      read: async () => {
        reads++;
        await gate;
        if (fail) throw new Error("database is locked");
        return ok(now);
      },
    });
    const pending = Array.from({ length: 100 }, () => cache.get());
    release();
    const served = await Promise.all(pending);
    expect(reads).toBe(1);
    for (const s of served) expect(s.snapshot.error).toMatch(/database is locked/);

    // The failure is not cached: the very next call reads again, at the same instant.
    fail = false;
    const next = await cache.get();
    expect(reads).toBe(2);
    expect(next.snapshot.error).toBeUndefined();

    // And a success is: no read until the TTL has passed.
    now += 999;
    await cache.get();
    expect(reads).toBe(2);
    now += 1;
    await cache.get();
    expect(reads).toBe(3);
  });

  it("keeps the last known migrations in a fail-closed answer", async () => {
    let now = 0;
    let fail = false;
    const cache = new SnapshotCache({
      ttlMs: 10,
      now: () => now,
      read: async () => {
        if (fail) throw new Error("gone");
        return { takenAt: now, migrations: [{ name: "a" } as Snapshot["migrations"][number]] };
      },
    });
    await cache.get();
    fail = true;
    now = 100;
    const served = await cache.get();
    expect(served.snapshot.error).toMatch(/gone/);
    expect(served.snapshot.migrations.map((m) => m.name)).toEqual(["a"]);
    expect(served.ageMs).toBe(100);
  });

  it("recovers when the read function throws synchronously", async () => {
    let throwNow = true;
    const cache = new SnapshotCache({
      ttlMs: 1000,
      read: () => {
        if (throwNow) throw new Error("sync failure");
        return Promise.resolve(ok(Date.now()));
      },
    });
    expect((await cache.get()).snapshot.error).toMatch(/sync failure/);
    throwNow = false;
    expect((await cache.get()).snapshot.error).toBeUndefined();
  });

  it("ignores published snapshots older than the one it holds, and never caches a published error", async () => {
    let now = 100;
    const cache = new SnapshotCache({ ttlMs: 1000, now: () => now, read: async () => ok(now) });
    cache.publish(ok(50));
    cache.publish(ok(40));
    expect((await cache.get()).snapshot.takenAt).toBe(50);
    cache.publish({ takenAt: 90, migrations: [], error: "x" });
    expect((await cache.get()).snapshot.error).toBeUndefined();
    now = 2000;
    expect((await cache.get()).snapshot.takenAt).toBe(2000);
  });
});
