/**
 * Invariant 10 (every statement is bounded, reads included) and the run's edges: counting and verification walk
 * the key in budgeted pieces that survive a lease change; a run whose frozen range was empty ends `done`; a
 * quarantined key is the key that failed.
 */
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { buildSnapshot } from "../../src/progress/snapshot.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  countersById,
  createCounterTable,
  EventLog,
  FakeClock,
  rawStateRow,
  recordingClient,
  sqlOf,
} from "../helpers/engine.ts";

let db: TempDb;
afterEach(() => db?.cleanup());

const keys = (n: number) => Array.from({ length: n }, (_, i) => BigInt(i + 1));

/** A verification that reads `other` once per row of `t`, unindexed: long as one statement, cheap per piece. */
const SLOW_VERIFY = "(SELECT COUNT(*) FROM other WHERE other.v = t.id % 97) >= 0 AND done = 0";

async function slowVerifyTable(client: Client, rows: number, otherRows: number): Promise<void> {
  await createCounterTable(client, keys(rows));
  await client.execute("CREATE TABLE other (v INTEGER)");
  await client.execute({
    sql: `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) INSERT INTO other SELECT i % 101 FROM c`,
    args: [BigInt(otherRows)],
  });
}

describe("bounded statements (invariant 10)", () => {
  it("never reads the user's table without a key range and a LIMIT; a verification longer than the lease completes", async () => {
    db = tempDb();
    const client = db.open({ timeout: 1000 });
    await slowVerifyTable(client, 6_000, 3_000);
    const migration = counterMigration({
      name: "slow_verify_v1",
      filter: "done = 0",
      set: "n = n + 1, done = 1",
      verify: SLOW_VERIFY,
    });
    // The whole verification as one statement, timed on this machine: the lease below is shorter than that.
    const began = performance.now();
    await client.execute(`SELECT COUNT(*) FROM t WHERE ${SLOW_VERIFY}`);
    const wholeMs = performance.now() - began;
    const leaseTtlMs = Math.max(100, Math.floor(wholeMs / 3));
    const recording = recordingClient(client);
    const log = new EventLog();
    const runner = new Runner({
      client: recording.client,
      migrations: [migration],
      tuning: { leaseTtlMs, sliceBudgetMs: Math.max(50, Math.floor(leaseTtlMs / 2)), stepTargetMs: 10 },
      onEvent: log.listener,
    });
    await runner.runUntilDone();

    const row = await rawStateRow(client, "slow_verify_v1");
    expect(row?.status).toBe("done");
    expect(row?.rows_processed).toBe("6000");
    expect(row?.rows_total).toBe("6000");
    expect([...(await countersById(client)).values()].every((n) => n === 1n)).toBe(true);
    // Verification went in pieces, each recorded with the lease renewed.
    const verifying = log.of("scan").filter((e) => e.phase === "verifying");
    expect(verifying.length).toBeGreaterThan(1);
    // Every statement that reads `t` walks a key range with a LIMIT, looks up one end of the key, or compiles a
    // fragment without reading a row.
    const readsT = recording.calls
      .flatMap((c) => c.statements.map(sqlOf))
      .filter((sql) => /FROM "t"/.test(sql));
    for (const sql of readsT) {
      const bounded =
        /ORDER BY "id" LIMIT :trickle_(n|piece)/.test(sql) ||
        /SELECT MAX\("id"\) AS m FROM "t"/.test(sql) ||
        /WHERE 0 AND|LIMIT 0$/.test(sql.trim());
      expect(bounded, sql).toBe(true);
    }
  });

  it("counts candidates before changing anything, and survives a takeover in the middle of the count", async () => {
    db = tempDb();
    const client = db.open({ timeout: 1000 });
    await createCounterTable(client, keys(5_000), "t", { doneKeys: keys(2_000) });
    const migration = counterMigration({ name: "count_v1", filter: "done = 0", set: "n = n + 1, done = 1" });
    const tuning = { initialBatch: 10, maxBatch: 10, stepTargetMs: 10 };
    // A first runner counts for a few pieces only (tiny fake budget), then a second one takes over.
    const clock = new FakeClock();
    const first = new Runner({
      client: recordingClient(client, {
        beforeBatch: (statements) => {
          if (statements.some((s) => sqlOf(s).includes("scan_cursor = CASE"))) clock.advance(5);
        },
      }).client,
      migrations: [migration],
      tuning,
      clock,
    });
    const counted = await first.runSlice(12);
    // A slice that only counted moved the run on: its pieces say so, so nobody waits an idle tick after it.
    expect(counted.steps).toBe(0);
    expect(counted.pieces).toBeGreaterThan(0);
    expect(counted.moreWork).toBe(true);
    const mid = await rawStateRow(client, "count_v1");
    expect(mid?.phase).toBe("counting");
    expect(BigInt(mid?.scan_cursor ?? "0")).toBeGreaterThan(0n);
    expect(mid?.rows_processed).toBe("0");
    // The status routes say what it is doing and how far the walk has come.
    const info = buildSnapshot([(await first.store.get("count_v1"))!], {
      names: ["count_v1"],
      takenAt: Date.now(),
    }).migrations[0];
    expect(info).toMatchObject({ status: "running", phase: "counting", phaseEnd: 5000 });
    expect(Number(info?.phaseCursor)).toBeGreaterThan(0);
    expect([...(await countersById(client)).values()].every((n) => n === 0n)).toBe(true);
    await client.execute("UPDATE _async_migrations SET lease_expires_at = '2000-01-01T00:00:00.000Z'");

    const second = new Runner({ client, migrations: [migration], tuning: { stepTargetMs: 10, yieldMs: 0 } });
    await second.runUntilDone();
    const row = await rawStateRow(client, "count_v1");
    expect(row).toMatchObject({
      status: "done",
      rows_total: "3000",
      rows_processed: "3000",
      min_key: "2001",
    });
    const counters = await countersById(client);
    for (const [id, n] of counters) expect(n).toBe(BigInt(id) > 2000n ? 1n : 0n);
  });
});

