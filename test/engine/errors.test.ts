/**
 * Invariant 6 (errors): what retries and what fails. Real errors from libSQL (a constraint, a busy database, the
 * fence) and from @libsql/client talking to a real HTTP server are classified, plus the codes that are hard
 * to provoke on demand (SQLITE_FULL, extended codes), built the way @libsql/client builds them. Cloudflare D1's
 * errors, with the messages its binding throws (the ones that need a loaded D1 cannot be provoked locally; the
 * ones SQLite raises are met for real in test/edge/d1-client.test.ts).
 */
import { createServer, type Server } from "node:http";
import { createClient, LibsqlError } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { classifyError, isRowLevelError, LeaseLostError } from "../../src/engine/errors.ts";
import { Runner } from "../../src/engine/runner.ts";
import { D1QueryError } from "../../src/worker/d1-client.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import { caught, counterMigration, createCounterTable } from "../helpers/engine.ts";

let db: TempDb | undefined;
let server: Server | undefined;
afterEach(async () => {
  db?.cleanup();
  db = undefined;
  if (server) await new Promise((resolve) => server!.close(resolve));
  server = undefined;
});

/** A real HTTP server answering every request with `status` and a plain-text body. */
async function answering(status: number, body: string): Promise<string> {
  server = createServer((_req, res) => {
    res.writeHead(status, { "content-type": "text/plain" });
    res.end(body);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return `http://127.0.0.1:${address.port}`;
}

describe("real errors", () => {
  it("a constraint violation is deterministic", async () => {
    db = tempDb();
    const client = db.open();
    await createCounterTable(client, [1n]);
    const error = await caught(client.execute("INSERT INTO t (id) VALUES (1)"));
    expect(classifyError(error)).toMatchObject({ kind: "deterministic", code: "SQLITE_CONSTRAINT" });
    expect(classifyError(error).message).toMatch(/UNIQUE constraint failed: t\.id/);
  });

  it("a syntax or schema error is deterministic", async () => {
    db = tempDb();
    const error = await caught(db.open().execute("SELECT no_such_column FROM sqlite_master"));
    expect(classifyError(error).kind).toBe("deterministic");
  });

  it("SQLITE_BUSY from another connection holding the write lock is transient", async () => {
    db = tempDb();
    const holder = db.open();
    await createCounterTable(holder, [1n]);
    const tx = await holder.transaction("write");
    try {
      await tx.execute("INSERT INTO t (id) VALUES (2)");
      const error = await caught(db.open({ timeout: 10 }).execute("INSERT INTO t (id) VALUES (3)"));
      expect(classifyError(error)).toMatchObject({ kind: "transient", code: "SQLITE_BUSY" });
    } finally {
      await tx.rollback();
    }
  });

  it("the fence's abort is lease-lost", async () => {
    db = tempDb();
    const client = db.open();
    await createCounterTable(client, [1n]);
    const runner = new Runner({ client, migrations: [counterMigration()] });
    await runner.init();
    const error = await caught(
      runner.store.fenced({ name: "counter_v1", owner: "nobody", epoch: 7n, ttlMs: 1000 }, [
        "UPDATE t SET n = 99",
      ]),
    );
    expect(classifyError(error)).toMatchObject({ kind: "lease-lost", code: "LEASE_LOST" });
    expect((await client.execute("SELECT n FROM t")).rows[0]?.n).toBe(0n); // the batch rolled back
  });

  it("HTTP 503 from the server is transient", async () => {
    const client = createClient({ url: await answering(503, "overloaded") });
    try {
      const error = await caught(client.execute("SELECT 1"));
      expect(classifyError(error)).toMatchObject({ kind: "transient", code: "SERVER_ERROR" });
    } finally {
      client.close();
    }
  });

  it("HTTP 400 'invalid baton' (an expired stream) is transient, other 400s are not", async () => {
    const baton = createClient({ url: await answering(400, "invalid baton") });
    try {
      expect(classifyError(await caught(baton.execute("SELECT 1"))).kind).toBe("transient");
    } finally {
      baton.close();
    }
    await new Promise((resolve) => server!.close(resolve));
    const parse = createClient({ url: await answering(400, "SQL parse error") });
    try {
      expect(classifyError(await caught(parse.execute("SELECT 1"))).kind).toBe("deterministic");
    } finally {
      parse.close();
    }
  });

  it("a refused connection (TypeError: fetch failed) is transient", async () => {
    const url = await answering(200, "");
    await new Promise((resolve) => server!.close(resolve));
    server = undefined;
    const client = createClient({ url });
    try {
      const error = await caught(client.execute("SELECT 1"));
      expect(error).toBeInstanceOf(TypeError);
      expect(classifyError(error).kind).toBe("transient");
    } finally {
      client.close();
    }
  });
});

describe("codes as @libsql/client reports them", () => {
  it.each([
    ["SQLITE_BUSY", undefined],
    ["SQLITE_BUSY", "SQLITE_BUSY_SNAPSHOT"],
    ["SQLITE_BUSY", "SQLITE_BUSY_TIMEOUT"],
    ["SQLITE_BUSY_SNAPSHOT", undefined],
    ["SQLITE_LOCKED", undefined],
    ["SQLITE_LOCKED", "SQLITE_LOCKED_SHAREDCACHE"],
    ["SQLITE_FULL", undefined],
    ["SQLITE_IOERR", "SQLITE_IOERR_WRITE"],
  ])("%s (%s) is transient", (code, extended) => {
    expect(classifyError(new LibsqlError("x", code, extended)).kind).toBe("transient");
  });

  it.each([
    ["SQLITE_CONSTRAINT", undefined],
    ["SQLITE_CONSTRAINT", "SQLITE_CONSTRAINT_NOTNULL"],
    ["SQLITE_ERROR", undefined],
    ["SQLITE_MISMATCH", undefined],
    ["SQLITE_BUSYNESS", undefined], // a prefix of a transient code is not that code
  ])("%s (%s) is deterministic", (code, extended) => {
    expect(classifyError(new LibsqlError("x", code, extended)).kind).toBe("deterministic");
  });

  it("transient codes are found on the cause chain", () => {
    const reset = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    expect(classifyError(new Error("request failed", { cause: reset })).kind).toBe("transient");
  });

  it("the lease-lost message and LeaseLostError are lease-lost", () => {
    expect(
      classifyError(new LibsqlError("trickle_lease_lost", "SQLITE_CONSTRAINT", "SQLITE_CONSTRAINT_TRIGGER"))
        .kind,
    ).toBe("lease-lost");
    expect(classifyError(new LeaseLostError("m_v1")).kind).toBe("lease-lost");
  });

  it("plain errors and non-errors are deterministic, with their message", () => {
    expect(classifyError(new Error("boom"))).toMatchObject({ kind: "deterministic", message: "boom" });
    expect(classifyError("just a string")).toMatchObject({ kind: "deterministic", message: "just a string" });
    expect(classifyError({ weird: true }).message).toMatch(/weird/);
    expect(classifyError(new TypeError("x is not a function")).kind).toBe("deterministic");
  });
});

describe("Cloudflare D1's errors", () => {
  /** As the D1 binding throws them: an `Error` whose message carries D1's prefix and, for SQLite's, the code. */
  const d1 = (message: string) => new Error(message, { cause: new Error(message.replace(/^D1_\w+: /, "")) });

  it.each([
    "D1_ERROR: D1 DB is overloaded. Too many requests queued.",
    "D1_ERROR: D1 DB is overloaded. Requests queued for too long.",
    "D1_ERROR: D1 DB exceeded its CPU time limit and was reset.",
    "D1_ERROR: D1 DB's isolate exceeded its memory limit and was reset.",
    "D1_ERROR: D1 DB storage operation exceeded timeout which caused object to be reset.",
    "D1_ERROR: Internal error in D1 DB storage caused object to be reset.",
    "D1_ERROR: Internal error while starting up D1 DB storage caused object to be reset.",
    "D1_ERROR: D1 DB reset because its code was updated.",
    "D1_ERROR: Cannot resolve D1 DB due to transient issue on remote node.",
    "D1_ERROR: Can't read from request stream because client disconnected.",
    "D1_ERROR: internal error",
    "D1_ERROR: the database is overloaded",
    "D1_ERROR: execution timeout",
    "Network connection lost.", // thrown by the binding's transport, without D1's prefix
    "D1 DB is overloaded. Too many requests queued.",
  ])("%s is transient back-pressure", (message) => {
    expect(classifyError(d1(message)).kind).toBe("transient");
    // …also once the adapter (src/worker/d1-client.ts) gave it libSQL's shape.
    expect(classifyError(new D1QueryError(message, "D1_ERROR", undefined, null)).kind).toBe("transient");
  });

  it.each([
    "D1_ERROR: UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_PRIMARYKEY)",
    'D1_ERROR: near "SELEC": syntax error at offset 0: SQLITE_ERROR',
    "D1_ERROR: too many SQL variables at offset 207: SQLITE_ERROR",
    "D1_ERROR: not authorized to use function: sqlite_version at offset 7: SQLITE_ERROR",
    "D1_TYPE_ERROR: Type 'bigint' not supported for value '1'",
    "D1_COLUMN_NOTFOUND: Column not found",
    "internal error", // not D1's: a bare phrase alone proves nothing
  ])("%s is deterministic", (message) => {
    expect(classifyError(d1(message)).kind).toBe("deterministic");
  });

  it("SQLite's code in D1's message is the code, and a row-level one can be bisected", () => {
    const message =
      "D1_ERROR: CHECK constraint failed: v >= 0: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_CHECK)";
    const error = classifyError(
      new D1QueryError(message, "SQLITE_CONSTRAINT", "SQLITE_CONSTRAINT_CHECK", null),
    );
    expect(error).toMatchObject({ kind: "deterministic", code: "SQLITE_CONSTRAINT" });
    expect(isRowLevelError(error)).toBe(true);
  });

  it("the fence's abort through D1's wrapping is lease-lost", () => {
    const message = "D1_ERROR: trickle_lease_lost: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_TRIGGER)";
    expect(classifyError(d1(message)).kind).toBe("lease-lost");
    expect(classifyError(new D1QueryError(message, "SQLITE_CONSTRAINT", undefined, null)).kind).toBe(
      "lease-lost",
    );
  });
});
