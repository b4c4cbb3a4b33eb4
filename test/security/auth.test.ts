/**
 * Access: bearer tokens are compared in constant time (every byte of both is read, wherever they differ), never
 * echoed, and the control API and HTTP tick refuse everything when no token is configured. Every response —
 * errors, 401, 403, 404, 413, 500, 503 included — carries the secure headers.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { constantTimeEqual } from "../../src/routes/auth.ts";
import { databaseState } from "../../torture/fuzz.ts";
import { SECURE_HEADERS, WRONG_TOKEN } from "../../torture/http-fuzz.ts";
import { ADMIN_TOKEN, CRON_SECRET, type Harness, startHarness, TX } from "../fixtures/server-harness.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

/**
 * Runs `body` while every `TextEncoder.encode` result counts the element reads made on it. `constantTimeEqual`
 * encodes both strings and compares the bytes; a comparison that stops at the first difference reads fewer.
 */
function countingByteReads<T>(body: () => T): { value: T; reads: number } {
  const original = TextEncoder.prototype.encode;
  let reads = 0;
  TextEncoder.prototype.encode = function encode(this: TextEncoder, input?: string) {
    const bytes = original.call(this, input);
    return new Proxy(bytes, {
      get(target, property) {
        if (typeof property === "string" && /^\d+$/.test(property)) reads++;
        return Reflect.get(target, property, target);
      },
    });
  };
  try {
    const value = body();
    return { value, reads };
  } finally {
    TextEncoder.prototype.encode = original;
  }
}

const ROUTES: ReadonlyArray<readonly [string, string]> = [
  ["GET", "/api/migrations"],
  ["GET", `/api/migrations/${TX}`],
  ["POST", `/api/migrations/${TX}/pause`],
  ["POST", `/api/migrations/${TX}/resume`],
  ["POST", `/api/migrations/${TX}/cancel`],
  ["POST", `/api/migrations/${TX}/retry`],
  ["POST", `/api/migrations/${TX}/dry-run`],
  ["PATCH", `/api/migrations/${TX}`],
  ["GET", "/api/tick"],
  ["POST", "/api/tick"],
];

function expectSecureHeaders(res: Response, what: string): void {
  for (const [name, value] of Object.entries(SECURE_HEADERS))
    expect(res.headers.get(name), `${what}: ${name}`).toBe(value);
}

