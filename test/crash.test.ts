/**
 * Invariant 4 (crash safety) with real processes: a runner is SIGKILLed at random moments — during start-up,
 * while creating its prerequisite index, inside a step's transaction, between steps — and restarted, many
 * times. After every kill the database must show a consistent prefix: the cursor never went backwards, every
 * step the runner reported as committed is there, rows up to the cursor are done, rows after it are untouched,
 * and `rows_processed` counts exactly the candidates up to the cursor. The run then finishes with the result
 * of the seed's one-shot statement.
 */
import type { Client } from "@libsql/client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type MigrationRow, StateStore } from "../src/engine/state-store.ts";
import { txLastSeenBackfillV1 } from "../src/migrations/builtin/tx-last-seen-backfill.ts";
import {
  counterHistogram,
  createCounters,
  killAllChildren,
  type RunnerChildConfig,
  sleep,
  spawnRunner,
  stepProgress,
  testCounterAllV1,
} from "./fixtures/multiprocess.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  lastSeenById,
  oneShotResult,
  prng,
  sparseTransmissions,
  type TempDb,
  tempDb,
} from "./helpers/db.ts";

let db: TempDb;

beforeEach(() => {
  db = tempDb();
});

afterEach(async () => {
  await killAllChildren();
  db.cleanup();
});

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

/** The most steps a child may take in one round before it stops itself and waits for its kill. */
const MAX_STEPS_PER_ROUND = 8;

interface Kill {
  readonly round: number;
  /** When the kill was aimed: a delay after start-up, or a delay after the n-th reported step. */
  readonly plan: string;
  readonly cursor: bigint | null;
  readonly rowsProcessed: bigint;
}

/**
 * Starts `config` and SIGKILLs it at a random moment, `rounds` times, calling `check` after each kill with
 * the row as the next process would find it. Returns what each kill left behind.
 */
async function killRepeatedly(
  client: Client,
  name: string,
  config: RunnerChildConfig,
  rounds: number,
  check: (row: MigrationRow) => Promise<void>,
): Promise<Kill[]> {
  const store = new StateStore(client);
  const kills: Kill[] = [];
  let previous: bigint | null = null;
  for (let round = 0; round < rounds; round++) {
    // Where the kill is aimed, and how far the child may run at most if this process lags behind (it then
    // stops itself after that many steps and is killed there): a round never covers more than a few steps.
    const startUp = Math.random() < 0.5;
    const steps = randomInt(1, 4);
    const child = spawnRunner(`runner-${round}`, {
      ...config,
      owner: `runner-${round}`,
      stopAfterSteps: startUp ? MAX_STEPS_PER_ROUND : Math.min(steps + 3, MAX_STEPS_PER_ROUND),
    });
    let plan: string;
    if (startUp) {
      const delay = randomInt(20, 300);
      plan = `${delay} ms after start-up`;
      await child.waitForLine((l) => l.type === "ready", 20_000);
      await sleep(delay);
    } else {
      const delay = randomInt(0, 25);
      plan = `${delay} ms after step ${steps}`;
      await child.waitForCount("step", steps, 20_000);
      await sleep(delay);
    }
    if (child.exitStatus)
      throw new Error(`round ${round}: the runner finished before the kill (${plan}); make the run longer`);
    const exit = await child.kill();
    expect(exit.signal, child.describe()).toBe("SIGKILL");

    const row = (await store.get(name))!;
    const where = `round ${round}, killed ${plan}: cursor ${row.cursor}, previously ${previous}`;
    // The cursor never goes backwards…
    if (previous !== null) expect(row.cursor, where).not.toBeNull();
    if (previous !== null && row.cursor !== null) expect(row.cursor >= previous, where).toBe(true);
    // …and every step the runner reported was committed before it reported it.
    const lastReported = child.ofType("step").at(-1);
    if (lastReported)
      expect(row.cursor !== null && row.cursor >= stepProgress(lastReported).cursor, where).toBe(true);
    expect(row.status, where).not.toBe("failed");
    await check(row);
    kills.push({ round, plan, cursor: row.cursor, rowsProcessed: row.rowsProcessed });
    previous = row.cursor;
  }
  return kills;
}

/** Runs `config` to the end without interference, in larger steps without pauses (nobody else is waiting). */
async function finish(config: RunnerChildConfig): Promise<void> {
  const tuning = { ...config.tuning, maxBatch: 2_000, yieldMs: 0 };
  const child = spawnRunner("finisher", { ...config, tuning, owner: "finisher" });
  expect(await child.waitForExit(120_000), child.describe()).toEqual({ code: 0, signal: null });
}

