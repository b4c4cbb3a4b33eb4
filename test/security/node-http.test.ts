/**
 * One real-HTTP pass against the Node entry (`tsx src/node.ts` as a child process, with ADMIN_TOKEN and
 * CRON_SECRET set): raw request lines for path traversal (no client normalises them here), an oversized body
 * over the wire, a fuzz run through fetch with wrong tokens only (nothing may change), authorised actions with
 * the right tokens, and an error the service logs — after which the child's whole stdout and stderr must not
 * contain any token, right or wrong.
 *
 * The database has no CoreScope tables, so the engine only records once why its migration waits and then
 * writes nothing: any state change during the fuzz would come from a request.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseState } from "../../torture/fuzz.ts";
import {
  type FuzzTarget,
  fuzzTarget,
  SECURE_HEADERS,
  TRAVERSAL_PATHS,
  WRONG_TOKEN,
} from "../../torture/http-fuzz.ts";
import {
  freePort,
  getJson,
  poll,
  type ServerProcess,
  startServerProcess,
  waitForExit,
} from "../fixtures/server-process.ts";

const ADMIN_TOKEN = "node-admin-token-7f3a9c1e5b";
const CRON_SECRET = "node-cron-secret-2d8e6a4c0f";
const TX = "tx_last_seen_backfill_v1";

let dir: string;
let server: ServerProcess;
let monitor: Client;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "trickle-security-"));
  const url = `file:${join(dir, "trickle.db")}`;
  const port = await freePort();
  server = startServerProcess({
    env: {
      DATABASE_URL: url,
      PORT: String(port),
      ADMIN_TOKEN,
      CRON_SECRET,
      TRICKLE_TICK_MS: "100",
      TRICKLE_SNAPSHOT_TTL_MS: "0",
    },
    port,
  });
  // Up, and the engine has recorded why its migration waits (its last write until a request changes something).
  await poll(async () => {
    const { status, body } = await getJson(server.url("/api/healthz"));
    const reason = (body.async_migrations as { reason?: string }[] | undefined)?.[0]?.reason;
    return status === 200 && reason ? true : undefined;
  }, "the Node service to serve with its migration waiting");
  monitor = createClient({ url, intMode: "bigint", timeout: 2_000 });
}, 60_000);

afterAll(async () => {
  monitor?.close();
  if (server && server.child.exitCode === null && server.child.signalCode === null)
    server.child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** Sends `request` as raw bytes and returns the status line, the headers and the body. */
function raw(
  port: number,
  request: string,
): Promise<{ status: number; headers: Map<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let data = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      data += chunk;
    });
    socket.on("error", reject);
    socket.on("close", () => {
      const [head = "", ...rest] = data.split("\r\n\r\n");
      const [statusLine = "", ...headerLines] = head.split("\r\n");
      const headers = new Map(
        headerLines.map((l) => [
          l.slice(0, l.indexOf(":")).toLowerCase(),
          l.slice(l.indexOf(":") + 1).trim(),
        ]),
      );
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") });
    });
    socket.write(request);
  });
}

/**
 * POSTs `body` on a connection of its own. The server answers 413 before reading the body and may then close
 * that connection, so it must not be one a pooled client (fetch) would reuse for the next request.
 */
function postOnFreshConnection(port: number, path: string, token: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        agent: false,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    // The server may close the connection while the rest of the body is still being sent.
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE" && error.code !== "ECONNRESET") reject(error);
    });
    req.end(body);
  });
}

