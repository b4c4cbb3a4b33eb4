/**
 * Property: on a quiet database, trickle's `tx_last_seen_backfill_v1` equals the seed's one-shot statement for
 * any data shape (gaps, negative and huge ids, orphans, zero and negative timestamps, rows already set) and any
 * batch tuning, and its counts are exact.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  lastSeenById,
  oneShotResult,
  type TxSpec,
  tempDb,
} from "../helpers/db.ts";
import { EventLog, FakeClock } from "../helpers/engine.ts";

const id = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 1n, max: 200n }) }, // dense, with gaps
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }) }, // anywhere, incl. ≤ 0
);
const timestamp = fc.oneof(
  fc.constant(0n),
  fc.bigInt({ min: -50n, max: -1n }),
  fc.bigInt({ min: 1n, max: 2_000_000_000n }),
);
const transmission = fc.record({
  lastSeen: fc.oneof(
    { weight: 3, arbitrary: fc.constant(0n) },
    { weight: 1, arbitrary: fc.bigInt({ min: 1n, max: 99n }) },
  ),
  timestamps: fc.array(timestamp, { maxLength: 4 }),
});
const database = fc
  .uniqueArray(fc.tuple(id, transmission), { maxLength: 60, selector: ([k]) => k })
  .map((rows): TxSpec[] => rows.map(([k, tx]) => ({ id: k, ...tx })));
const tuning = fc
  .tuple(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 50 }))
  .map(([a, b]) => ({ initialBatch: Math.min(a, b), maxBatch: Math.max(a, b) }));

describe("tx_last_seen_backfill_v1 against the one-shot oracle", () => {
  it("matches the one-shot statement with exact counts for random databases and tunings", async () => {
    await fc.assert(
      fc.asyncProperty(database, tuning, async (txs, batch) => {
        const db = tempDb();
        try {
          const client = db.open();
          await createCoreScopeSchema(client);
          await insertCoreScopeRows(client, txs);
          const oracle = await oneShotResult(client, db);
          const candidates = BigInt(txs.filter((t) => t.lastSeen === 0n).length);
          const log = new EventLog();
          const runner = new Runner({
            client,
            migrations: [txLastSeenBackfillV1],
            tuning: { ...batch, yieldMs: 0 },
            clock: new FakeClock(),
            onEvent: log.listener,
          });

          await runner.runUntilDone();

          expect(await lastSeenById(client)).toEqual(oracle);
          const row = await runner.store.get(txLastSeenBackfillV1.name);
          expect(row?.status).toBe("done");
          expect(row?.rowsTotal).toBe(candidates);
          expect(row?.rowsProcessed).toBe(candidates);
          for (const step of log.of("step")) expect(step.batchSize).toBeLessThanOrEqual(batch.maxBatch);
          expect(log.of("step")[0]?.batchSize ?? batch.initialBatch).toBe(batch.initialBatch);
        } finally {
          db.cleanup();
        }
      }),
      { numRuns: 35 },
    );
  });
});