describe("constant-time token comparison", () => {
  it("reads every byte of both tokens whether they differ at the first byte, the last, or not at all", () => {
    const token = "0123456789abcdef0123456789abcdef";
    const variants = [token, `x${token.slice(1)}`, `${token.slice(0, -1)}x`, "y".repeat(token.length)];
    for (const other of variants) {
      const { value, reads } = countingByteReads(() => constantTimeEqual(other, token));
      expect(value, other).toBe(other === token);
      expect(reads, other).toBe(2 * token.length);
    }
    // Different lengths: still as many reads as the longer one has bytes, never an early return.
    for (const other of ["", "0", token.slice(0, 16), `${token}0123`]) {
      const { reads } = countingByteReads(() => constantTimeEqual(other, token));
      expect(reads, JSON.stringify(other)).toBe(2 * Math.max(other.length, token.length));
    }
  });

  it("holds for arbitrary pairs (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), (a, b) => {
        const { value, reads } = countingByteReads(() => constantTimeEqual(a, b));
        const bytes = Math.max(new TextEncoder().encode(a).length, new TextEncoder().encode(b).length);
        return value === (a === b) && reads === 2 * bytes;
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it("the control API and the HTTP tick compare with it: a wrong token costs a full-length comparison", async () => {
    h = await startHarness();
    const harness = h;
    for (const [secret, path] of [
      [ADMIN_TOKEN, "/api/migrations"],
      [CRON_SECRET, "/api/tick"],
    ] as const) {
      for (const wrong of [`x${secret.slice(1)}`, `${secret.slice(0, -1)}x`]) {
        const started = countingByteReads(() =>
          harness.service.app.request(path, { headers: { authorization: `Bearer ${wrong}` } }),
        );
        const res = await started.value;
        expect(res.status).toBe(401);
        expect(started.reads, `${path} with ${wrong}`).toBeGreaterThanOrEqual(2 * secret.length);
      }
    }
  });
});

describe("no token configured", () => {
  it("every control route and the tick answer 403 to any token, and nothing changes", async () => {
    h = await startHarness({ transmissions: 20, env: { ADMIN_TOKEN: "", CRON_SECRET: "" } });
    const before = await databaseState(h.client);
    for (const [method, path] of ROUTES) {
      for (const authorization of [
        undefined,
        `Bearer ${ADMIN_TOKEN}`,
        `Bearer ${CRON_SECRET}`,
        "Bearer ",
        "Bearer undefined",
      ]) {
        const res = await h.request(method, path, {
          token: null,
          headers: authorization === undefined ? {} : { authorization },
          body: { stepTargetMs: 10 },
        });
        expect(res.status, `${method} ${path} ${authorization}`).toBe(403);
        expectSecureHeaders(res, `${method} ${path}`);
        expect(((await res.json()) as { error: string }).error).toMatch(/disabled/);
      }
    }
    expect(await databaseState(h.client)).toBe(before);
  });
});

describe("tokens are never echoed", () => {
  it("no response body or header repeats a right or wrong token", async () => {
    h = await startHarness({ transmissions: 20, env: { TRICKLE_SNAPSHOT_TTL_MS: "0" } });
    const tokens = [ADMIN_TOKEN, CRON_SECRET, WRONG_TOKEN, `${ADMIN_TOKEN}x`, `${CRON_SECRET.slice(0, -1)}`];
    for (const [method, path] of ROUTES) {
      for (const token of tokens) {
        for (const authorization of [`Bearer ${token}`, `Basic ${token}`, token]) {
          const res = await h.request(method, path, { token: null, headers: { authorization }, body: {} });
          const text = await res.text();
          const headers = [...res.headers.entries()].map(([k, v]) => `${k}: ${v}`).join("\n");
          for (const secret of tokens) {
            expect(text.includes(secret), `${method} ${path} (${res.status}) body echoes a token`).toBe(
              false,
            );
            expect(headers.includes(secret), `${method} ${path} (${res.status}) headers echo a token`).toBe(
              false,
            );
          }
        }
      }
    }
  });
});

describe("secure headers on every response", () => {
  it("200, 400, 401, 403, 404, 409, 413 and the error handler's 500 and 503 all carry them", async () => {
    h = await startHarness({ transmissions: 20, env: { TRICKLE_SNAPSHOT_TTL_MS: "0" }, busyTimeoutMs: 50 });
    const seen = new Set<number>();
    const check = async (res: Response, what: string) => {
      seen.add(res.status);
      expectSecureHeaders(res, `${what} (${res.status})`);
      await res.arrayBuffer();
    };
    await check(await h.request("GET", "/", { token: null }), "status page");
    await check(await h.request("GET", "/warmup-banner.js", { token: null }), "banner");
    await check(await h.request("GET", "/api/healthz", { token: null }), "healthz");
    await check(await h.request("GET", "/nope", { token: null }), "unknown path");
    await check(await h.request("GET", "/api/migrations", { token: null }), "no token");
    await check(await h.request("PATCH", `/api/migrations/${TX}`, { body: { bogus: 1 } }), "unknown field");
    await check(await h.request("POST", `/api/migrations/${TX}/resume`), "impossible transition");
    await check(
      await h.request("POST", `/api/migrations/${TX}/pause`, { rawBody: "x".repeat(20_000) }),
      "too large",
    );
    // The database busy (another connection holds the write lock): the error handler's 503.
    const lock = await h.db.open({ timeout: 10 }).transaction("write");
    try {
      await check(await h.request("POST", `/api/migrations/${TX}/pause`), "database busy");
    } finally {
      await lock.rollback();
    }
    // A deterministic failure inside a route (the state table is gone): the error handler's 500, without details.
    await h.client.execute("ALTER TABLE _async_migrations RENAME TO _async_migrations_gone");
    const broken = await h.request("GET", "/api/migrations");
    expect(await broken.clone().json()).toMatchObject({ status: 500, error: "internal error" });
    await check(broken, "internal error");
    const health = await h.request("GET", "/api/healthz", { token: null });
    await check(health, "healthz while the state cannot be read");
    expect([...seen].sort()).toEqual([200, 400, 401, 404, 409, 413, 500, 503]);
  });
});
