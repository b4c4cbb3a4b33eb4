/**
 * Invariant 8 (integers): keys near ±2^63 and sparse keyspaces are walked exactly — every row once, the cursor
 * and frozen bounds exact — for both definition forms (`set` and a custom `step`).
 */
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import type { MigrationDefinition } from "../../src/migrations/define.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  countersById,
  createCounterTable,
  EventLog,
  FakeClock,
  rawStateRow,
  tableExists,
} from "../helpers/engine.ts";

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
    const started = log.of("counted")[0];
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

/**
 * Invariant 11 (a key the engine has proven), end to end through the Runner (issue 11, items 1–5 and 7): a key
 * column that is not the rowid must be an INTEGER column with a full UNIQUE index whose values are all non-NULL
 * integers, a change must not move the key, and the SQL fragments must compile against the live schema. Anything
 * else is refused with a message naming the table, the column and the offending value, and no row changes.
 */
/** Every row of `table` as text, sorted: for "nothing changed" comparisons that also work WITHOUT ROWID. */
async function contents(client: Client, table: string): Promise<string[]> {
  const result = await client.execute(`SELECT * FROM ${table}`);
  return result.rows
    .map((r) => JSON.stringify(Object.values(r), (_k, v) => (typeof v === "bigint" ? `${v}n` : v)))
    .sort();
}