describe("the Node service over real HTTP", () => {
  it("path traversal in raw request lines never serves a file and never fails", async () => {
    for (const path of [
      ...TRAVERSAL_PATHS,
      "/warmup-banner.js/../../../../etc/passwd",
      "/..",
      "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    ]) {
      const res = await raw(
        server.port,
        `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
      );
      expect(res.status, path).toBeGreaterThanOrEqual(200);
      expect(res.status, path).toBeLessThan(500);
      expect(res.body, path).not.toMatch(/devDependencies|compilerOptions|root:x:0:0/);
      if (res.status !== 400 || res.headers.has("content-type")) {
        // Answered by the app (not refused by Node's HTTP parser): secure headers, and only the assets exist.
        for (const [name, value] of Object.entries(SECURE_HEADERS))
          expect(res.headers.get(name), `${path} ${name}`).toBe(value);
      }
    }
    // Sanity: the raw client does reach the app.
    const banner = await raw(
      server.port,
      "GET /warmup-banner.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    expect(banner.status).toBe(200);
  });

  it("refuses a 1 MiB body with 413 and keeps serving", async () => {
    const before = await databaseState(monitor);
    for (const [path, token] of [
      [`/api/migrations/${TX}/pause`, ADMIN_TOKEN],
      ["/api/tick", CRON_SECRET],
    ] as const) {
      const status = await postOnFreshConnection(
        server.port,
        path,
        token,
        JSON.stringify({ note: "x".repeat(1024 * 1024) }),
      );
      expect(status, path).toBe(413);
    }
    expect((await fetch(server.url("/api/healthz"))).status).toBe(200);
    expect(await databaseState(monitor)).toBe(before);
  });

  it("a refused body closes its connection, so its unread rest never reaches the next request", async () => {
    const body = JSON.stringify({ note: "x".repeat(20_000) });
    const res = await raw(
      server.port,
      `POST /api/migrations/${TX}/pause HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n` +
        `Authorization: Bearer ${ADMIN_TOKEN}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}`,
    ); // resolves when the server closes the socket
    expect(res.status).toBe(413);
    expect(res.headers.get("connection")).toBe("close");
    expect(res.body).not.toMatch(/HTTP\/1\.1/); // one answer only
  });

  it("fuzz through fetch with wrong tokens only: no 5xx, no leak, no state change", async () => {
    const target: FuzzTarget = {
      adminToken: ADMIN_TOKEN,
      cronSecret: CRON_SECRET,
      knownTokens: [ADMIN_TOKEN, CRON_SECRET],
      offerValidTokens: false,
      migrations: [TX],
      async send(request) {
        const res = await fetch(server.url(request.path), {
          method: request.method,
          headers: request.headers,
          ...(request.body === undefined ? {} : { body: request.body }),
        });
        return { status: res.status, headers: res.headers, text: await res.text() };
      },
      state: () => databaseState(monitor),
    };
    const figures = await fuzzTarget(target, { numRuns: 150, seed: 99 });
    expect(figures.violations).toEqual([]);
    expect(figures).toMatchObject({ requests: 150, fiveXX: 0, unauthorizedChanges: 0, authorizedChanges: 0 });
  });

  it("logs no token, right or wrong, across authorised actions, refusals and a logged error", async () => {
    const call = async (method: string, path: string, authorization: string, body?: unknown) => {
      const res = await fetch(server.url(path), {
        method,
        headers: { authorization, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      await res.arrayBuffer();
      return res.status;
    };
    const admin = `Bearer ${ADMIN_TOKEN}`;
    expect(await call("POST", `/api/migrations/${TX}/pause`, admin, { note: "security test" })).toBe(200);
    expect(await call("POST", `/api/migrations/${TX}/resume`, admin)).toBe(200);
    expect(await call("PATCH", `/api/migrations/${TX}`, admin, { stepTargetMs: 40 })).toBe(200);
    expect(await call("POST", `/api/migrations/${TX}/dry-run`, admin)).toBe(200);
    expect(await call("GET", "/api/tick?budgetMs=50", `Bearer ${CRON_SECRET}`)).toBe(200);
    for (const wrong of [WRONG_TOKEN, `${ADMIN_TOKEN}x`, ADMIN_TOKEN.slice(0, -1), CRON_SECRET]) {
      expect(await call("GET", "/api/migrations", `Bearer ${wrong}`)).toBe(401);
      expect(await call("POST", "/api/tick", `Bearer ${wrong === CRON_SECRET ? ADMIN_TOKEN : wrong}`)).toBe(
        401,
      );
    }
    // An error the service logs: the write lock is held, so a control write fails with SQLITE_BUSY (503).
    const lock = await monitor.transaction("write");
    try {
      expect(await call("POST", `/api/migrations/${TX}/pause`, admin)).toBe(503);
    } finally {
      await lock.rollback();
    }
    server.child.kill("SIGTERM");
    expect(await waitForExit(server, 20_000)).toEqual({ code: 0, signal: null });
    const output = server.output();
    expect(output).toMatch(/serving on/); // the log was captured
    expect(output).toMatch(/failed/); // including the error line
    for (const token of [ADMIN_TOKEN, CRON_SECRET, WRONG_TOKEN, ADMIN_TOKEN.slice(0, -1)])
      expect(output.includes(token), `the output contains ${token}`).toBe(false);
  });
});
