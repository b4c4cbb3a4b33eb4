/**
 * Lifecycle (invariants 2, 4 and 6 in one process): failures are recorded with their message and never look
 * like `done`; verification re-sweeps rows that need work again; operator controls stop a running runner at its
 * next step and resume from the cursor; impossible transitions are refused.
 */
import type { Client } from "@libsql/client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { type ControlAction, StateStore } from "../../src/engine/state-store.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import type { MigrationDefinition } from "../../src/migrations/define.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  lastSeenById,
  oneShotResult,
  type TempDb,
  tempDb,
} from "../helpers/db.ts";
import {
  counterMigration,
  countersById,
  createCounterTable,
  EventLog,
  FakeClock,
  legacyTransmissions,
  rawStateRow,
} from "../helpers/engine.ts";

const KEYS = Array.from({ length: 100 }, (_, i) => BigInt(i + 1));
const FIXED_10 = { initialBatch: 10, maxBatch: 10, yieldMs: 1 };

let db: TempDb;
let client: Client;
afterEach(() => db.cleanup());

function makeRunner(migration: MigrationDefinition, log = new EventLog(), clock = new FakeClock()): Runner {
  return new Runner({ client, migrations: [migration], tuning: FIXED_10, clock, onEvent: log.listener });
}

async function countersList(): Promise<bigint[]> {
  return [...(await countersById(client)).values()];
}

describe("failures", () => {
  beforeEach(async () => {
    db = tempDb();
    client = db.open();
    await createCounterTable(client, KEYS);
  });

  it("fails with the SQLite message when its filter stops compiling after start-up, never done with 0 rows", async () => {
    await client.execute("ALTER TABLE t ADD COLUMN gone INTEGER NOT NULL DEFAULT 0");
    const log = new EventLog();
    const runner = makeRunner(counterMigration({ name: "bad_filter_v1", filter: "gone = 0" }), log);
    await runner.init(); // the filter compiles at start-up…
    await client.execute("ALTER TABLE t DROP COLUMN gone"); // …and no longer when the run starts

    const results = await runner.runUntilDone();

    const row = await runner.store.get("bad_filter_v1");
    expect(row?.status).toBe("failed");
    expect(row?.error).toMatch(/no such column: gone/);
    expect(row?.endedAt).not.toBeNull();
    expect(row?.leaseOwner).toBeNull();
    expect(log.of("done")).toEqual([]);
    expect(log.of("failed")[0]?.message).toMatch(/no such column/);
    expect(results.at(-1)?.moreWork).toBe(false);
    expect(await countersList()).toEqual(KEYS.map(() => 0n));
  });

  it("with quarantine off, fails a deterministic step error without advancing past committed work, and retry continues from the cursor", async () => {
    await client.execute("UPDATE t SET bad = 1 WHERE id = 57");
    // Not idempotent (no guard in the filter): a retry that restarted from the beginning would leave n = 2.
    const migration = counterMigration({
      name: "step_error_v1",
      set: "n = CASE WHEN bad = 1 THEN NULL ELSE n + 1 END",
    });
    const log = new EventLog();
    // maxQuarantined 0: no bisection, the first failing step fails the run (test/features/quarantine.test.ts
    // covers the default, where row 57 is quarantined and the run goes on).
    const runner = new Runner({
      client,
      migrations: [migration],
      tuning: { ...FIXED_10, maxQuarantined: 0 },
      clock: new FakeClock(),
      onEvent: log.listener,
    });

    await runner.runUntilDone();

    const failed = await rawStateRow(client, "step_error_v1");
    expect(failed?.status).toBe("failed");
    expect(failed?.error).toMatch(/NOT NULL constraint failed: t\.n/);
    expect(failed?.cursor).toBe("50"); // five committed steps; the sixth (51..60) rolled back entirely
    expect(failed?.rows_processed).toBe("50");
    expect(await countersList()).toEqual(KEYS.map((k) => (k <= 50n ? 1n : 0n)));
    expect(log.of("step").length).toBe(5);

    await client.execute("UPDATE t SET bad = 0");
    const retried = await runner.store.control("step_error_v1", "retry");
    expect(retried).toMatchObject({ status: "ok", from: "failed", to: "running" });
    const afterRetry = await rawStateRow(client, "step_error_v1");
    expect(afterRetry?.error).toBeNull();
    expect(afterRetry?.cursor).toBe("50");

    await runner.runUntilDone();

    expect(log.of("step")[5]).toMatchObject({ cursor: 60n, rows: 10n, rowsProcessed: 60n });
    expect(await countersList()).toEqual(KEYS.map(() => 1n));
    const done = await rawStateRow(client, "step_error_v1");
    expect(done?.status).toBe("done");
    expect(done?.rows_processed).toBe("100");
    expect(done?.rows_total).toBe("100");
  });

  it("fails when a definition's set does not clear its verify condition, after re-sweeping", async () => {
    const log = new EventLog();
    // `filter` doubles as `verify`, and `set` leaves done = 0: every row still needs work after every pass.
    const runner = makeRunner(
      counterMigration({ name: "never_clears_v1", filter: "done = 0", verify: "done = 0" }),
      log,
    );

    await runner.runUntilDone();

    expect(log.of("sweep").map((s) => [s.pass, s.residual])).toEqual([
      [2, 100n],
      [3, 100n],
    ]);
    const row = await runner.store.get("never_clears_v1");
    expect(row?.status).toBe("failed");
    expect(row?.error).toMatch(/verification found 100 rows still needing work after 3 passes/);
    expect(row?.residual).toBe(100n);
    expect(log.of("done")).toEqual([]);

    // Retry gives a run that failed verification its sweeps back instead of failing again at once.
    expect(await runner.store.control("never_clears_v1", "retry")).toMatchObject({
      status: "ok",
      to: "running",
    });
    await runner.runUntilDone();
    expect(log.of("sweep").map((s) => s.pass)).toEqual([2, 3, 2, 3]);
    expect((await runner.store.get("never_clears_v1"))?.status).toBe("failed");
  });
});