describe("a key the engine has proven", () => {
  async function table(ddl: string[]): Promise<Client> {
    db = tempDb();
    const client = db.open();
    await client.batch(ddl, "write");
    return client;
  }

  function counter(table: string, key = "id", extra: Partial<MigrationDefinition> = {}): MigrationDefinition {
    return {
      name: "proven_v1",
      description: "n = n + 1 on every row",
      table,
      key,
      set: "n = n + 1",
      ...extra,
    } as MigrationDefinition;
  }

  /** init() refuses with `message`; nothing is written, not even trickle's own table. */
  async function expectRefusedAtInit(
    client: Client,
    migration: MigrationDefinition,
    message: RegExp,
    tableName: string,
  ): Promise<void> {
    const before = await contents(client, tableName);
    const runner = new Runner({ client, migrations: [migration], clock: new FakeClock({ maxSleeps: 200 }) });
    await expect(runner.init()).rejects.toThrow(message);
    await expect(runner.runUntilDone()).rejects.toThrow(message);
    expect(await contents(client, tableName)).toEqual(before);
    expect(await tableExists(client, "_async_migrations")).toBe(false);
  }

  const REAL_UNIQUE = "CREATE TABLE r (id INTEGER UNIQUE, n INTEGER NOT NULL DEFAULT 0)";
  const REAL_WITHOUT_ROWID =
    "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID";

  it.each([
    {
      what: "a REAL key at the top of the range",
      ddl: [REAL_UNIQUE, "INSERT INTO r (id) VALUES (1), (2), (3), (3.5)"],
      message: /migration proven_v1: table "r", key "id": value 3\.5 \(real\) is not an integer/,
    },
    {
      what: "a REAL key at the bottom of the range",
      ddl: [REAL_UNIQUE, "INSERT INTO r (id) VALUES (0.5), (1), (2)"],
      message: /table "r", key "id": value 0\.5 \(real\) is not an integer/,
    },
    {
      what: "a REAL key in a WITHOUT ROWID table",
      ddl: [REAL_WITHOUT_ROWID, "INSERT INTO r (id) VALUES (1), (2), (4.5)"],
      message: /table "r", key "id": value 4\.5 \(real\) is not an integer/,
    },
    {
      what: "a TEXT key",
      ddl: [REAL_UNIQUE, "INSERT INTO r (id) VALUES (1), (2), ('abc'), (4)"],
      message: /migration proven_v1: table "r", key "id": value 'abc' \(text\) is not an integer/,
    },
    {
      what: "a BLOB key",
      ddl: [REAL_UNIQUE, "INSERT INTO r (id) VALUES (1), (X'01FF'), (3)"],
      message: /table "r", key "id": value X'01FF' \(blob\) is not an integer/,
    },
    {
      what: "NULL keys in a UNIQUE column",
      ddl: [REAL_UNIQUE, "INSERT INTO r (id) VALUES (1), (NULL), (NULL), (4)"],
      message: /migration proven_v1: table "r", key "id": value NULL is not an integer/,
    },
    {
      what: "a key whose only UNIQUE index is partial",
      ddl: [
        "CREATE TABLE r (id INTEGER NOT NULL, n INTEGER NOT NULL DEFAULT 0)",
        "CREATE UNIQUE INDEX r_id_positive ON r (id) WHERE id > 0",
        "INSERT INTO r (id) VALUES (1), (2), (-1), (-1), (3)",
      ],
      message: /table "r", key "id" must be unique.*the UNIQUE index "r_id_positive" is partial/,
    },
    {
      what: "a key covered only by a UNIQUE index of two columns",
      ddl: [
        "CREATE TABLE r (id INTEGER NOT NULL, v INTEGER, n INTEGER NOT NULL DEFAULT 0)",
        "CREATE UNIQUE INDEX r_id_v ON r (id, v)",
        "INSERT INTO r (id, v) VALUES (1, 1), (1, 2)",
      ],
      message: /table "r", key "id" must be unique/,
    },
  ])("refuses $what before any row changes", async ({ ddl, message }) => {
    const client = await table(ddl);
    await expectRefusedAtInit(client, counter("r"), message, "r");
  });

  it("fails the run, naming the value, when a bad key appears after the runner started", async () => {
    db = tempDb();
    const client = db.open();
    const runner = new Runner({
      client,
      migrations: [counter("r")],
      clock: new FakeClock({ maxSleeps: 200 }),
    });
    await runner.runUntilDone(); // the table does not exist yet: waiting
    expect((await runner.store.get("proven_v1"))?.status).toBe("pending");
    await client.batch([REAL_UNIQUE, "INSERT INTO r (id) VALUES (1), (2), ('x''y')"], "write");
    const before = await contents(client, "r");

    await runner.runUntilDone();

    const row = await runner.store.get("proven_v1");
    expect(row?.status).toBe("failed");
    expect(row?.error).toMatch(/table "r", key "id": value 'x''y' \(text\) is not an integer/);
    expect(row?.rowsProcessed).toBe(0n);
    expect(await contents(client, "r")).toEqual(before);
  });

  it("accepts a full UNIQUE integer key with a partial index beside it, and a WITHOUT ROWID integer key", async () => {
    const client = await table([
      "CREATE TABLE r (id INTEGER NOT NULL, n INTEGER NOT NULL DEFAULT 0)",
      "CREATE UNIQUE INDEX r_id_positive ON r (id) WHERE id > 0",
      "CREATE UNIQUE INDEX r_id ON r (id)",
      "INSERT INTO r (id) VALUES (-3), (1), (2)",
      "CREATE TABLE w (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
      "INSERT INTO w (id) VALUES (5), (6)",
    ]);
    const runner = new Runner({
      client,
      migrations: [counter("r"), { ...counter("w"), name: "proven_w_v1" }],
      clock: new FakeClock({ maxSleeps: 200 }),
    });
    await runner.runUntilDone();
    expect((await runner.store.get("proven_v1"))?.status).toBe("done");
    expect((await runner.store.get("proven_w_v1"))?.status).toBe("done");
    const r = await client.execute("SELECT n FROM r ORDER BY id");
    expect(r.rows.map((x) => x.n)).toEqual([1n, 1n, 1n]);
    const w = await client.execute("SELECT n FROM w ORDER BY id");
    expect(w.rows.map((x) => x.n)).toEqual([1n, 1n]);
  });

  /**
   * A REAL strictly inside the range cannot be found by an index seek; the engine's budgeted key walk is the
   * check that refuses it (issue 11, item 1). Aborted after a bounded number of slices so a regression ends.
   */
  it.each([
    { what: "a rowid table", ddl: REAL_UNIQUE },
    { what: "a WITHOUT ROWID table", ddl: REAL_WITHOUT_ROWID },
  ])("refuses a REAL key in the middle of the range in $what, before any row changes", async ({ ddl }) => {
    const client = await table([ddl, "INSERT INTO r (id) VALUES (1), (2), (2.5), (3), (4)"]);
    const before = await contents(client, "r");
    const runner = new Runner({
      client,
      migrations: [counter("r")],
      tuning: { yieldMs: 0 },
      clock: new FakeClock({ maxSleeps: 200 }),
    });
    const abort = new AbortController();
    let slices = 0;
    await runner
      .runUntilDone({
        signal: abort.signal,
        onSlice: () => {
          if (++slices >= 30) abort.abort();
        },
      })
      .catch((error: unknown) => {
        // Refusing at init is as good as failing the run.
        expect(String(error)).toMatch(/table "r", key "id": value 2\.5 \(real\)/);
      });
    const row = (await tableExists(client, "_async_migrations"))
      ? await runner.store.get("proven_v1")
      : undefined;
    if (row) {
      expect(row.status).toBe("failed");
      expect(row.error).toMatch(/table "r", key "id".*2\.5/);
    }
    expect(await contents(client, "r")).toEqual(before);
  });
});

