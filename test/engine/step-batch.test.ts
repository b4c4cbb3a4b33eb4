/**
 * Invariant 1 (one step = one `client.batch([...], "write")`), checked structurally on a real client wrapped
 * so every call is recorded: each step is one write batch holding the fence, the data change and the progress
 * update; no interactive transaction; no separate write between steps.
 */
import type { InStatement } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/engine/clock.ts";
import { Runner } from "../../src/engine/runner.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import type { MigrationDefinition } from "../../src/migrations/define.ts";
import { createCoreScopeSchema, insertCoreScopeRows, type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  createCounterTable,
  EventLog,
  FakeClock,
  isWrite,
  legacyTransmissions,
  recordingClient,
  sqlOf,
  stepSizeOf,
} from "../helpers/engine.ts";

let db: TempDb;
afterEach(() => db?.cleanup());

const custom: MigrationDefinition = {
  name: "custom_copy_v1",
  description: "copy ids into another table",
  table: "t",
  filter: "done = 0",
  requires: ["t", "copied"],
  step: (range) => [
    { sql: `INSERT INTO copied (src) SELECT id FROM t WHERE ${range.candidates}`, args: { ...range.args } },
    { sql: `UPDATE t SET done = 1 WHERE ${range.candidates}`, args: { ...range.args } },
  ],
};

const writesTable = (table: string) => (s: InStatement) =>
  new RegExp(`^\\s*(UPDATE|INSERT\\s+INTO|DELETE\\s+FROM)\\s+"?${table}"?\\s`, "i").test(sqlOf(s));