describe("SIGKILL at random moments", () => {
  it("tx_last_seen_backfill_v1 on a CoreScope database ends equal to the one-shot statement", async () => {
    const client = db.open();
    await createCoreScopeSchema(client);
    // CoreScope's single-column index: enough for the oracle's lookups, but not the composite index the
    // migration needs, so the runner creates that one and can be killed while doing so.
    await client.execute("CREATE INDEX idx_observations_transmission_id ON observations(transmission_id)");
    const random = prng(1725);
    const txs = sparseTransmissions(random, 12_000);
    const lastId = txs.at(-1)?.id ?? 0n;
    await insertCoreScopeRows(client, txs);
    const original = await lastSeenById(client);
    const oracle = await oneShotResult(client, db);
    expect(oracle).not.toEqual(original);
    const candidateIds = txs.filter((t) => t.lastSeen === 0n).map((t) => t.id);

    const config: RunnerChildConfig = {
      dbPath: db.path,
      migration: txLastSeenBackfillV1.name,
      // A short lease so a restarted runner takes over quickly; small steps so a run spans many kills.
      // 12 rounds of at most 8 steps of 100 keys cannot reach the end of 12,000 keys.
      tuning: { leaseTtlMs: 250, initialBatch: 50, maxBatch: 100, yieldMs: 30, sliceBudgetMs: 1_000 },
      timeoutMs: 100,
    };
    const kills = await killRepeatedly(client, txLastSeenBackfillV1.name, config, 12, async (row) => {
      const cursor = row.cursor ?? -1n;
      // Progress and data committed together: the candidates up to the cursor, no more, no fewer.
      expect(row.rowsProcessed).toBe(BigInt(candidateIds.filter((k) => k <= cursor).length));
      const now = await lastSeenById(client);
      const expected = original.map((entry, i) =>
        BigInt(entry.split(":")[0]!) <= cursor ? oracle[i]! : entry,
      );
      expect(now).toEqual(expected);
    });
    // The kills really landed in the middle of the run.
    expect(kills.filter((k) => k.cursor !== null).length).toBeGreaterThanOrEqual(6);
    expect(kills.at(-1)!.cursor! < lastId).toBe(true);

    await finish(config);
    const row = (await new StateStore(client).get(txLastSeenBackfillV1.name))!;
    expect(row.status).toBe("done");
    expect(row.rowsTotal).toBe(BigInt(candidateIds.length));
    expect(row.rowsProcessed).toBe(row.rowsTotal);
    expect(await lastSeenById(client)).toEqual(oracle);
    const index = await client.execute(
      "SELECT name FROM sqlite_master WHERE name = 'idx_observations_tx_ts'",
    );
    expect(index.rows.length).toBe(1); // the prerequisite, created by one of the killed runners or the last one
  });

  it("a non-idempotent counter migration ends with every row incremented exactly once", async () => {
    // Ten rounds advance at most 8 steps of 100 each (children stop themselves there): the run outlasts them.
    const rows = 16_000;
    const client = db.open();
    await createCounters(client, rows);
    const config: RunnerChildConfig = {
      dbPath: db.path,
      migration: testCounterAllV1.name,
      tuning: { leaseTtlMs: 250, initialBatch: 50, maxBatch: 100, yieldMs: 20, sliceBudgetMs: 1_000 },
      timeoutMs: 100,
    };
    const kills = await killRepeatedly(client, testCounterAllV1.name, config, 10, async (row) => {
      const cursor = row.cursor ?? 0n;
      // Ids are 1..rows and every row is a candidate: rows up to the cursor were incremented once, the rest not yet.
      expect(row.rowsProcessed).toBe(cursor);
      const wrong = await client.execute({
        sql: "SELECT COUNT(*) AS c FROM counters WHERE (id <= ? AND n <> 1) OR (id > ? AND n <> 0)",
        args: [cursor, cursor],
      });
      expect(BigInt(wrong.rows[0]!.c as bigint)).toBe(0n);
    });
    expect(kills.filter((k) => k.cursor !== null).length).toBeGreaterThanOrEqual(5);

    await finish(config);
    expect(await counterHistogram(client)).toEqual({ "1": BigInt(rows) });
    const row = (await new StateStore(client).get(testCounterAllV1.name))!;
    expect(row.status).toBe("done");
    expect(row.rowsProcessed).toBe(BigInt(rows));
  });
});