describe("a change never moves the key, and its fragments compile (invariant 11)", () => {
  async function counterTable(): Promise<Client> {
    db = tempDb();
    const client = db.open();
    await createCounterTable(client, [1n, 2n, 3n, 4n, 5n], "t");
    return client;
  }

  function migration(extra: Partial<MigrationDefinition>): MigrationDefinition {
    return {
      name: "moving_v1",
      description: "n + 1",
      table: "t",
      key: "id",
      set: "n = n + 1",
      ...extra,
    } as MigrationDefinition;
  }

  it.each([
    { set: "id = id + 5", message: /"moving_v1": set assigns "id", which is the key "id"/ },
    { set: 'n = n + 1, "Id" = id + 5', message: /set assigns "id", which is the key "id"/ },
    { set: "(n, id) = (n + 1, id + 5)", message: /set assigns "id", which is the key "id"/ },
  ])("refuses `$set` when the definition is registered", async ({ set, message }) => {
    const client = await counterTable();
    const before = await contents(client, "t");
    expect(() => new Runner({ client, migrations: [migration({ set })] })).toThrow(message);
    expect(await contents(client, "t")).toEqual(before);
    expect(await tableExists(client, "_async_migrations")).toBe(false);
  });

  it.each([
    {
      what: "the rowid, when the key is its INTEGER PRIMARY KEY alias",
      extra: { set: "n = n + 1, rowid = rowid + 5" },
      message:
        /migration moving_v1: set assigns "rowid", which is the rowid of table "t" \(its INTEGER PRIMARY KEY is "id"\) and the key "id"/,
    },
    {
      what: "the INTEGER PRIMARY KEY alias, when the key is the rowid",
      extra: { key: "rowid", set: "id = id + 5" },
      message: /migration moving_v1: set assigns "id", which is the rowid of table "t".*and the key "rowid"/,
    },
    {
      what: "a filter naming an unknown column",
      extra: { filter: "no_such_column = 0" },
      message:
        /migration moving_v1: filter does not compile against table "t": .*no such column: no_such_column/,
    },
    {
      what: "a verify with a syntax error",
      extra: { filter: "done = 0", verify: "done = = 0" },
      message: /migration moving_v1: verify does not compile against table "t": .*syntax error/,
    },
    {
      what: "a set naming an unknown column",
      extra: { set: "n = no_such_column + 1" },
      message:
        /migration moving_v1: set does not compile against table "t": .*no such column: no_such_column/,
    },
    {
      what: "a set naming an unknown function",
      extra: { set: "n = no_such_function(n)" },
      message: /migration moving_v1: set does not compile .*no such function: no_such_function/,
    },
  ])(
    "refuses a set or fragment that writes $what at init, before any row changes",
    async ({ extra, message }) => {
      const client = await counterTable();
      const before = await contents(client, "t");
      const runner = new Runner({ client, migrations: [migration(extra)], clock: new FakeClock() });
      await expect(runner.init()).rejects.toThrow(message);
      await expect(runner.runUntilDone()).rejects.toThrow(message);
      expect(await contents(client, "t")).toEqual(before);
      expect(await tableExists(client, "_async_migrations")).toBe(false);
    },
  );

  it("refuses every escape from issue 11 (item 5) when the definition is registered, changing nothing", async () => {
    const client = await counterTable();
    await client.execute("CREATE TABLE other (x INTEGER)");
    await client.execute("INSERT INTO other VALUES (1), (2)");
    const before = [await contents(client, "t"), await contents(client, "other")];
    const attacks: [Partial<MigrationDefinition>, RegExp][] = [
      [{ set: "n = n + 1, done = 1 -- once" }, /set must not contain a comment/],
      [{ filter: "done = 0) OR (id > 0" }, /filter: "\)" at offset 8 closes a parenthesis/],
      [{ set: "n = 1; DELETE FROM other" }, /set must be a single SQL expression \(no ";"/],
      [{ set: "n = 1 WHERE 1 OR" }, /set: the keyword WHERE/],
      [{ set: "n = 1 FROM other" }, /set: the keyword FROM/],
      [{ verify: "0) OR (1" }, /verify: "\)" at offset 1 closes/],
    ];
    for (const [extra, message] of attacks) {
      expect(() => new Runner({ client, migrations: [migration(extra)] })).toThrow(message);
    }
    expect([await contents(client, "t"), await contents(client, "other")]).toEqual(before);
    expect(await tableExists(client, "_async_migrations")).toBe(false);
  });

  it("still runs fragments holding --, ; and parentheses inside strings, once per row", async () => {
    const client = await counterTable();
    await client.execute("ALTER TABLE t ADD COLUMN note TEXT NOT NULL DEFAULT ''");
    const runner = new Runner({
      client,
      migrations: [
        migration({
          filter: "done = 0 AND note <> 'x -- ; )'",
          set: "n = n + 1, done = 1, note = 'a -- b; c) (d'",
          tuning: { initialBatch: 2, maxBatch: 2 },
        }),
      ],
      tuning: { yieldMs: 0 },
      clock: new FakeClock({ maxSleeps: 200 }),
    });
    await runner.runUntilDone();
    expect((await runner.store.get("moving_v1"))?.status).toBe("done");
    const rows = await client.execute("SELECT n, note FROM t ORDER BY id");
    expect(rows.rows.map((r) => [r.n, r.note])).toEqual(Array(5).fill([1n, "a -- b; c) (d"]));
  });
});