describe.each([
  { form: "set", migration: counterMigration(), table: "t" },
  { form: "custom step", migration: custom, table: "t" },
  { form: "built-in tx_last_seen_backfill_v1", migration: txLastSeenBackfillV1, table: "transmissions" },
])("one step is one write batch ($form)", ({ migration, table }) => {
  it("commits the data change and the progress together, with no transaction() and no other write between steps", async () => {
    db = tempDb();
    const real = db.open();
    if (table === "t") {
      await createCounterTable(
        real,
        Array.from({ length: 95 }, (_, i) => BigInt(i + 1)),
      );
      await real.execute("CREATE TABLE copied (src INTEGER NOT NULL)");
    } else {
      await createCoreScopeSchema(real);
      await insertCoreScopeRows(real, legacyTransmissions(95));
    }
    const recording = recordingClient(real);
    const log = new EventLog();
    const runner = new Runner({
      client: recording.client,
      migrations: [migration],
      tuning: { initialBatch: 10, maxBatch: 10, yieldMs: 1 },
      clock: new FakeClock(),
      onEvent: log.listener,
    });

    await runner.runUntilDone();
    expect((await runner.store.get(migration.name))?.status).toBe("done");

    const calls = recording.calls;
    expect(calls.filter((c) => c.method === "transaction" || c.method === "executeMultiple")).toEqual([]);
    const stepCalls = calls.flatMap((c, i) => (stepSizeOf(c.statements) !== undefined ? [i] : []));
    expect(stepCalls.length).toBe(log.of("step").length);
    for (const step of log.of("step")) expect(step.lockWaitMs).toBe(0); // a simulated clock: no split
    expect(stepCalls.length).toBe(10);
    for (const i of stepCalls) {
      const call = calls[i]!;
      expect(call.method).toBe("batch");
      expect(call.mode).toBe("write");
      const sql = call.statements.map(sqlOf);
      // Fenced before anything else (with a real clock, a read of SQLite's clock comes first: write-batch.test.ts).
      expect(sql[0]).toMatch(/^INSERT INTO _async_migrations_fence/);
      expect(call.statements.some(writesTable(table))).toBe(true); // the data change
      expect(
        sql.some((s) => /UPDATE _async_migrations SET[\s\S]*rows_processed = rows_processed \+/.test(s)),
      ).toBe(true); // the progress update
      expect(sql.some((s) => /UPDATE _async_migrations SET cursor =/.test(s))).toBe(true); // the cursor
      // On a local file the range's end was read before the batch: the write lock covers no key walk.
      expect(sql.some((s) => /SELECT MAX\(k\)/.test(s))).toBe(false);
    }
    const rangeReads = calls.filter((c) => /^SELECT CAST\(\(SELECT MAX\(k\)/.test(sqlOf(c.statements[0]!)));
    expect(rangeReads.map((c) => c.method)).toEqual(stepCalls.map(() => "execute")); // one read per step
    // The data table is written only inside step batches.
    calls.forEach((call, i) => {
      if (!stepCalls.includes(i)) expect(call.statements.filter(writesTable(table))).toEqual([]);
    });
    // Between the first and last step, the only writes are the steps themselves (one slice, one lease).
    for (let i = stepCalls[0]!; i <= stepCalls.at(-1)!; i++) {
      if (stepCalls.includes(i)) continue;
      expect(calls[i]!.statements.filter(isWrite).map(sqlOf)).toEqual([]);
    }
    // The read-only walks (counting, verification) on a local file: each piece is counted by a read just before
    // its batch, which records the figures; the write lock never covers a read of the user's table.
    const pieceCalls = calls.filter((c) => c.statements.some((s) => sqlOf(s).includes("scan_cursor = CASE")));
    // Counting, and verification where the definition has something to verify (the counter's verify is "0").
    const verifies = (migration.verify ?? migration.filter ?? "0").trim() !== "0";
    expect(pieceCalls.length).toBeGreaterThanOrEqual(verifies ? 2 : 1);
    for (const call of pieceCalls) {
      expect(call.method).toBe("batch");
      const sql = call.statements.map(sqlOf).join("\n");
      expect(sql).toMatch(/FROM \(SELECT :trickle_keys AS keys/);
      expect(sql).not.toMatch(new RegExp(`FROM "?${table}"?\\s`));
    }
    const pieceReads = calls.filter((c) => /^SELECT CAST\(keys AS TEXT\)/.test(sqlOf(c.statements[0]!)));
    expect(pieceReads.map((c) => c.method)).toEqual(pieceCalls.map(() => "execute"));
  });
});

describe("one step is one write batch, with a real clock", () => {
  it("reads SQLite's clock first, inside the same batch, and is fenced before anything it writes", async () => {
    db = tempDb();
    const real = db.open();
    await createCounterTable(
      real,
      Array.from({ length: 95 }, (_, i) => BigInt(i + 1)),
    );
    const recording = recordingClient(real);
    const log = new EventLog();
    const runner = new Runner({
      client: recording.client,
      migrations: [counterMigration()],
      tuning: { initialBatch: 10, maxBatch: 10, yieldMs: 1 },
      clock: systemClock, // has wall(): the wait for the lock is told apart from the hold
      onEvent: log.listener,
    });

    await runner.runUntilDone();
    expect((await runner.store.get("counter_v1"))?.status).toBe("done");

    const calls = recording.calls;
    expect(calls.filter((c) => c.method === "transaction" || c.method === "executeMultiple")).toEqual([]);
    const stepCalls = calls.filter((c) => stepSizeOf(c.statements) !== undefined);
    expect(stepCalls).toHaveLength(log.of("step").length);
    expect(stepCalls).toHaveLength(10);
    for (const call of stepCalls) {
      expect(call.method).toBe("batch");
      expect(call.mode).toBe("write");
      const sql = call.statements.map(sqlOf);
      expect(sql[0]).toMatch(/^SELECT unixepoch\('subsec'\)/); // when the lock was taken
      expect(sqlOf(call.statements.find(isWrite)!)).toMatch(/^INSERT INTO _async_migrations_fence/);
      expect(call.statements.some(writesTable("t"))).toBe(true); // the data change, in the same batch
    }
    for (const step of log.of("step")) {
      expect(step.lockWaitMs).toBeGreaterThanOrEqual(0);
      expect(step.durationMs).toBeGreaterThanOrEqual(0);
    }
  });
});
