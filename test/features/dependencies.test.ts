/**
 * Dependencies and fair sharing: a migration that depends on others starts only once they are `done` (the reason
 * names them), unknown names and cycles are start-up errors, a chain blocked by a failed dependency ends
 * `runUntilDone` instead of spinning; and runnable migrations share one slice so that neither starves the other.
 */
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { Runner } from "../../src/engine/runner.ts";
import type { MigrationDefinition } from "../../src/migrations/define.ts";
import { createService } from "../../src/service.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  createCounterTable,
  EventLog,
  FakeClock,
  rawStateRow,
  recordingClient,
  sqlOf,
} from "../helpers/engine.ts";

let db: TempDb | undefined;
afterEach(() => {
  db?.cleanup();
  db = undefined;
});

const KEYS = Array.from({ length: 200 }, (_, i) => BigInt(i + 1));
const TUNING = { initialBatch: 20, maxBatch: 20, yieldMs: 1 };

function migration(name: string, table: string, dependsOn?: string[]): MigrationDefinition {
  return {
    ...counterMigration({ name, table, filter: "done = 0", set: "n = n + 1, done = 1" }),
    ...(dependsOn ? { dependsOn } : {}),
  };
}

async function setup(tables: string[]): Promise<Client> {
  db = tempDb();
  const client = db.open();
  for (const table of tables) await createCounterTable(client, KEYS, table);
  return client;
}

describe("validation at start-up", () => {
  it("rejects unknown names, cycles and self-dependencies, naming them", async () => {
    const client = await setup([]);
    const make = (migrations: MigrationDefinition[]) => () => new Runner({ client, migrations });
    expect(make([migration("b_v1", "b", ["a_v1"])])).toThrow(
      /migration "b_v1": dependsOn names "a_v1", which is not registered/,
    );
    expect(
      make([
        migration("a_v1", "a", ["c_v1"]),
        migration("b_v1", "b", ["a_v1"]),
        migration("c_v1", "c", ["b_v1"]),
      ]),
    ).toThrow(/cycle: a_v1 → c_v1 → b_v1 → a_v1/);
    expect(make([migration("a_v1", "a", ["a_v1"])])).toThrow(/cannot depend on itself/);
    expect(make([migration("a_v1", "a", ["Not A Name"])])).toThrow(/dependsOn\[0\] must be a migration name/);
    // The service refuses to start with them, too.
    const config = { ...loadConfig({}, []), migrations: [migration("b_v1", "b", ["a_v1"])] };
    expect(() => createService({ client, config, log: () => {} })).toThrow(/not registered/);
  });
});

describe("ordering", () => {
  it("starts a dependent migration only after its dependency is done, with the reason visible meanwhile", async () => {
    const client = await setup(["a", "b"]);
    const log = new EventLog();
    // b first in registration order, and its table is the same size: only the dependency orders them.
    const runner = new Runner({
      client,
      migrations: [migration("b_v1", "b", ["a_v1"]), migration("a_v1", "a")],
      tuning: TUNING,
      clock: new FakeClock(),
      onEvent: log.listener,
    });
    const first = await runner.runSlice(3); // a few steps of a
    expect(first.outcomes.find((o) => o.name === "b_v1")?.outcome).toBe("blocked");
    expect(first.moreWork).toBe(true);
    const waiting = await rawStateRow(client, "b_v1");
    expect(waiting).toMatchObject({ status: "pending", reason: "waiting: depends on a_v1 (running)" });
    expect(runner.state().find((s) => s.name === "b_v1")?.reason).toBe("waiting: depends on a_v1 (running)");

    await runner.runUntilDone();
    const order = log.events
      .filter((e) => e.type === "run-started" || e.type === "done")
      .map((e) => `${e.type}:${e.name}`);
    expect(order).toEqual(["run-started:a_v1", "done:a_v1", "run-started:b_v1", "done:b_v1"]);
    expect(await rawStateRow(client, "b_v1")).toMatchObject({
      status: "done",
      rows_processed: "200",
      reason: null,
    });
  });

  it("ends runUntilDone when a dependency failed, leaving the chain pending with the reason", async () => {
    const client = await setup(["a", "b", "c"]);
    await client.execute("CREATE TABLE aux (x INTEGER)");
    const failing = counterMigration({ name: "a_v1", table: "a", set: "n = (SELECT x FROM aux)" });
    const runner = new Runner({
      client,
      migrations: [failing, migration("b_v1", "b", ["a_v1"]), migration("c_v1", "c", ["b_v1"])],
      tuning: TUNING,
      clock: new FakeClock({ maxSleeps: 200 }),
    });
    await runner.init();
    await client.execute("DROP TABLE aux"); // a_v1's change no longer compiles when its run starts
    const results = await runner.runUntilDone();
    expect(results.at(-1)?.moreWork).toBe(false);
    expect((await rawStateRow(client, "a_v1"))?.status).toBe("failed");
    expect(await rawStateRow(client, "b_v1")).toMatchObject({
      status: "pending",
      reason: "waiting: depends on a_v1 (failed)",
    });
    expect(await rawStateRow(client, "c_v1")).toMatchObject({
      status: "pending",
      reason: "waiting: depends on b_v1 (pending)",
    });
  });
});

