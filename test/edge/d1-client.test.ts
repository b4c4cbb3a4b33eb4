/**
 * The D1 adapter (src/worker/d1-client.ts, src/worker/d1-args.ts) against D1's real implementation: Miniflare's
 * local D1 in workerd, driven from Node through the binding itself (test/edge/helpers/miniflare.ts).
 * - libSQL's arguments arrive as written: named and positional parameters at SQLite's own indexes, nothing
 *   inside strings, identifiers or comments taken for one, `bigint`s stored as exact INTEGERs over the whole
 *   64-bit range, booleans as integers, numbers as REALs (as Hrana sends them), bytes as blobs;
 * - results have libSQL's shape; errors keep D1's message and gain SQLite's codes; a failed batch changes
 *   nothing; the fence trigger's abort still reads as a lost lease;
 * - the engine itself runs on it: a non-idempotent migration over keys up to 2^63 - 1 applies every row once
 *   with an exact count (invariants 1, 3 and 8), and the dry-run route answers 409, not 500.
 */
import type { Client } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { classifyError, UnsupportedOperationError } from "../../src/engine/errors.ts";
import { Runner } from "../../src/engine/runner.ts";
import { fence } from "../../src/engine/state/statements.ts";
import { createService } from "../../src/service.ts";
import { D1_MAX_BOUND_PARAMETERS } from "../../src/worker/d1-args.ts";
import { D1_PROTOCOL, D1QueryError, openD1Client } from "../../src/worker/d1-client.ts";
import {
  caught,
  counterMigration,
  countersById,
  createCounterTable,
  rawStateRow,
} from "../helpers/engine.ts";
import { type LocalD1, localD1 } from "./helpers/miniflare.ts";

let local: LocalD1;
let client: Client;

beforeAll(async () => {
  local = await localD1();
  client = openD1Client({ DB: local.db }, "DB");
}, 120_000);
afterAll(async () => {
  await local?.dispose();
});