describe("concurrent writes during a run", () => {
  it("sweeps a row put back into the candidate set behind the cursor before declaring done", async () => {
    db = tempDb();
    client = db.open();
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, legacyTransmissions(200));
    const oracle = await oneShotResult(client, db);
    const app = db.open(); // the application's own connection
    const clock = new FakeClock();
    const log = new EventLog();
    let wrote = false;
    const runner = new Runner({
      client,
      migrations: [txLastSeenBackfillV1],
      tuning: { initialBatch: 20, maxBatch: 20, yieldMs: 1 },
      clock,
      onEvent: (event) => {
        log.listener(event);
        if (event.type === "step" && event.cursor !== null && event.cursor >= 100n && !wrote) {
          wrote = true;
          // Row 5 was done in an earlier step; the application resets it, and adds a row past the frozen bound.
          clock.defer(async () => {
            await app.execute("UPDATE transmissions SET last_seen = 0 WHERE id = 5");
            await insertCoreScopeRows(app, [{ id: 10_000n, lastSeen: 0n, timestamps: [77n] }]);
          });
        }
      },
    });

    await runner.runUntilDone();

    expect(wrote).toBe(true);
    expect(log.of("sweep")).toEqual([
      { type: "sweep", name: txLastSeenBackfillV1.name, residual: 1n, pass: 2 },
    ]);
    const ids = await lastSeenById(client);
    expect(ids.filter((r) => !r.startsWith("10000:"))).toEqual(oracle); // row 5 has its value again
    expect(ids).toContain("10000:0"); // beyond the run's frozen upper bound: not this run's work
    const row = await runner.store.get(txLastSeenBackfillV1.name);
    expect(row?.status).toBe("done");
    expect(row?.maxKey).toBe(200n);
    expect(row?.rowsTotal).toBe(201n);
    expect(row?.rowsProcessed).toBe(201n);
  });
});

