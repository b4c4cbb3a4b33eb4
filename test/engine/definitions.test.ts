/**
 * Static problems in a definition are errors before anything is written; a migration whose tables do not
 * exist yet waits (`pending`, reason shown) instead of failing, and runs once they appear.
 */
import type { Client } from "@libsql/client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { type MigrationDefinition, resolveMigration } from "../../src/migrations/define.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  countersById,
  createCounterTable,
  EventLog,
  FakeClock,
  tableExists,
} from "../helpers/engine.ts";

let db: TempDb;
let client: Client;

beforeEach(async () => {
  db = tempDb();
  client = db.open();
  await createCounterTable(client, [1n, 2n, 3n]);
});
afterEach(() => db.cleanup());

const valid = counterMigration({ name: "valid_v1" });

/** Casts a deliberately malformed definition past the type checker, as JavaScript callers could. */
function raw(definition: Record<string, unknown>): MigrationDefinition {
  return { ...valid, ...definition } as unknown as MigrationDefinition;
}

describe("invalid definitions", () => {
  const cases: { what: string; definition: MigrationDefinition; message: RegExp }[] = [
    { what: "bad table", definition: raw({ table: "t; DROP TABLE t" }), message: /"valid_v1".*table/ },
    { what: "bad key", definition: raw({ key: "id--" }), message: /"valid_v1".*key/ },
    { what: "bad name", definition: raw({ name: "Bad-Name" }), message: /"Bad-Name".*name must match/ },
    { what: "empty name", definition: raw({ name: "" }), message: /name must match/ },
    {
      what: "bad prerequisite index name",
      definition: raw({ prerequisites: [{ kind: "index", name: "i x", table: "t", columns: ["n"] }] }),
      message: /prerequisites\[0\]\.name/,
    },
    {
      what: "bad prerequisite column",
      definition: raw({ prerequisites: [{ kind: "column", table: "t", column: "a b", type: "INTEGER" }] }),
      message: /prerequisites\[0\]\.column/,
    },
    {
      what: "bad prerequisite type",
      definition: raw({ prerequisites: [{ kind: "column", table: "t", column: "x", type: "JSON" }] }),
      message: /prerequisites\[0\]\.type/,
    },
    { what: "bad requires", definition: raw({ requires: ["t", "x y"] }), message: /requires\[1\]/ },
    {
      what: "both set and step",
      definition: raw({ step: () => [] }),
      message: /exactly one of "set".*"step"/,
    },
    { what: "neither set nor step", definition: raw({ set: undefined }), message: /exactly one of "set"/ },
    { what: "filter with ;", definition: raw({ filter: "1; DELETE FROM t" }), message: /filter.*";"/ },
    { what: "verify with ;", definition: raw({ verify: "0; DELETE FROM t" }), message: /verify.*";"/ },
    { what: "empty filter", definition: raw({ filter: "  " }), message: /filter must be a non-empty/ },
    // Invariant 11: fragments that would escape the step's key range (issue 11, item 5).
    {
      what: "set with a comment",
      definition: raw({ set: "n = n + 1, done = 1 -- once" }),
      message: /"valid_v1": set must not contain a comment \("--"/,
    },
    {
      what: "filter closing a parenthesis it did not open",
      definition: raw({ filter: "done = 0) OR (id > 0" }),
      message: /"valid_v1": filter: "\)" at offset 8 closes a parenthesis the fragment did not open/,
    },
    {
      what: "set with a second statement",
      definition: raw({ set: "n = 1; DELETE FROM other" }),
      message: /"valid_v1": set must be a single SQL expression \(no ";"/,
    },
    {
      what: "set with a WHERE of its own",
      definition: raw({ set: "n = 1 WHERE 1 OR" }),
      message: /"valid_v1": set: the keyword WHERE .* outside parentheses/,
    },
    {
      what: "verify with a comment",
      definition: raw({ verify: "done = 0 /* and more */" }),
      message: /"valid_v1": verify must not contain a comment/,
    },
    { what: "set that is no assignment", definition: raw({ set: "n + 1" }), message: /set: assignment 1/ },
    // A change never writes the key (issue 11, item 7).
    {
      what: "set assigning the key",
      definition: raw({ set: "id = id + 5" }),
      message: /"valid_v1": set assigns "id", which is the key "id": a change must never move the key/,
    },
    {
      what: "set assigning the quoted key in a row value",
      definition: raw({ set: '(n, "ID") = (1, 7)' }),
      message: /set assigns "id", which is the key "id"/,
    },
    {
      what: "set assigning another name of the rowid key",
      definition: raw({ key: "rowid", set: "n = 1, oid = oid + 1" }),
      message: /set assigns "oid", which is the key "rowid"/,
    },
    {
      what: "unknown tuning field",
      definition: raw({ tuning: { batchSize: 10 } }),
      message: /tuning.*unknown field "batchSize"/,
    },
    {
      what: "non-integer tuning value",
      definition: raw({ tuning: { initialBatch: 0.5 } }),
      message: /tuning\.initialBatch must be an integer/,
    },
  ];

  it.each(cases)(
    "rejects a $what with a clear message and writes nothing",
    async ({ definition, message }) => {
      expect(() => new Runner({ client, migrations: [definition] })).toThrow(message);
      expect(await tableExists(client, "_async_migrations")).toBe(false);
    },
  );

  it("rejects two migrations with the same name", async () => {
    expect(() => new Runner({ client, migrations: [valid, { ...valid, filter: "n = 0" }] })).toThrow(
      /valid_v1 is registered twice/,
    );
    expect(await tableExists(client, "_async_migrations")).toBe(false);
  });

  it("rejects bad runner tuning naming the knob", () => {
    expect(() => new Runner({ client, migrations: [valid], tuning: { stepTargetMs: -1 } })).toThrow(
      /stepTargetMs/,
    );
    expect(() => new Runner({ client, migrations: [valid], tuning: { minBatch: 10, maxBatch: 5 } })).toThrow(
      /minBatch/,
    );
  });
});

describe("defaults for filter and verify (issue 11, item 6)", () => {
  const base = { name: "defaults_v1", description: "d", table: "t" } as const;

  it("with neither: every row is a candidate and nothing is verified", () => {
    const m = resolveMigration({ ...base, set: "n = n + 1" });
    expect(m.key).toBe("id");
    expect(m.filter).toBe("1");
    expect(m.verify).toBe("0");
  });

  it("with a filter only: the rows still matching it are left to do", () => {
    const m = resolveMigration({ ...base, filter: "done = 0", set: "done = 1" });
    expect(m.filter).toBe("done = 0");
    expect(m.verify).toBe("done = 0");
  });

  it("with a verify only: every row is a candidate, verify as given", () => {
    const m = resolveMigration({ ...base, verify: "done = 0", set: "done = 1" });
    expect(m.filter).toBe("1");
    expect(m.verify).toBe("done = 0");
  });

  it("the same for a custom step", () => {
    const m = resolveMigration({ ...base, step: () => [] });
    expect(m.filter).toBe("1");
    expect(m.verify).toBe("0");
  });

  it("a definition with only `set` changes every row exactly once and ends done", async () => {
    const runner = new Runner({
      client,
      migrations: [{ name: "only_set_v1", description: "n + 1 once", table: "t", set: "n = n + 1" }],
      tuning: { initialBatch: 2, maxBatch: 2, yieldMs: 0 },
      clock: new FakeClock({ maxSleeps: 200 }),
    });
    await runner.runUntilDone();
    const row = await runner.store.get("only_set_v1");
    expect(row?.status).toBe("done");
    expect(row?.error).toBeNull();
    expect(row?.rowsProcessed).toBe(3n);
    expect([...(await countersById(client)).values()]).toEqual([1n, 1n, 1n]);
  });
});

describe("keys checked against the database at init()", () => {
  it.each([
    {
      what: "a TEXT key",
      ddl: "CREATE TABLE k_text (id TEXT PRIMARY KEY, v INTEGER)",
      table: "k_text",
      key: "id",
      message:
        /migration bad_key_v1: table "k_text", key "id": declared type TEXT is not an integer type; the key must be an INTEGER column/,
    },
    {
      what: "a non-unique integer key",
      ddl: "CREATE TABLE k_dup (k INTEGER NOT NULL, v INTEGER)",
      table: "k_dup",
      key: "k",
      message: /migration bad_key_v1: table "k_dup", key "k" must be unique/,
    },
    {
      what: "a key that is part of a composite primary key",
      ddl: "CREATE TABLE k_pair (a INTEGER, b INTEGER, PRIMARY KEY (a, b))",
      table: "k_pair",
      key: "a",
      message: /migration bad_key_v1: table "k_pair", key "a" must be unique/,
    },
    {
      what: "a missing key column",
      ddl: "CREATE TABLE k_none (v INTEGER)",
      table: "k_none",
      key: "id",
      message: /migration bad_key_v1: table "k_none", key "id": no such column/,
    },
    {
      what: "rowid of a WITHOUT ROWID table",
      ddl: "CREATE TABLE k_wr (a INTEGER PRIMARY KEY, v INTEGER) WITHOUT ROWID",
      table: "k_wr",
      key: "rowid",
      message: /migration bad_key_v1: table "k_wr", key "rowid": the table is WITHOUT ROWID/,
    },
  ])(
    "rejects $what, naming the migration and column, before writing",
    async ({ ddl, table, key, message }) => {
      await client.execute(ddl);
      const runner = new Runner({
        client,
        migrations: [valid, { ...counterMigration({ name: "bad_key_v1", table }), key }],
      });
      await expect(runner.init()).rejects.toThrow(message);
      await expect(runner.runSlice()).rejects.toThrow(message);
      expect(await tableExists(client, "_async_migrations")).toBe(false);
    },
  );

  it("accepts a unique integer column that is not the primary key", async () => {
    await client.batch(
      [
        "CREATE TABLE k_uniq (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, n INTEGER NOT NULL DEFAULT 0)",
        "CREATE UNIQUE INDEX k_uniq_seq ON k_uniq (seq)",
        "INSERT INTO k_uniq (id, seq) VALUES ('a', 30), ('b', -2), ('c', 7)",
      ],
      "write",
    );
    const runner = new Runner({
      client,
      migrations: [{ ...counterMigration({ name: "uniq_key_v1", table: "k_uniq" }), key: "seq" }],
      clock: new FakeClock(),
    });
    await runner.runUntilDone();
    const rows = await client.execute("SELECT n FROM k_uniq");
    expect(rows.rows.map((r) => Number(r.n))).toEqual([1, 1, 1]);
  });
});

describe("a migration whose tables do not exist yet", () => {
  it("waits as pending with the reason, then runs once the tables exist", async () => {
    const definition = counterMigration({ name: "later_v1", table: "later" });
    const waiting: MigrationDefinition = { ...definition, requires: ["later", "later_log"] };
    const log = new EventLog();
    const runner = new Runner({
      client,
      migrations: [waiting],
      clock: new FakeClock(),
      onEvent: log.listener,
    });

    const results = await runner.runUntilDone();
    expect(results.at(-1)?.moreWork).toBe(false);
    expect(results.at(-1)?.outcomes).toEqual([{ name: "later_v1", outcome: "waiting" }]);
    const row = await runner.store.get("later_v1");
    expect(row?.status).toBe("pending");
    expect(row?.reason).toMatch(/table later, later_log does not exist/);
    expect(runner.state().find((s) => s.name === "later_v1")?.reason).toMatch(/later, later_log/);
    expect(log.of("waiting").length).toBe(1);

    // Another idle tick: still waiting, and it writes nothing (the reason is already recorded).
    await runner.runUntilDone();
    expect((await runner.store.get("later_v1"))?.lastUpdateAt).toBe(row?.lastUpdateAt);
    expect((await runner.store.get("later_v1"))?.leaseEpoch).toBe(row?.leaseEpoch);

    await createCounterTable(client, [5n, 6n], "later");
    await runner.runUntilDone();
    expect((await runner.store.get("later_v1"))?.reason).toMatch(/later_log/); // one table is still missing
    await client.execute("CREATE TABLE later_log (x INTEGER)");

    const final = await runner.runUntilDone();
    expect(final.some((r) => r.outcomes.some((o) => o.outcome === "done"))).toBe(true);
    const done = await runner.store.get("later_v1");
    expect(done?.status).toBe("done");
    expect(done?.reason).toBeNull();
    expect(done?.rowsProcessed).toBe(2n);
    expect([...(await countersById(client, "later")).values()]).toEqual([1n, 1n]);
  });

  it("fails at start when the key turns out to be bad once its table appears", async () => {
    const runner = new Runner({
      client,
      migrations: [counterMigration({ name: "later_text_v1", table: "later_text" })],
      clock: new FakeClock(),
    });
    await runner.runUntilDone();
    expect((await runner.store.get("later_text_v1"))?.status).toBe("pending");
    await client.execute("CREATE TABLE later_text (id TEXT PRIMARY KEY, n INTEGER)");
    await runner.runUntilDone();
    const row = await runner.store.get("later_text_v1");
    expect(row?.status).toBe("failed");
    expect(row?.error).toMatch(/table "later_text", key "id": declared type TEXT/);
  });
});