describe("arguments", () => {
  it("binds named arguments with or without their prefix, and positional ones at SQLite's indexes", async () => {
    const named = await client.execute({
      sql: "SELECT :a AS a, @b AS b, $c AS c, :a || 'x' AS again",
      args: { ":a": "A", b: "B", $c: "C" },
    });
    expect(named.rows[0]).toMatchObject({ a: "A", b: "B", c: "C", again: "Ax" });
    // `?2` then `?1`, then a bare `?` is number 3 (one more than the largest so far), as in SQLite.
    const positional = await client.execute({
      sql: "SELECT ?2 AS two, ?1 AS one, ? AS three, ?2 AS two_again",
      args: ["one", "two", "three"],
    });
    expect(positional.rows[0]).toMatchObject({ two: "two", one: "one", three: "three", two_again: "two" });
    // Named parameters with an array: by index, in order of first appearance.
    const mixed = await client.execute({ sql: "SELECT :x AS x, :y AS y, :x AS x2", args: ["X", "Y"] });
    expect(mixed.rows[0]).toMatchObject({ x: "X", y: "Y", x2: "X" });
  });

  it("takes nothing inside strings, quoted identifiers or comments for a parameter", async () => {
    await client.execute('CREATE TABLE "odd:name" ("a$b" INTEGER, "c?d" TEXT)');
    await client.execute({
      sql: `INSERT INTO "odd:name" ("a$b", "c?d") -- a comment with :no and ?
            VALUES (:v, 'it''s :not ? a $param') /* nor :this */`,
      args: { v: 7n },
    });
    const r = await client.execute('SELECT a$b AS ab, [c?d] AS cd, `a$b` AS ab2 FROM "odd:name"');
    expect(r.rows[0]).toMatchObject({ ab: 7, cd: "it's :not ? a $param", ab2: 7 });
  });

  it("stores bigints as exact INTEGERs over the whole 64-bit range; booleans as integers, numbers as REALs", async () => {
    const extremes = [-(2n ** 63n), -5n, 0n, 2n ** 53n + 1n, 2n ** 63n - 1n];
    for (const k of extremes) {
      const r = await client.execute({
        sql: "SELECT CAST(? AS TEXT) AS k, typeof(?) AS t, ? - 1 AS minus",
        args: [k, k, 5n],
      });
      expect(r.rows[0]).toMatchObject({ k: String(k), t: "integer", minus: 4 });
    }
    const kinds = await client.execute({
      sql: "SELECT typeof(:yes) AS tb, :yes AS yes, :no AS no, typeof(:n) AS tn, typeof(:s) AS ts, typeof(:nil) AS tnil",
      args: { yes: true, no: false, n: 2, s: "text", nil: null },
    });
    expect(kinds.rows[0]).toMatchObject({
      tb: "integer",
      yes: 1,
      no: 0,
      tn: "real",
      ts: "text",
      tnil: "null",
    });
  });

  it("round-trips blobs and binds a Date as its epoch milliseconds", async () => {
    const r = await client.execute({
      sql: "SELECT ? AS b, typeof(?) AS t, ? AS d",
      args: [new Uint8Array([1, 2, 255]), new Uint8Array([0]), new Date(1_700_000_000_123)],
    });
    expect(r.rows[0]?.t).toBe("blob");
    expect([...new Uint8Array(r.rows[0]?.b as ArrayBuffer)]).toEqual([1, 2, 255]);
    expect(r.rows[0]?.d).toBe(1_700_000_000_123);
  });

  it(`refuses more than ${D1_MAX_BOUND_PARAMETERS} bound values, naming the limit; inlined integers do not count`, async () => {
    // One row per parameter (a sum of 150 terms would exceed SQLite's expression depth, 150 columns its limit).
    const many = (n: number) =>
      `WITH v(x) AS (VALUES ${Array.from({ length: n }, () => "(?)").join(", ")}) SELECT COUNT(*) AS n, SUM(x) AS s FROM v`;
    const tooMany = await caught(
      client.execute({ sql: many(101), args: Array.from({ length: 101 }, () => 1) }),
    );
    expect((tooMany as Error).message).toMatch(
      /D1 binds at most 100 parameters per statement; this one has 101/,
    );
    expect(classifyError(tooMany).kind).toBe("deterministic");
    const inlined = await client.execute({
      sql: many(150),
      args: Array.from({ length: 150 }, (_, i) => BigInt(i)),
    });
    expect(inlined.rows[0]).toMatchObject({ n: 150, s: (149 * 150) / 2 });
  });
});

describe("results and errors", () => {
  it("gives rows by name and by position, columns, rowsAffected and lastInsertRowid", async () => {
    await client.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT)");
    const inserted = await client.execute({ sql: "INSERT INTO r (v) VALUES (?), (?)", args: ["a", "b"] });
    expect(inserted.rowsAffected).toBe(2);
    expect(inserted.lastInsertRowid).toBe(2n);
    const read = await client.execute("SELECT v, CAST(id AS TEXT) AS id FROM r ORDER BY id");
    expect(read.columns).toEqual(["v", "id"]);
    expect(read.rows.map((row) => [row[0], row[1], row.v, row.id, row.length])).toEqual([
      ["a", "1", "a", "1", 2],
      ["b", "2", "b", "2", 2],
    ]);
    const updated = await client.execute("UPDATE r SET v = v || '!' RETURNING v");
    expect(updated.rowsAffected).toBe(2);
    expect(updated.rows.map((row) => row.v)).toEqual(["a!", "b!"]);
    expect(client.protocol).toBe(D1_PROTOCOL);
  });

  it("a batch is one transaction: a failing statement rolls the whole batch back, with SQLite's codes", async () => {
    await client.execute("CREATE TABLE b (id INTEGER PRIMARY KEY)");
    const error = await caught(
      client.batch(
        [
          { sql: "INSERT INTO b (id) VALUES (?)", args: [1n] },
          "INSERT INTO b (id) VALUES (2)",
          "INSERT INTO b (id) VALUES (1)",
        ],
        "write",
      ),
    );
    expect(error).toBeInstanceOf(D1QueryError);
    expect(error).toMatchObject({ code: "SQLITE_CONSTRAINT", extendedCode: "SQLITE_CONSTRAINT_PRIMARYKEY" });
    expect((error as Error).message).toMatch(/^D1_ERROR: UNIQUE constraint failed: b\.id/);
    expect(classifyError(error)).toMatchObject({ kind: "deterministic", code: "SQLITE_CONSTRAINT" });
    expect((await client.execute("SELECT COUNT(*) AS n FROM b")).rows[0]?.n).toBe(0);
    const syntax = await caught(client.execute("SELEC 1"));
    expect(classifyError(syntax)).toMatchObject({ kind: "deterministic", code: "SQLITE_ERROR" });
    expect(await client.batch([], "write")).toEqual([]);
  });

  it("the fence trigger's abort survives D1's wrapping and reads as a lost lease, changing nothing", async () => {
    await createCounterTable(client, [1n, 2n, 3n], "f");
    const runner = new Runner({
      client,
      migrations: [counterMigration({ name: "d1_fence_v1", table: "f" })],
    });
    await runner.init(); // creates the state table and its fence
    const stale = { name: "d1_fence_v1", owner: "nobody", epoch: 99n, ttlMs: 1000 };
    const error = await caught(client.batch([fence(stale), "UPDATE f SET n = n + 1"], "write"));
    expect((error as Error).message).toMatch(/trickle_lease_lost/);
    expect(classifyError(error).kind).toBe("lease-lost");
    expect([...(await countersById(client, "f")).values()]).toEqual([0n, 0n, 0n]);
  });

  it("refuses an interactive transaction, and a closed client", async () => {
    await expect(client.transaction("write")).rejects.toBeInstanceOf(UnsupportedOperationError);
    const closing = openD1Client({ DB: local.db }, "DB");
    closing.close();
    expect(closing.closed).toBe(true);
    await expect(closing.execute("SELECT 1")).rejects.toMatchObject({ code: "CLIENT_CLOSED" });
  });
});

