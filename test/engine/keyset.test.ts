/**
 * Invariant 2 (keyset cursor): steps cover ascending `(cursor, upper]` ranges, bounded in size, the cursor
 * strictly increases, termination does not depend on rows affected, and rows that stay candidates (orphans,
 * all-zero observations) are passed over once and never rescanned.
 */
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  lastSeenById,
  oneShotResult,
  type TempDb,
  type TxSpec,
  tempDb,
} from "../helpers/db.ts";
import {
  EventLog,
  FakeClock,
  legacyTransmissions,
  rawStateRow,
  recordingClient,
  stepSizeOf,
} from "../helpers/engine.ts";

const NAME = txLastSeenBackfillV1.name;
let db: TempDb;

afterEach(() => db?.cleanup());

async function coreScope(txs: readonly TxSpec[]): Promise<Client> {
  db = tempDb();
  const client = db.open();
  await createCoreScopeSchema(client);
  await insertCoreScopeRows(client, txs);
  return client;
}

describe("the seed PR's chunking test, on trickle", () => {
  it("backfills 12 000 legacy transmissions in bounded steps with progress after every step", async () => {
    const client = await coreScope(legacyTransmissions(12_000));
    const oracle = await oneShotResult(client, db);
    const observer = db.open();
    // After each committed batch, another connection reads the progress the batch committed.
    const committed: bigint[] = [];
    const recording = recordingClient(client, {
      afterBatch: async (statements) => {
        if (stepSizeOf(statements) === undefined) return; // not a step
        const row = await rawStateRow(observer, NAME);
        if (row?.rows_processed != null) committed.push(BigInt(row.rows_processed));
      },
    });
    const log = new EventLog();
    const runner = new Runner({
      client: recording.client,
      migrations: [txLastSeenBackfillV1],
      tuning: { initialBatch: 1000, maxBatch: 1000, yieldMs: 0 },
      clock: new FakeClock(),
      onEvent: log.listener,
    });

    await runner.runUntilDone();

    const steps = log.of("step");
    expect(steps.length).toBeGreaterThanOrEqual(2); // the one-shot UPDATE reports progress exactly once
    for (const step of steps) expect(step.rows).toBeLessThanOrEqual(BigInt(step.batchSize));
    // The progress each step reported is what the database holds, and it grows by that step's rows.
    let previous = 0n;
    for (const step of steps) {
      expect(step.rowsProcessed).toBe(previous + step.rows);
      expect(step.rows).toBeGreaterThan(0n);
      previous = step.rowsProcessed;
    }
    // Read from another connection right after each step's commit: the row moved by exactly that step.
    expect(committed).toEqual(steps.map((s) => s.rowsProcessed));

    expect(await lastSeenById(client)).toEqual(oracle);
    const row = await runner.store.get(NAME);
    expect(row?.status).toBe("done");
    expect(row?.rowsTotal).toBe(12_000n);
    expect(row?.rowsProcessed).toBe(12_000n);
  });
});

describe("rows that stay candidates", () => {
  const BATCH = 50;

  /** Normal rows, orphans (no observations) and rows whose observations all have timestamp 0, interleaved. */
  function mixed(normal: number, orphans: number, zeros: number): TxSpec[] {
    const txs: TxSpec[] = [];
    let id = 1n;
    // Orphans and zero rows come first, where a "WHERE last_seen = 0 LIMIT n" loop would find them every time.
    for (let i = 0; i < orphans; i++) txs.push({ id: id++, lastSeen: 0n, timestamps: [] });
    for (let i = 0; i < zeros; i++) txs.push({ id: id++, lastSeen: 0n, timestamps: [0n, 0n] });
    for (let i = 0; i < normal; i++) txs.push({ id: id++, lastSeen: 0n, timestamps: [5000n + id, 7n] });
    return txs;
  }

  it.each([
    { normal: 60, orphans: 0, zeros: 0 },
    { normal: 60, orphans: 120, zeros: 120 },
    { normal: 0, orphans: 150, zeros: 150 },
  ])(
    "terminates in ceil(keys / batch) steps with $orphans orphans and $zeros all-zero rows",
    async (shape) => {
      const txs = mixed(shape.normal, shape.orphans, shape.zeros);
      const client = await coreScope(txs);
      const oracle = await oneShotResult(client, db);
      const log = new EventLog();
      const runner = new Runner({
        client,
        migrations: [txLastSeenBackfillV1],
        tuning: { initialBatch: BATCH, maxBatch: BATCH, yieldMs: 0 },
        clock: new FakeClock(),
        onEvent: log.listener,
      });

      await runner.runUntilDone();

      const steps = log.of("step");
      expect(steps.length).toBeLessThanOrEqual(Math.ceil(txs.length / BATCH) + 1);
      // Each candidate is counted by exactly one step: nothing was scanned twice.
      expect(steps.reduce((sum, s) => sum + s.rows, 0n)).toBe(BigInt(txs.length));
      for (let i = 1; i < steps.length; i++) expect(steps[i]!.cursor! > steps[i - 1]!.cursor!).toBe(true);
      expect(log.of("sweep")).toEqual([]);
      expect(await lastSeenById(client)).toEqual(oracle);
      const stillZero = await client.execute("SELECT COUNT(*) AS n FROM transmissions WHERE last_seen = 0");
      expect(BigInt(stillZero.rows[0]!.n as bigint)).toBe(BigInt(shape.orphans + shape.zeros));
      const row = await runner.store.get(NAME);
      expect(row?.status).toBe("done");
      expect(row?.rowsProcessed).toBe(BigInt(txs.length));
      expect(row?.rowsTotal).toBe(BigInt(txs.length));

      // Done means done: another run finds nothing to do and writes nothing.
      const again = await runner.runUntilDone();
      expect(again.reduce((sum, r) => sum + r.steps, 0)).toBe(0);
      expect(log.of("step").length).toBe(steps.length);
      expect((await runner.store.get(NAME))?.lastUpdateAt).toBe(row?.lastUpdateAt);
    },
  );
});