describe("operator controls", () => {
  const NAME = "controlled_v1";
  let operator: StateStore;

  beforeEach(async () => {
    db = tempDb();
    client = db.open();
    await createCounterTable(client, KEYS);
    operator = new StateStore(db.open());
  });

  /** Runs one slice that performs `action` (through another connection) right after its second step. */
  async function sliceWithControlAfterStep2(action: ControlAction) {
    const clock = new FakeClock();
    const log = new EventLog();
    let atControl: { state: Record<string, string | null> | undefined; data: bigint[] } | undefined;
    const runner = new Runner({
      client,
      migrations: [counterMigration({ name: NAME })],
      tuning: FIXED_10,
      clock,
      onEvent: (event) => {
        log.listener(event);
        if (event.type === "step" && log.of("step").length === 2) {
          clock.defer(async () => {
            expect((await operator.control(NAME, action)).status).toBe("ok");
            atControl = { state: await rawStateRow(client, NAME), data: await countersList() };
          });
        }
      },
    });
    const result = await runner.runSlice(10_000);
    return { runner, log, result, atControl: atControl! };
  }

  it("pause revokes the lease: the runner stops at its next step, writes nothing more, and resume continues", async () => {
    const { runner, log, result, atControl } = await sliceWithControlAfterStep2("pause");

    expect(result.outcomes).toEqual([{ name: NAME, outcome: "lease-lost" }]);
    expect(log.of("step").length).toBe(2);
    expect(log.of("lease-lost").length).toBe(1);
    // Nothing was written after the pause: not the data, not the row (no step, no lease release).
    expect(await rawStateRow(client, NAME)).toEqual(atControl.state);
    expect(await countersList()).toEqual(atControl.data);
    expect(atControl.state?.status).toBe("paused");
    expect(atControl.state?.lease_owner).toBeNull();
    expect(atControl.data).toEqual(KEYS.map((k) => (k <= 20n ? 1n : 0n)));

    const idle = await runner.runUntilDone();
    expect(idle.reduce((sum, r) => sum + r.steps, 0)).toBe(0);
    expect(idle.at(-1)?.moreWork).toBe(false);

    expect(await operator.control(NAME, "resume")).toMatchObject({
      status: "ok",
      from: "paused",
      to: "running",
    });
    await runner.runUntilDone();
    expect(log.of("step")[2]).toMatchObject({ cursor: 30n, rowsProcessed: 30n }); // from the cursor on
    expect(await countersList()).toEqual(KEYS.map(() => 1n));
    const row = await runner.store.get(NAME);
    expect(row?.status).toBe("done");
    expect(row?.rowsProcessed).toBe(100n);
  });

  it("cancel stops the run and keeps it stopped; retry continues from the cursor", async () => {
    const { runner, log, result, atControl } = await sliceWithControlAfterStep2("cancel");

    expect(result.outcomes).toEqual([{ name: NAME, outcome: "lease-lost" }]);
    expect(await rawStateRow(client, NAME)).toEqual(atControl.state);
    expect(atControl.state?.status).toBe("cancelled");
    expect(atControl.state?.ended_at).not.toBeNull();
    expect(await countersList()).toEqual(atControl.data);

    const idle = await runner.runUntilDone();
    expect(idle.reduce((sum, r) => sum + r.steps, 0)).toBe(0);
    expect((await runner.store.get(NAME))?.status).toBe("cancelled");

    expect(await operator.control(NAME, "retry")).toMatchObject({
      status: "ok",
      from: "cancelled",
      to: "running",
    });
    await runner.runUntilDone();
    expect(log.of("step")[2]).toMatchObject({ cursor: 30n, rowsProcessed: 30n });
    expect(await countersList()).toEqual(KEYS.map(() => 1n));
    expect((await runner.store.get(NAME))?.status).toBe("done");
  });

  it("a migration paused or cancelled before it started begins from the start when resumed or retried", async () => {
    const runner = makeRunner(counterMigration({ name: NAME }));
    await runner.init();
    expect(await operator.control(NAME, "pause")).toMatchObject({
      status: "ok",
      from: "pending",
      to: "paused",
    });
    expect(await operator.control(NAME, "resume")).toMatchObject({ status: "ok", to: "pending" });
    expect(await operator.control(NAME, "cancel")).toMatchObject({ status: "ok", to: "cancelled" });
    expect(await operator.control(NAME, "retry")).toMatchObject({ status: "ok", to: "pending" });
    await runner.runUntilDone();
    expect(await countersList()).toEqual(KEYS.map(() => 1n));
  });

  it.each<{ status: string; refused: ControlAction[] }>([
    { status: "pending", refused: ["resume", "retry"] },
    { status: "running", refused: ["resume", "retry"] },
    { status: "paused", refused: ["pause", "retry"] },
    { status: "done", refused: ["pause", "resume", "cancel", "retry"] },
    { status: "failed", refused: ["pause", "resume"] },
    { status: "cancelled", refused: ["pause", "resume", "cancel"] },
  ])("refuses impossible transitions from $status with a conflict", async ({ status, refused }) => {
    await makeRunner(counterMigration({ name: NAME })).init();
    await client.execute({
      sql: "UPDATE _async_migrations SET status = ? WHERE name = ?",
      args: [status, NAME],
    });
    const before = await rawStateRow(client, NAME);
    for (const action of refused) {
      expect(await operator.control(NAME, action)).toEqual({
        status: "conflict",
        name: NAME,
        from: status,
        message: `cannot ${action} a migration that is ${status}`,
      });
    }
    expect(await rawStateRow(client, NAME)).toEqual(before);
  });

  it("answers not-found for an unknown migration", async () => {
    await makeRunner(counterMigration({ name: NAME })).init();
    for (const action of ["pause", "resume", "cancel", "retry"] as const) {
      expect(await operator.control("no_such_migration", action)).toEqual({
        status: "not-found",
        name: "no_such_migration",
      });
    }
  });
});
