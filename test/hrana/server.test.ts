/**
 * The test-only Hrana server (test/hrana/server.ts) against the real `@libsql/client/web` client over loopback
 * HTTP: what the client sends for execute / batch / transaction / executeMultiple, how many round trips each
 * costs, exact integers, named arguments, errors and their codes, SQLITE_BUSY across streams, batons, idle
 * expiry, auth, and the injected faults a runner must classify as transient.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { type Client, createClient, LibsqlBatchError, LibsqlError } from "@libsql/client/web";
import { afterEach, describe, expect, it } from "vitest";
import { classifyError } from "../../src/engine/errors.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import { type HranaServer, type HranaServerOptions, startHranaServer } from "./server.ts";

let db: TempDb | undefined;
const servers: HranaServer[] = [];
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.close();
  db?.cleanup();
  db = undefined;
});

async function serve(options: Partial<HranaServerOptions> = {}): Promise<HranaServer> {
  db ??= tempDb();
  const server = await startHranaServer({ dbPath: db.path, ...options });
  servers.push(server);
  return server;
}

function connect(server: HranaServer, authToken?: string): Client {
  const client = createClient({ url: server.url, intMode: "bigint", ...(authToken ? { authToken } : {}) });
  clients.push(client);
  return client;
}

/** Runs `fn` and returns how many pipeline requests (HTTP round trips carrying SQL) it cost. */
async function roundTrips(server: HranaServer, fn: () => Promise<unknown>): Promise<number> {
  const before = server.stats.pipelineRequests;
  await fn();
  return server.stats.pipelineRequests - before;
}

