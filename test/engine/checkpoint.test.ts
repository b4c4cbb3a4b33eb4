/**
 * The engine connection during steps (src/engine/step-connection.ts): on a local file, a slice turns the
 * connection's automatic checkpoints off, checkpoints after each step outside its write batch, lowers the log
 * sync to NORMAL in WAL mode (never with a rollback journal), and gives the connection its own settings back —
 * an embedding app sharing the connection must never be left without automatic checkpoints (its WAL would grow
 * without bound once the backfill is done) or with a sync level it did not choose.
 */
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  createCounterTable,
  FakeClock,
  recordingClient,
  sqlOf,
  stepSizeOf,
} from "../helpers/engine.ts";

let db: TempDb;
afterEach(() => db?.cleanup());

async function autocheckpoint(client: Client): Promise<number> {
  return Number((await client.execute("PRAGMA wal_autocheckpoint")).rows[0]?.[0]);
}

async function synchronous(client: Client): Promise<number> {
  return Number((await client.execute("PRAGMA synchronous")).rows[0]?.[0]);
}

async function walFrames(client: Client): Promise<{ log: number; checkpointed: number }> {
  const row = (await client.execute("PRAGMA wal_checkpoint(NOOP)")).rows[0]!;
  return { log: Number(row[1]), checkpointed: Number(row[2]) };
}

/**
 * A counter table of `rows` keys on a fresh file in `journalMode`, set up by `setUp` as the embedding app would,
 * then backfilled in steps of 10 keys; `watch` reads the real connection after every step batch.
 */
async function backfillWatchingSteps(
  journalMode: "WAL" | "DELETE",
  rows: number,
  setUp: string,
  watch: (real: Client) => Promise<number>,
) {
  db = tempDb();
  const real = db.open();
  await real.execute(`PRAGMA journal_mode=${journalMode}`);
  await createCounterTable(
    real,
    Array.from({ length: rows }, (_, i) => BigInt(i + 1)),
  );
  await real.execute(setUp);
  const duringSteps: number[] = [];
  const recording = recordingClient(real, {
    afterBatch: async (statements) => {
      if (stepSizeOf(statements) !== undefined) duringSteps.push(await watch(real));
    },
  });
  const runner = new Runner({
    client: recording.client,
    migrations: [counterMigration()],
    tuning: { initialBatch: 10, maxBatch: 10, yieldMs: 1 },
    clock: new FakeClock(),
  });
  await runner.runUntilDone();
  expect((await runner.store.get("counter_v1"))?.status).toBe("done");
  return { real, runner, recording, duringSteps };
}

describe("WAL checkpoints outside the step (local file)", () => {
  it("checkpoints after every step, not inside it, and restores the connection's own setting", async () => {
    // 321: the embedding app's own choice.
    const { real, runner, recording, duringSteps } = await backfillWatchingSteps(
      "WAL",
      60,
      "PRAGMA wal_autocheckpoint = 321",
      autocheckpoint,
    );
    // While steps ran, the commit did not checkpoint; afterwards the app's setting is back.
    expect(duringSteps.length).toBeGreaterThanOrEqual(6);
    expect(new Set(duringSteps)).toEqual(new Set([0]));
    expect(await autocheckpoint(real)).toBe(321);
    // Every step batch is followed directly by the engine's own checkpoint, which is not part of the batch.
    const calls = recording.calls;
    const steps = calls.flatMap((c, i) => (stepSizeOf(c.statements) !== undefined ? [i] : []));
    for (const i of steps) {
      expect(calls[i]!.statements.map(sqlOf).join("\n")).not.toMatch(/wal_checkpoint/i);
      expect(calls[i + 1]?.method).toBe("execute");
      expect(sqlOf(calls[i + 1]!.statements[0]!)).toBe("PRAGMA wal_checkpoint(PASSIVE)");
    }
    // And it did its job: nothing the steps wrote is left only in the log.
    const frames = await walFrames(real);
    expect(frames.checkpointed).toBe(frames.log);
    // A slice with no step to run (an idle tick) does not touch the setting at all.
    const seen = recording.calls.length;
    await runner.runSlice();
    const idle = recording.calls.slice(seen).flatMap((c) => c.statements.map(sqlOf));
    expect(idle.length).toBeGreaterThan(0);
    expect(idle.filter((s) => /wal_/i.test(s))).toEqual([]);
  });

  it("commits steps without syncing the log in WAL mode, and restores the connection's sync level", async () => {
    // EXTRA (3): the embedding app's own choice.
    const { real, duringSteps } = await backfillWatchingSteps(
      "WAL",
      40,
      "PRAGMA synchronous = EXTRA",
      synchronous,
    );
    expect(duringSteps.length).toBeGreaterThanOrEqual(4);
    expect(new Set(duringSteps)).toEqual(new Set([1])); // NORMAL
    expect(await synchronous(real)).toBe(3);
    // The steps' data and progress are in the file after the checkpoints that followed them.
    const frames = await walFrames(real);
    expect(frames.checkpointed).toBe(frames.log);
    expect(Number((await real.execute("SELECT COUNT(*) FROM t WHERE n = 1")).rows[0]?.[0])).toBe(40);
  });

  it("keeps the sync level with a rollback journal, where NORMAL could corrupt the file on a power loss", async () => {
    const { recording, duringSteps } = await backfillWatchingSteps(
      "DELETE",
      30,
      "PRAGMA synchronous = FULL",
      synchronous,
    );
    expect(duringSteps.length).toBeGreaterThanOrEqual(3);
    expect(new Set(duringSteps)).toEqual(new Set([2])); // FULL
    const sync = recording.calls
      .flatMap((c) => c.statements.map(sqlOf))
      .filter((s) => /synchronous/i.test(s));
    expect(sync.filter((s) => /=/.test(s))).toEqual([]);
  });

  it("leaves a connection whose automatic checkpoints are off alone", async () => {
    db = tempDb();
    const real = db.open();
    await real.execute("PRAGMA journal_mode=WAL");
    await createCounterTable(real, [1n, 2n, 3n]);
    await real.execute("PRAGMA wal_autocheckpoint = 0"); // someone else checkpoints this file
    const recording = recordingClient(real);
    const runner = new Runner({
      client: recording.client,
      migrations: [counterMigration()],
      clock: new FakeClock(),
    });
    await runner.runUntilDone();
    expect((await runner.store.get("counter_v1"))?.status).toBe("done");
    expect(await autocheckpoint(real)).toBe(0);
    // It only read the setting (once per slice); it neither changed it nor checkpointed, nor lowered the log
    // sync (no checkpoint of its own would sync the log).
    const sent = recording.calls.flatMap((c) => c.statements.map(sqlOf));
    expect(sent.filter((s) => /synchronous/i.test(s))).toEqual([]);
    const wal = sent.filter((s) => /wal_/i.test(s));
    expect(wal.length).toBeGreaterThan(0);
    expect(new Set(wal)).toEqual(new Set(["PRAGMA wal_autocheckpoint"]));
  });
});