describe("fair share of a slice", () => {
  it("gives two runnable migrations on different tables each a share of one slice", async () => {
    const client = await setup(["a", "b"]);
    const clock = new FakeClock();
    // Every step costs 10 ms of (fake) time, as if the database were slow.
    const recording = recordingClient(client, {
      beforeBatch: (statements) => {
        if (statements.some((s) => sqlOf(s).startsWith("INSERT INTO _async_migrations_fence")))
          clock.advance(10);
      },
    });
    const log = new EventLog();
    const runner = new Runner({
      client: recording.client,
      migrations: [migration("a_v1", "a"), migration("b_v1", "b")],
      tuning: { initialBatch: 5, maxBatch: 5, yieldMs: 0, stepTargetMs: 10 },
      clock,
      onEvent: log.listener,
    });

    const slice = await runner.runSlice(200);

    const steps = log.of("step");
    const a = steps.filter((e) => e.name === "a_v1").length;
    const b = steps.filter((e) => e.name === "b_v1").length;
    expect(slice.outcomes.map((o) => o.outcome)).toEqual(["budget", "budget"]);
    // Neither takes the whole slice: each gets about half (the first steps of a run include its start).
    expect(a).toBeGreaterThanOrEqual(5);
    expect(b).toBeGreaterThanOrEqual(5);
    expect(Math.abs(a - b)).toBeLessThanOrEqual(3);

    // When one finishes early, the other gets the rest of the slice (a second round).
    await runner.runUntilDone({ budgetMs: 200 });
    expect((await rawStateRow(client, "a_v1"))?.status).toBe("done");
    expect((await rawStateRow(client, "b_v1"))?.status).toBe("done");
  });

  it("a migration with expensive steps cannot starve a cheap one", async () => {
    const client = await setup(["a", "b"]);
    const clock = new FakeClock();
    const recording = recordingClient(client, {
      beforeBatch: (statements) => {
        const sql = statements.map(sqlOf).join("\n");
        if (!sql.startsWith("INSERT INTO _async_migrations_fence")) return;
        clock.advance(sql.includes('UPDATE "a"') ? 90 : 5); // a's steps are 18× as expensive
      },
    });
    const log = new EventLog();
    const runner = new Runner({
      client: recording.client,
      // b's steps cover one key each, so it still has work after three slices.
      migrations: [
        migration("a_v1", "a"),
        { ...migration("b_v1", "b"), tuning: { initialBatch: 1, maxBatch: 1 } },
      ],
      tuning: { initialBatch: 5, maxBatch: 5, yieldMs: 0, stepTargetMs: 90 },
      clock,
      onEvent: log.listener,
    });
    for (let slice = 0; slice < 3; slice++) {
      const before = log.of("step").length;
      await runner.runSlice(400);
      const steps = log.of("step").slice(before);
      const a = steps.filter((e) => e.name === "a_v1").length;
      const b = steps.filter((e) => e.name === "b_v1").length;
      // In every slice both move, and the cheap one gets its share of the time, so more steps.
      expect(a, `slice ${slice}`).toBeGreaterThan(0);
      expect(b, `slice ${slice}`).toBeGreaterThan(a);
    }
  });
});