/** A raw pipeline request, for protocol details the client never sends. */
async function pipeline(
  server: HranaServer,
  body: unknown,
  path = "/v2/pipeline",
): Promise<{ status: number; type: string | null; json: Record<string, unknown> | undefined; text: string }> {
  const response = await fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const type = response.headers.get("content-type");
  return {
    status: response.status,
    type,
    json: type === "application/json" ? JSON.parse(text) : undefined,
    text,
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the promise to reject");
}

const EDGE_INTEGERS = [
  -(2n ** 63n),
  -(2n ** 63n) + 1n,
  -(2n ** 53n) - 1n,
  -1n,
  0n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 62n,
  2n ** 63n - 2n,
  2n ** 63n - 1n,
];

describe("execute", () => {
  it("runs one statement per HTTP request and closes its stream", async () => {
    const server = await serve();
    const client = connect(server);
    expect(
      await roundTrips(server, () => client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")),
    ).toBe(1);

    const insert = await client.execute({
      sql: "INSERT INTO t (id, name) VALUES (?, ?)",
      args: [7n, "seven"],
    });
    expect(insert.rowsAffected).toBe(1);
    expect(insert.lastInsertRowid).toBe(7n);

    const select = await client.execute("SELECT id, name, 1 + 1 AS two FROM t");
    expect(select.columns).toEqual(["id", "name", "two"]);
    expect(select.columnTypes).toEqual(["INTEGER", "TEXT", ""]);
    expect(select.rows.map((r) => ({ ...r }))).toEqual([{ id: 7n, name: "seven", two: 2n }]);
    expect(select.rowsAffected).toBe(0);

    const update = await client.execute("UPDATE t SET name = 'SEVEN' RETURNING id");
    expect(update.rowsAffected).toBe(1);
    expect(update.rows[0]?.id).toBe(7n);
    expect(server.openStreams()).toBe(0);
  });

  it("round-trips integers at the 64-bit edges exactly, as bound arguments and as stored values", async () => {
    const server = await serve({ record: true });
    const client = connect(server);
    await client.execute("CREATE TABLE ints (k INTEGER PRIMARY KEY, v)");
    for (const n of EDGE_INTEGERS)
      await client.execute({ sql: "INSERT INTO ints (k, v) VALUES (?, ?)", args: [n, n] });

    const rows = await client.execute(
      "SELECT k, v, typeof(v) AS t, CAST(v AS TEXT) AS s FROM ints ORDER BY k",
    );
    expect(rows.rows.map((r) => r.k)).toEqual(EDGE_INTEGERS);
    expect(rows.rows.map((r) => r.v)).toEqual(EDGE_INTEGERS);
    expect(rows.rows.map((r) => r.t)).toEqual(EDGE_INTEGERS.map(() => "integer"));
    expect(rows.rows.map((r) => r.s)).toEqual(EDGE_INTEGERS.map(String));
    // What went over the wire: bigint → Hrana `integer` with a decimal string.
    const sent = JSON.stringify(server.recorded.map((r) => r.body));
    expect(sent).toContain('{"type":"integer","value":"-9223372036854775808"}');
    expect(sent).toContain('{"type":"integer","value":"9223372036854775807"}');
  });

  it("encodes every value type: JS numbers travel as floats, bigints as integers", async () => {
    const server = await serve();
    const client = connect(server);
    const blob = new Uint8Array([0, 1, 2, 250, 255]);
    const result = await client.execute({
      sql: "SELECT ? AS a, typeof(?) AS ta, ? AS b, typeof(?) AS tb, ? AS c, ? AS d, ? AS e, typeof(?) AS te",
      args: [5, 5, 5n, 5n, "héllo ✓", null, blob, blob],
    });
    const row = result.rows[0]!;
    expect(row.a).toBe(5);
    expect(row.ta).toBe("real");
    expect(row.b).toBe(5n);
    expect(row.tb).toBe("integer");
    expect(row.c).toBe("héllo ✓");
    expect(row.d).toBeNull();
    expect(new Uint8Array(row.e as ArrayBuffer)).toEqual(blob);
    expect(row.te).toBe("blob");
  });

  it("binds named arguments with any prefix, and without one", async () => {
    const server = await serve();
    const client = connect(server);
    const prefixed = await client.execute({
      sql: "SELECT :a AS a, @b AS b, $c AS c, :a + 1 AS a1",
      args: { ":a": 2n ** 63n - 2n, "@b": "bee", $c: 1.5 },
    });
    expect({ ...prefixed.rows[0] }).toEqual({ a: 2n ** 63n - 2n, b: "bee", c: 1.5, a1: 2n ** 63n - 1n });
    const bare = await client.execute({ sql: "SELECT :x AS x, :y AS y", args: { x: 1n, y: "why" } });
    expect({ ...bare.rows[0] }).toEqual({ x: 1n, y: "why" });
  });

  it("reports SQLite errors with the base code and the native message", async () => {
    const server = await serve();
    const client = connect(server);
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    await client.execute("INSERT INTO t VALUES (1)");
    const duplicate = await rejection(client.execute("INSERT INTO t VALUES (1)"));
    expect(duplicate).toBeInstanceOf(LibsqlError);
    expect((duplicate as LibsqlError).code).toBe("SQLITE_CONSTRAINT");
    expect((duplicate as LibsqlError).message).toContain("UNIQUE constraint failed: t.id");
    expect(classifyError(duplicate).kind).toBe("deterministic");
    const syntax = await rejection(client.execute("SELEC 1"));
    expect((syntax as LibsqlError).code).toBe("SQLITE_ERROR");
    expect((syntax as LibsqlError).message).toContain('near "SELEC"');
  });
});

describe("batch", () => {
  it.each(["write", "read", "deferred"] as const)(
    "runs a %s batch as one transaction in ONE request",
    async (mode) => {
      const server = await serve({ record: true });
      const client = connect(server);
      await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
      await client.execute("INSERT INTO t VALUES (1, 10), (2, 20)");
      const statements =
        mode === "read"
          ? ["SELECT sum(v) AS s FROM t", { sql: "SELECT v FROM t WHERE id = ?", args: [2n] }]
          : ["UPDATE t SET v = v + 1", { sql: "SELECT sum(v) AS s FROM t WHERE id <= ?", args: [2n] }];
      let results: Awaited<ReturnType<Client["batch"]>> = [];
      expect(
        await roundTrips(server, async () => {
          results = await client.batch(statements, mode);
        }),
      ).toBe(1);
      expect(results).toHaveLength(2);
      if (mode === "read") {
        expect(results[0]?.rows[0]?.s).toBe(30n);
        expect(results[1]?.rows[0]?.v).toBe(20n);
      } else {
        expect(results[0]?.rowsAffected).toBe(2);
        expect(results[1]?.rows[0]?.s).toBe(32n);
      }
      const begin = {
        write: "BEGIN IMMEDIATE",
        read: "BEGIN TRANSACTION READONLY",
        deferred: "BEGIN DEFERRED",
      }[mode];
      expect(JSON.stringify(server.recorded.at(-1)?.body)).toContain(begin);
      expect(server.openStreams()).toBe(0);
    },
  );

  it("rolls the whole batch back when its second statement fails", async () => {
    const server = await serve();
    const client = connect(server);
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    await client.execute("INSERT INTO t VALUES (1, 10)");
    const error = await rejection(
      client.batch(
        ["UPDATE t SET v = 99 WHERE id = 1", "INSERT INTO t VALUES (1, 0)", "INSERT INTO t VALUES (3, 30)"],
        "write",
      ),
    );
    expect(error).toBeInstanceOf(LibsqlBatchError);
    expect((error as LibsqlBatchError).statementIndex).toBe(1);
    expect((error as LibsqlBatchError).code).toBe("SQLITE_CONSTRAINT");
    const rows = await client.execute("SELECT id, v FROM t ORDER BY id");
    expect(rows.rows.map((r) => [r.id, r.v])).toEqual([[1n, 10n]]);
    expect(server.openStreams()).toBe(0);
  });
});

describe("interactive transactions", () => {
  it("keeps BEGIN…COMMIT on the stream's connection across requests; others see it only after commit", async () => {
    const server = await serve();
    const client = connect(server);
    const other = connect(server);
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");

    const tx = await client.transaction("write");
    try {
      await tx.execute("INSERT INTO t VALUES (1, 'tx')");
      const inside = await tx.execute("SELECT count(*) AS n FROM t");
      expect(inside.rows[0]?.n).toBe(1n);
      expect(server.openStreams()).toBe(1);
      const outside = await other.execute("SELECT count(*) AS n FROM t");
      expect(outside.rows[0]?.n).toBe(0n);
      expect(await roundTrips(server, () => tx.commit())).toBe(1);
    } finally {
      tx.close();
    }
    expect(server.openStreams()).toBe(0);
    expect((await other.execute("SELECT count(*) AS n FROM t")).rows[0]?.n).toBe(1n);
  });

  it("rolls back on rollback() and on close() without commit", async () => {
    const server = await serve();
    const client = connect(server);
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    const rolledBack = await client.transaction("write");
    await rolledBack.execute("INSERT INTO t VALUES (1)");
    await rolledBack.rollback();
    const abandoned = await client.transaction("write");
    await abandoned.execute("INSERT INTO t VALUES (2)");
    abandoned.close();
    // close() sends the stream's `close` in the background; the next write waits for the lock it releases.
    await expect.poll(() => server.openStreams()).toBe(0);
    expect((await client.execute("SELECT count(*) AS n FROM t")).rows[0]?.n).toBe(0n);
  });

  it("makes another stream's write batch fail with SQLITE_BUSY while a write transaction is open", async () => {
    const server = await serve({ busyTimeoutMs: 20 });
    const holder = connect(server);
    const writer = connect(server);
    await holder.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    const tx = await holder.transaction("write");
    try {
      await tx.execute("INSERT INTO t VALUES (1)");
      const busy = await rejection(writer.batch(["INSERT INTO t VALUES (2)"], "write"));
      expect(busy).toBeInstanceOf(LibsqlError);
      expect((busy as LibsqlError).code).toBe("SQLITE_BUSY");
      expect(classifyError(busy).kind).toBe("transient");
      await tx.commit();
    } finally {
      tx.close();
    }
    await writer.batch(["INSERT INTO t VALUES (2)"], "write");
    expect((await writer.execute("SELECT count(*) AS n FROM t")).rows[0]?.n).toBe(2n);
  });
});

describe("executeMultiple", () => {
  it("runs a sequence in one request and stops at the first error", async () => {
    const server = await serve();
    const client = connect(server);
    expect(
      await roundTrips(server, () =>
        client.executeMultiple("CREATE TABLE a (x); INSERT INTO a VALUES (1); INSERT INTO a VALUES (2);"),
      ),
    ).toBe(1);
    const error = await rejection(
      client.executeMultiple(
        "INSERT INTO a VALUES (3); INSERT INTO missing VALUES (1); INSERT INTO a VALUES (4);",
      ),
    );
    expect((error as LibsqlError).code).toBe("SQLITE_ERROR");
    const rows = await client.execute("SELECT x FROM a ORDER BY x");
    expect(rows.rows.map((r) => r.x)).toEqual([1n, 2n, 3n]);
  });
});

describe("protocol details", () => {
  it("answers store_sql, sql_id, every batch condition, get_autocommit, describe and close", async () => {
    const server = await serve();
    const opened = await pipeline(server, {
      baton: null,
      requests: [
        { type: "store_sql", sql_id: 1, sql: "CREATE TABLE p (x)" },
        { type: "sequence", sql_id: 1 },
        { type: "get_autocommit" },
        {
          type: "batch",
          batch: {
            steps: [
              { stmt: { sql: "BEGIN" } },
              { stmt: { sql: "INSERT INTO nope VALUES (1)" } },
              { condition: { type: "error", step: 1 }, stmt: { sql: "INSERT INTO p VALUES (1)" } },
              { condition: { type: "ok", step: 1 }, stmt: { sql: "INSERT INTO p VALUES (2)" } },
              {
                condition: {
                  type: "and",
                  conds: [
                    { type: "ok", step: 2 },
                    { type: "not", cond: { type: "is_autocommit" } },
                  ],
                },
                stmt: { sql: "INSERT INTO p VALUES (3)" },
              },
              {
                condition: { type: "or", conds: [{ type: "ok", step: 3 }, { type: "is_autocommit" }] },
                stmt: { sql: "INSERT INTO p VALUES (4)" },
              },
              { stmt: { sql: "SELECT x FROM p ORDER BY x", want_rows: false } },
              { stmt: { sql: "SELECT x FROM p ORDER BY x" } },
            ],
          },
        },
        { type: "get_autocommit" },
        { type: "describe", sql: "SELECT x FROM p WHERE x = ?" },
        { type: "close_sql", sql_id: 1 },
        { type: "sequence", sql_id: 1 },
      ],
    });
    expect(opened.status).toBe(200);
    const body = opened.json!;
    expect(body.baton).toMatch(/^[0-9a-f]+\.[\w-]+$/);
    expect(body.base_url).toBeNull();
    const results = body.results as { type: string; response?: Record<string, unknown>; error?: unknown }[];
    expect(results.map((r) => r.type)).toEqual(["ok", "ok", "ok", "ok", "ok", "ok", "ok", "error"]);
    expect(results[2]?.response).toEqual({ type: "get_autocommit", is_autocommit: true });
    const batch = results[3]?.response?.result as { step_results: unknown[]; step_errors: unknown[] };
    expect(batch.step_results.map((r) => r !== null)).toEqual([
      true,
      false,
      true,
      false,
      true,
      false,
      true,
      true,
    ]);
    expect(batch.step_errors.map((e) => e !== null)).toEqual([
      false,
      true,
      false,
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(batch.step_errors[1]).toEqual({ message: "no such table: nope", code: "SQLITE_ERROR" });
    expect(batch.step_results[6]).toMatchObject({ rows: [] });
    expect(batch.step_results[7]).toMatchObject({
      cols: [{ name: "x", decltype: null }],
      rows: [[{ type: "integer", value: "1" }], [{ type: "integer", value: "3" }]],
    });
    expect(results[4]?.response).toEqual({ type: "get_autocommit", is_autocommit: false });
    expect(results[5]?.response).toMatchObject({
      type: "describe",
      result: { is_readonly: true, is_explain: false },
    });
    expect(results[7]?.error).toMatchObject({ code: "SQL_NOT_FOUND" });
    expect(server.openStreams()).toBe(1);

    // The transaction is still open on that stream: commit it with the baton, then close the stream.
    const closed = await pipeline(
      server,
      { baton: body.baton, requests: [{ type: "execute", stmt: { sql: "COMMIT" } }, { type: "close" }] },
      "/v3/pipeline",
    );
    expect(closed.json?.baton).toBeNull();
    expect((closed.json!.results as { type: string }[]).map((r) => r.type)).toEqual(["ok", "ok"]);
    expect(server.openStreams()).toBe(0);
  });

  it("refuses unknown and reused batons with 400 'Received an invalid baton', and bad bodies with 400", async () => {
    const server = await serve();
    const unknown = await pipeline(server, { baton: "0123.abc", requests: [] });
    expect(unknown).toMatchObject({ status: 400, type: "text/plain", text: "Received an invalid baton" });

    const first = await pipeline(server, { baton: null, requests: [] });
    const baton = first.json?.baton as string;
    const second = await pipeline(server, { baton, requests: [] });
    expect(second.status).toBe(200);
    expect(second.json?.baton).not.toBe(baton); // a new baton after every request
    const reused = await pipeline(server, { baton, requests: [] });
    expect(reused.status).toBe(400);
    await pipeline(server, { baton: second.json?.baton, requests: [{ type: "close" }] });

    const malformed = await pipeline(server, {
      baton: null,
      requests: [{ type: "execute", stmt: { args: [] } }],
    });
    expect(malformed.status).toBe(400);
    expect(malformed.json?.message).toContain("requests[0].stmt");
    const badInteger = await pipeline(server, {
      baton: null,
      requests: [{ type: "execute", stmt: { sql: "SELECT ?", args: [{ type: "integer", value: 5 }] } }],
    });
    expect(badInteger.status).toBe(400);
    expect(badInteger.json?.message).toContain("decimal string");
  });

  it("answers the version probes", async () => {
    const server = await serve();
    expect((await fetch(`${server.url}/v2`)).status).toBe(200);
    expect((await fetch(`${server.url}/v3`)).status).toBe(200);
    expect((await fetch(`${server.url}/v3-protobuf`)).status).toBe(404);
  });

  it("tells the client a restarted server no longer knows its transaction (invalid baton)", async () => {
    const first = await serve();
    const client = connect(first);
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    const tx = await client.transaction("write");
    try {
      await tx.execute("INSERT INTO t VALUES (1)");
      await first.close();
      servers.push(await startHranaServer({ dbPath: db!.path, port: first.port }));
      // Until the pooled keep-alive sockets of the old server are noticed as closed, requests fail at the
      // network level; probe until the new server answers.
      await expect
        .poll(async () => (await fetch(`${first.url}/v2`).catch(() => undefined))?.status, { interval: 20 })
        .toBe(200);
      const error = await rejection(tx.execute("INSERT INTO t VALUES (2)"));
      expect(error).toBeInstanceOf(LibsqlError);
      expect((error as LibsqlError).code).toBe("SERVER_ERROR");
      expect((error as LibsqlError).message).toContain("HTTP status 400: Received an invalid baton");
    } finally {
      tx.close();
    }
  });
});

describe("idle streams", () => {
  it("expire after streamIdleMs: rolled back, lock released, the client told STREAM_EXPIRED", async () => {
    const server = await serve({ streamIdleMs: 150 });
    const client = connect(server);
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    const tx = await client.transaction("write");
    try {
      await tx.execute("INSERT INTO t VALUES (1)");
      await expect.poll(() => server.stats.streamsExpired, { timeout: 5_000, interval: 50 }).toBe(1);
      expect(server.openStreams()).toBe(0);
      const error = await rejection(tx.execute("INSERT INTO t VALUES (2)"));
      expect((error as LibsqlError).code).toBe("STREAM_EXPIRED");
      expect(classifyError(error).kind).toBe("transient");
    } finally {
      tx.close();
    }
    // The expired transaction was rolled back and its write lock released.
    await connect(server).batch(["INSERT INTO t VALUES (3)"], "write");
    expect((await client.execute("SELECT id FROM t")).rows.map((r) => r.id)).toEqual([3n]);
  });
});

describe("auth", () => {
  it("requires the bearer token when one is configured", async () => {
    const server = await serve({ authToken: "s3cret" });
    const anonymous = await rejection(connect(server).execute("SELECT 1"));
    expect((anonymous as LibsqlError).code).toBe("SERVER_ERROR");
    expect((anonymous as LibsqlError).message).toContain("401");
    expect(classifyError(anonymous).kind).toBe("deterministic");
    const wrong = await rejection(connect(server, "wrong").execute("SELECT 1"));
    expect((wrong as LibsqlError).message).toContain("401");
    const ok = await connect(server, "s3cret").execute("SELECT 1 AS one");
    expect(ok.rows[0]?.one).toBe(1n);
    expect(server.stats.byStatus["401"]).toBe(2);
  });
});

describe("fault injection", () => {
  it("a 503 (text or JSON error body) reaches the client as a transient SERVER_ERROR", async () => {
    const server = await serve();
    const client = connect(server);
    server.faults.failNext(1, 503);
    const text = await rejection(client.execute("SELECT 1"));
    expect((text as LibsqlError).code).toBe("SERVER_ERROR");
    expect(classifyError(text).kind).toBe("transient");
    server.faults.failNext(1, 502, { body: "json" });
    const json = await rejection(client.batch(["SELECT 1"], "write"));
    expect((json as LibsqlError).code).toBe("SERVER_ERROR");
    expect(classifyError(json).kind).toBe("transient");
    expect((await client.execute("SELECT 2 AS two")).rows[0]?.two).toBe(2n);
    expect(server.stats.byStatus).toMatchObject({ "503": 1, "502": 1 });
  });

  it("a dropped connection reaches the client as a transient network error", async () => {
    const server = await serve();
    const client = connect(server);
    server.faults.dropNext(1);
    const dropped = await rejection(client.batch(["SELECT 1"], "write"));
    const classified = classifyError(dropped);
    expect(classified.kind).toBe("transient");
    expect(server.stats.byStatus.dropped).toBe(1);
    expect((await client.execute("SELECT 3 AS three")).rows[0]?.three).toBe(3n);
  });

  it("a fault after execution loses the answer but not the commit (the ambiguous case)", async () => {
    const server = await serve();
    const client = connect(server);
    await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    server.faults.dropNext(1, { after: true });
    const dropped = await rejection(client.batch(["INSERT INTO t VALUES (1)"], "write"));
    expect(classifyError(dropped).kind).toBe("transient");
    server.faults.failNext(1, 503, { after: true });
    await rejection(client.batch(["INSERT INTO t VALUES (2)"], "write"));
    expect((await client.execute("SELECT id FROM t ORDER BY id")).rows.map((r) => r.id)).toEqual([1n, 2n]);
  });

  it("applies faults only to requests `match` accepts, and delays requests", async () => {
    const server = await serve();
    const client = connect(server);
    server.faults.match = (body) => JSON.stringify(body).includes("target");
    server.faults.failNext(5, 503);
    server.faults.delayMs = 30;
    expect((await client.execute("SELECT 'other' AS v")).rows[0]?.v).toBe("other");
    await rejection(client.execute("SELECT 'target' AS v"));
    expect(server.faults.fail?.remaining).toBe(4);
    server.faults.clear();
    expect((await client.execute("SELECT 'target' AS v")).rows[0]?.v).toBe("target");
  });
});

describe("start.ts", () => {
  it("serves a file from a child process, prints its URL, and stops on SIGTERM", async () => {
    db = tempDb();
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "test/hrana/start.ts", "--db", db.path, "--idle-ms", "5000"],
      { env: { ...process.env, HRANA_AUTH_TOKEN: "child-token" }, stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      const lines = createInterface({ input: child.stdout! });
      const [url] = (await once(lines, "line")) as [string];
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const client = createClient({ url, authToken: "child-token", intMode: "bigint" });
      clients.push(client);
      await client.batch(
        ["CREATE TABLE c (x)", { sql: "INSERT INTO c VALUES (?)", args: [2n ** 63n - 1n] }],
        "write",
      );
      expect((await client.execute("SELECT x FROM c")).rows[0]?.x).toBe(2n ** 63n - 1n);
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      expect((await exited)[0]).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});