describe("the engine on D1", () => {
  it("applies a non-idempotent migration once per row over keys up to 2^63 - 1, with an exact count", async () => {
    const keys = [-(2n ** 63n), -1n, 1n, 2n, 2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 2n, 2n ** 63n - 1n];
    const more = Array.from({ length: 60 }, (_, i) => 1000n + BigInt(i) * 7n);
    const all = [...keys, ...more].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    await createCounterTable(client, all, "big");
    // Every call goes from Node to workerd and back (tens of ms): steps are sized for that, not for speed.
    const runner = new Runner({
      client,
      migrations: [counterMigration({ name: "d1_counter_v1", table: "big" })],
      tuning: { initialBatch: 4, maxBatch: 16, stepTargetMs: 1000, yieldMs: 0 },
    });
    await runner.init();
    await runner.runUntilDone({ budgetMs: 2000 });
    const counters = await countersById(client, "big");
    expect([...counters.keys()]).toEqual(all.map(String));
    expect(new Set(counters.values())).toEqual(new Set([1n]));
    const state = await rawStateRow(client, "d1_counter_v1");
    expect(state).toMatchObject({ status: "done", rows_processed: String(all.length) });
    expect(state?.max_key).toBe(String(2n ** 63n - 1n));
    expect(Number(state?.steps)).toBeGreaterThanOrEqual(5);
  });

  it("the dry-run route answers 409 naming what D1 lacks, never a 500", async () => {
    const migration = counterMigration({ name: "d1_dry_v1", table: "dry" });
    await createCounterTable(client, [1n, 2n], "dry");
    const config = loadConfig({ ADMIN_TOKEN: "admin-token-0123456789", TRICKLE_MIGRATIONS: "d1_dry_v1" }, [
      migration,
    ]);
    const service = createService({ client, config, log: () => {} });
    const response = await service.app.request("/api/migrations/d1_dry_v1/dry-run", {
      method: "POST",
      headers: { authorization: "Bearer admin-token-0123456789" },
    });
    expect(response.status).toBe(409);
    const body = (await response.json()) as { detail: string; name: string };
    expect(body.detail).toMatch(/^dry-run: Cloudflare D1 has no interactive transactions/);
    expect(body.name).toBe("d1_dry_v1");
    expect([...(await countersById(client, "dry")).values()]).toEqual([0n, 0n]);
  });
});
