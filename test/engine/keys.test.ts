/**
 * Invariant 8 (integers): keys near ±2^63 and sparse keyspaces are walked exactly — every row once, the cursor
 * and frozen bounds exact — for both definition forms (`set` and a custom `step`).
 */
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import type { MigrationDefinition } from "../../src/migrations/define.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import { countersById, createCounterTable, EventLog, FakeClock, rawStateRow } from "../helpers/engine.ts";

const KEYS = [
  -9223372036854775808n,
  -5n,
  1n,
  2n,
  2n ** 53n, // 2^53 and 2^53 + 1 are one JS number apart only as bigints
  2n ** 53n + 1n,
  2n ** 62n,
  9223372036854775806n,
  9223372036854775807n,
];
/** Rows that are not candidates (`done = 1` already) and must not be touched. */
const NOT_CANDIDATES = [2n, 2n ** 62n];
const CANDIDATES = KEYS.filter((k) => !NOT_CANDIDATES.includes(k));

let db: TempDb;
afterEach(() => db?.cleanup());

async function setup(): Promise<Client> {
  db = tempDb();
  const client = db.open();
  await createCounterTable(client, KEYS, "t", { doneKeys: NOT_CANDIDATES });
  return client;
}

const guarded: MigrationDefinition = {
  name: "extreme_keys_v1",
  description: "n = n + 1 once per candidate row",
  table: "t",
  key: "id",
  filter: "done = 0",
  set: "n = n + 1, done = 1",
};

describe("keys near 2^63 and sparse keyspaces", () => {
  it.each([1, 2, 3, 100])("visits every candidate exactly once with batch size %i", async (batch) => {
    const client = await setup();
    const log = new EventLog();
    const runner = new Runner({
      client,
      migrations: [guarded],
      tuning: { initialBatch: batch, maxBatch: batch, yieldMs: 0 },
      clock: new FakeClock(),
      onEvent: log.listener,
    });

    await runner.runUntilDone();

    const counters = await countersById(client);
    for (const k of KEYS) expect(counters.get(String(k))).toBe(NOT_CANDIDATES.includes(k) ? 0n : 1n);
    const started = log.of("run-started")[0];
    expect(started?.minKey).toBe(-9223372036854775808n);
    expect(started?.maxKey).toBe(9223372036854775807n);
    expect(started?.rowsTotal).toBe(BigInt(CANDIDATES.length));

    // The cursor lands exactly on keys of the table, strictly increasing, ending on the frozen maximum.
    const cursors = log.of("step").map((s) => s.cursor);
    for (const c of cursors) expect(KEYS).toContain(c);
    for (let i = 1; i < cursors.length; i++) expect(cursors[i]! > cursors[i - 1]!).toBe(true);
    expect(cursors.at(-1)).toBe(9223372036854775807n);
    if (batch === 1) expect(cursors).toEqual(KEYS); // one key per step: the sequence is the keyspace

    const row = await rawStateRow(client, guarded.name);
    expect(row?.status).toBe("done");
    expect(row?.cursor).toBe("9223372036854775807");
    expect(row?.max_key).toBe("9223372036854775807");
    expect(row?.min_key).toBe("-9223372036854775808");
    expect(row?.rows_processed).toBe(String(CANDIDATES.length));
    expect(row?.rows_total).toBe(String(CANDIDATES.length));
  });

  it("runs a custom step that writes another table exactly once per candidate", async () => {
    const client = await setup();
    await client.execute("CREATE TABLE copied (src INTEGER NOT NULL, n INTEGER NOT NULL)");
    const custom: MigrationDefinition = {
      name: "copy_extreme_keys_v1",
      description: "copy candidate keys into another table, then mark them",
      table: "t",
      key: "id",
      filter: "done = 0",
      requires: ["t", "copied"],
      step: (range) => [
        {
          sql: `INSERT INTO copied (src, n) SELECT id, n FROM t WHERE ${range.candidates} ORDER BY id`,
          args: { ...range.args },
        },
        { sql: `UPDATE t SET done = 1 WHERE ${range.candidates}`, args: { ...range.args } },
      ],
      tuning: { initialBatch: 2, maxBatch: 2 },
    };
    const log = new EventLog();
    const runner = new Runner({
      client,
      migrations: [custom],
      tuning: { yieldMs: 0 },
      clock: new FakeClock(),
      onEvent: log.listener,
    });

    await runner.runUntilDone();

    // In insertion order: the steps walked the keys in ascending order, each once.
    const copied = await client.execute("SELECT CAST(src AS TEXT) AS src FROM copied ORDER BY rowid");
    expect(copied.rows.map((r) => BigInt(String(r.src)))).toEqual(CANDIDATES);
    for (const step of log.of("step")) expect(step.rows).toBeLessThanOrEqual(2n);
    const row = await rawStateRow(client, custom.name);
    expect(row?.status).toBe("done");
    expect(row?.cursor).toBe("9223372036854775807");
    expect(row?.rows_processed).toBe(String(CANDIDATES.length));
    expect(row?.rows_total).toBe(String(CANDIDATES.length));
    expect(log.of("step").reduce((sum, s) => sum + s.rows, 0n)).toBe(BigInt(CANDIDATES.length));
  });
});