describe("a run whose frozen range was empty", () => {
  it("ends done when rows arrive after it started; they are out of its scope", async () => {
    db = tempDb();
    const client = db.open();
    await createCounterTable(client, []);
    const migration = counterMigration({ name: "empty_v1", filter: "done = 0", set: "n = n + 1, done = 1" });
    // Rows arrive right after the run froze its (empty) range, before it finishes.
    const recording = recordingClient(client, {
      afterBatch: async (statements) => {
        if (statements.some((s) => sqlOf(s).includes("SET status = 'running'")))
          await client.execute("INSERT INTO t (id) VALUES (1), (2)");
      },
    });
    const runner = new Runner({ client: recording.client, migrations: [migration] });
    await runner.runUntilDone();
    const row = await rawStateRow(client, "empty_v1");
    expect(row).toMatchObject({ status: "done", rows_processed: "0", pass: "1" });
    expect([...(await countersById(client)).values()]).toEqual([0n, 0n]);
    // A new run (after a retry of another version, say) would take them; this one is over.
    expect((await rawStateRow(client, "empty_v1"))?.rows_total).toBe("0");
  });
});

describe("quarantine", () => {
  it("records the key that failed, even when its row is gone before the record is written", async () => {
    db = tempDb();
    const client = db.open();
    await createCounterTable(client, keys(10));
    await client.execute("UPDATE t SET bad = 1 WHERE id = 5");
    const poison = counterMigration({
      name: "poison_v1",
      filter: "done = 0",
      set: "n = CASE WHEN bad = 1 THEN NULL ELSE n + 1 END, done = 1",
    });
    const recording = recordingClient(client, {
      beforeBatch: async (statements) => {
        // The poison row disappears between the failed step and the quarantine record.
        if (statements.some((s) => sqlOf(s).includes("INSERT INTO _async_migration_failures")))
          await client.execute("DELETE FROM t WHERE id = 5");
      },
    });
    const runner = new Runner({
      client: recording.client,
      migrations: [poison],
      tuning: { initialBatch: 10, maxBatch: 10 },
    });
    await runner.runUntilDone();
    const failures = await client.execute("SELECT CAST(key AS TEXT) AS k FROM _async_migration_failures");
    expect(failures.rows.map((r) => String(r.k))).toEqual(["5"]);
    const counters = await countersById(client);
    expect(counters.get("6")).toBe(1n); // the next row was not skipped
    expect([...counters.values()].every((n) => n === 1n)).toBe(true);
    expect((await rawStateRow(client, "poison_v1"))?.status).toBe("done");
  });
});
