/**
 * The control API: token checks, validation that names the field, 404/409, the transitions, live tuning, the
 * audit trail, and a fuzz of the control and tick routes (never a 5xx; no state change without a token).
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { constantTimeEqual } from "../../src/routes/auth.ts";
import {
  ADMIN_TOKEN,
  CRON_SECRET,
  type Harness,
  setStatus,
  startHarness,
  stateRows,
  TX,
} from "../fixtures/server-harness.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

async function body(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

async function auditRows(harness: Harness) {
  const result = await harness.client.execute(
    "SELECT name, action, from_status, to_status, result, detail FROM _async_migration_audit ORDER BY id",
  );
  return result.rows.map((r) => ({ ...r }));
}

const CONTROL_REQUESTS: ReadonlyArray<readonly [string, string]> = [
  ["GET", "/api/migrations"],
  ["GET", `/api/migrations/${TX}`],
  ["POST", `/api/migrations/${TX}/pause`],
  ["POST", `/api/migrations/${TX}/resume`],
  ["POST", `/api/migrations/${TX}/cancel`],
  ["POST", `/api/migrations/${TX}/retry`],
  ["POST", `/api/migrations/${TX}/dry-run`],
  ["PATCH", `/api/migrations/${TX}`],
];

describe("control API authentication", () => {
  it("answers 403 'control API disabled' on every control route when ADMIN_TOKEN is unset or empty", async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: "" } });
    const before = await stateRows(h.client);
    for (const [method, path] of CONTROL_REQUESTS) {
      const res = await h.request(method, path, { token: ADMIN_TOKEN, body: { stepTargetMs: 10 } });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(await body(res)).toMatchObject({ status: 403, error: "control API disabled" });
    }
    expect(await stateRows(h.client)).toBe(before);
  });

  it("answers 401 for a missing, wrong, differently sized or non-Bearer token, without echoing it", async () => {
    h = await startHarness();
    const before = await stateRows(h.client);
    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: "Bearer wrong" },
      { authorization: `Bearer ${ADMIN_TOKEN}x` },
      { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}` },
      { authorization: `Basic ${ADMIN_TOKEN}` },
      { authorization: ADMIN_TOKEN },
      { authorization: `Bearer ${CRON_SECRET}` },
      { authorization: "Bearer " },
    ];
    for (const [method, path] of CONTROL_REQUESTS) {
      for (const headers of attempts) {
        const res = await h.request(method, path, { token: null, headers, body: { stepTargetMs: 10 } });
        expect(res.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(res.headers.get("www-authenticate")).toBe('Bearer realm="trickle"');
        const text = await res.text();
        expect(text).not.toContain(ADMIN_TOKEN.slice(0, 10));
      }
    }
    expect(await stateRows(h.client)).toBe(before);
    // Case-insensitive scheme, as HTTP auth schemes are.
    expect(
      (
        await h.request("GET", "/api/migrations", {
          token: null,
          headers: { authorization: `bearer ${ADMIN_TOKEN}` },
        })
      ).status,
    ).toBe(200);
  });

  it("compares tokens over UTF-8 bytes", () => {
    expect(constantTimeEqual("abc", "abc")).toBe(true);
    expect(constantTimeEqual("abc", "abd")).toBe(false);
    expect(constantTimeEqual("abc", "abcd")).toBe(false);
    expect(constantTimeEqual("", "")).toBe(true);
    expect(constantTimeEqual("", "a")).toBe(false);
    expect(constantTimeEqual("é", "é")).toBe(true);
    expect(constantTimeEqual("é", "e\u0301")).toBe(false);
    expect(constantTimeEqual("\u00e9", "\u00c3\u00a9")).toBe(false);
  });
});

describe("control API validation", () => {
  it("answers 404 for an unknown migration before touching the database", async () => {
    h = await startHarness();
    for (const [method, path] of [
      ["GET", "/api/migrations/nope_v1"],
      ["POST", "/api/migrations/nope_v1/pause"],
      ["POST", "/api/migrations/obs_hop_count_v1/pause"], // built in, but not enabled here
      ["POST", "/api/migrations/'%3B%20DROP%20TABLE%20x/pause"],
      ["PATCH", "/api/migrations/nope_v1"],
      ["POST", `/api/migrations/${TX}/explode`],
    ] as const) {
      const res = await h.request(method, path, { body: { stepTargetMs: 10 } });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(typeof (await body(res)).error).toBe("string");
    }
  });

  it("answers 400 naming the field for malformed bodies and queries, and never stores them", async () => {
    h = await startHarness();
    const before = await stateRows(h.client);
    const cases: Array<[string, string, { body?: unknown; rawBody?: string }, string]> = [
      ["PATCH", `/api/migrations/${TX}`, { rawBody: "{not json" }, "body"],
      ["PATCH", `/api/migrations/${TX}`, { rawBody: "" }, "body"],
      ["PATCH", `/api/migrations/${TX}`, { body: [] }, "body"],
      ["PATCH", `/api/migrations/${TX}`, { body: "fast" }, "body"],
      ["PATCH", `/api/migrations/${TX}`, { body: {} }, "body"],
      ["PATCH", `/api/migrations/${TX}`, { body: { stepTargetMs: "fast" } }, "stepTargetMs"],
      ["PATCH", `/api/migrations/${TX}`, { body: { stepTargetMs: 0 } }, "stepTargetMs"],
      ["PATCH", `/api/migrations/${TX}`, { body: { stepTargetMs: 1.5 } }, "stepTargetMs"],
      ["PATCH", `/api/migrations/${TX}`, { body: { yieldMs: -1 } }, "yieldMs"],
      ["PATCH", `/api/migrations/${TX}`, { body: { sliceBudgetMs: 1e12 } }, "sliceBudgetMs"],
      ["PATCH", `/api/migrations/${TX}`, { body: { stepTargetMs: 10, leaseTtlMs: 5 } }, "leaseTtlMs"],
      ["PATCH", `/api/migrations/${TX}?x=1`, { body: { stepTargetMs: 10 } }, "x"],
      ["POST", `/api/migrations/${TX}/pause`, { body: { force: true } }, "force"],
      ["POST", `/api/migrations/${TX}/pause`, { rawBody: "nope" }, "body"],
      ["POST", `/api/migrations/${TX}/pause`, { body: { note: 5 } }, "note"],
      ["POST", `/api/migrations/${TX}/pause?now=1`, {}, "now"],
      ["GET", `/api/migrations/${TX}?steps=abc`, {}, "steps"],
      ["GET", `/api/migrations/${TX}?steps=51`, {}, "steps"],
      ["GET", `/api/migrations/${TX}?steps=1&steps=2`, {}, "steps"],
      ["GET", "/api/migrations?limit=1", {}, "limit"],
    ];
    for (const [method, path, payload, field] of cases) {
      const res = await h.request(method, path, payload);
      expect(res.status, `${method} ${path} ${JSON.stringify(payload)}`).toBe(400);
      const b = await body(res);
      expect(b.field, `${method} ${path} ${JSON.stringify(payload)}`).toBe(field);
      expect(String(b.error)).toContain(field === "body" ? "" : field);
    }
    expect(await stateRows(h.client)).toBe(before);
  });

  it("lists every problem of a request, query and body together, as problem details", async () => {
    h = await startHarness();
    const before = await stateRows(h.client);
    const res = await h.request("PATCH", `/api/migrations/${TX}?x=1`, {
      body: { stepTargetMs: "fast", yieldMs: -1, bogus: true },
    });
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const b = await body(res);
    expect(b).toMatchObject({ type: "about:blank", title: "Bad Request", status: 400, field: "x" });
    expect(b.error).toBe(b.detail);
    const fields = (b.problems as { field: string; message: string }[]).map((p) => p.field).sort();
    expect(fields).toEqual(["bogus", "stepTargetMs", "x", "yieldMs"]);
    expect(await stateRows(h.client)).toBe(before);
  });

  it("answers a known path with another method 405 naming the allowed ones in Allow", async () => {
    h = await startHarness();
    const cases: Array<[string, string, string]> = [
      ["DELETE", `/api/migrations/${TX}`, "GET, PATCH, HEAD"],
      ["PUT", `/api/migrations/${TX}/pause`, "POST"],
      ["POST", "/api/healthz", "GET, HEAD"],
      ["DELETE", "/api/tick", "GET, POST, HEAD"],
    ];
    for (const [method, path, allow] of cases) {
      const res = await h.request(method, path, { token: path === "/api/tick" ? CRON_SECRET : ADMIN_TOKEN });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get("allow")?.split(", ").sort(), `${method} ${path}`).toEqual(
        allow.split(", ").sort(),
      );
      expect(await body(res)).toMatchObject({ status: 405, title: "Method Not Allowed" });
    }
    const missing = await h.request("GET", "/api/nothing-here");
    expect(missing.status).toBe(404);
    expect(missing.headers.get("allow")).toBeNull();
    expect(missing.headers.get("content-type")).toBe("application/problem+json");
  });

  it("refuses live tuning that would outlive the lease (a slice budget, or a step and its yield, ≥ the lease TTL)", async () => {
    h = await startHarness({ env: { TRICKLE_LEASE_TTL_MS: "5000" } });
    const before = await stateRows(h.client);
    const cases: Array<[Record<string, number>, string]> = [
      [{ sliceBudgetMs: 5000 }, "sliceBudgetMs"],
      [{ sliceBudgetMs: 900_000 }, "sliceBudgetMs"],
      [{ yieldMs: 5000 }, "yieldMs"],
      [{ stepTargetMs: 4000, yieldMs: 1000 }, "stepTargetMs"],
      [{ stepTargetMs: 60_000 }, "stepTargetMs"],
    ];
    for (const [patch, field] of cases) {
      const res = await h.request("PATCH", `/api/migrations/${TX}`, { body: patch });
      expect(res.status, JSON.stringify(patch)).toBe(400);
      const b = await body(res);
      expect(b.field, JSON.stringify(patch)).toBe(field);
      expect(String(b.error)).toMatch(/must be less than the lease TTL \(TRICKLE_LEASE_TTL_MS = 5000\)/);
    }
    expect(await stateRows(h.client)).toBe(before);
    const fits = await h.request("PATCH", `/api/migrations/${TX}`, {
      body: { sliceBudgetMs: 4999, yieldMs: 100 },
    });
    expect(fits.status).toBe(200);
  });

  it("refuses bodies over 16 KiB with 413", async () => {
    h = await startHarness();
    const res = await h.request("PATCH", `/api/migrations/${TX}`, {
      rawBody: JSON.stringify({ stepTargetMs: 10, pad: "x".repeat(20_000) }),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(413);
  });
});

describe("POST /failures/retry keys", () => {
  const retry = (harness: Harness, keys: unknown[]) =>
    harness.request("POST", `/api/migrations/${TX}/failures/retry`, { body: { keys } });

  it("answers 400 naming the key for one outside the signed 64-bit range (text or number), and changes nothing", async () => {
    h = await startHarness();
    const before = await stateRows(h.client);
    const bad: unknown[] = [
      "9999999999999999999",
      "9223372036854775808", // 2^63
      "-9223372036854775809", // -2^63 - 1
      "-9999999999999999999",
      "99999999999999999999",
      "1.5",
      " 1",
      "0x10",
      "",
      "+1",
      9007199254740992, // 2^53: not exact as a JSON number
      1.5,
      true,
      null,
    ];
    for (const key of bad) {
      const res = await retry(h, ["1", key]);
      expect(res.status, JSON.stringify(key)).toBe(400);
      const b = await body(res);
      expect(b.field, JSON.stringify(key)).toBe("keys.1");
      expect(String(b.error), JSON.stringify(key)).toMatch(/^keys\.1: /);
    }
    const range = await body(await retry(h, ["9999999999999999999"]));
    expect(range).toMatchObject({
      status: 400,
      error: "keys.0: keys must be integers from -9223372036854775808 to 9223372036854775807",
      field: "keys.0",
      problems: [{ field: "keys.0" }],
    });
    expect(await stateRows(h.client)).toBe(before);
  });

  it("accepts the extremes of the range, decimal text and safe-integer numbers", async () => {
    h = await startHarness();
    const res = await retry(h, [
      "9223372036854775807",
      "-9223372036854775808",
      "007",
      "-0",
      9007199254740991,
      -3,
    ]);
    expect(res.status).toBe(200);
    expect(await body(res)).toMatchObject({ name: TX, requested: 0 });
    const audit = await auditRows(h);
    expect(JSON.parse(String(audit[0]?.detail)).keys).toEqual([
      "9223372036854775807",
      "-9223372036854775808",
      "7",
      "0",
      "9007199254740991",
      "-3",
    ]);
  });
});

describe("control actions", () => {
  it("pauses, refuses impossible transitions with 409, resumes, cancels and retries — each audited", async () => {
    h = await startHarness({ transmissions: 500 });
    const act = (action: string, payload: { body?: unknown } = {}) =>
      h!.request("POST", `/api/migrations/${TX}/${action}`, payload);

    const paused = await act("pause", { body: { note: "maintenance window" } });
    expect(paused.status).toBe(200);
    expect(await body(paused)).toMatchObject({
      name: TX,
      action: "pause",
      from: "pending",
      to: "paused",
      migration: { status: "paused" },
    });

    const again = await act("pause");
    expect(again.status).toBe(409);
    expect(await body(again)).toMatchObject({ name: TX, status: 409, migrationStatus: "paused" });

    expect((await act("resume")).status).toBe(200);
    await setStatus(h.client, TX, "done");
    const resumeDone = await act("resume");
    expect(resumeDone.status).toBe(409);
    expect(String((await body(resumeDone)).error)).toMatch(/cannot resume a migration that is done/);

    await setStatus(h.client, TX, "failed", "boom");
    const retried = await act("retry");
    expect(retried.status).toBe(200);
    expect(await body(retried)).toMatchObject({ from: "failed", to: "pending" });
    expect((await act("cancel")).status).toBe(200);
    expect((await act("cancel")).status).toBe(409);

    const audit = await auditRows(h);
    expect(audit.map((a) => [a.action, a.from_status, a.to_status, a.result])).toEqual([
      ["pause", "pending", "paused", "ok"],
      ["pause", "paused", null, "conflict"],
      ["resume", "paused", "pending", "ok"],
      ["resume", "done", null, "conflict"],
      ["retry", "failed", "pending", "ok"],
      ["cancel", "pending", "cancelled", "ok"],
      ["cancel", "cancelled", null, "conflict"],
    ]);
    expect(JSON.parse(String(audit[0]?.detail))).toMatchObject({ note: "maintenance window" });
    const everything = JSON.stringify(audit);
    expect(everything).not.toContain(ADMIN_TOKEN);
  });

  it("stores live tuning within bounds, merges and clears overrides, and audits it", async () => {
    h = await startHarness();
    const patch = (b: unknown) => h!.request("PATCH", `/api/migrations/${TX}`, { body: b });
    const first = await patch({ stepTargetMs: 20, yieldMs: 5 });
    expect(first.status).toBe(200);
    expect(await body(first)).toEqual({
      name: TX,
      tuning: { stepTargetMs: 20, yieldMs: 5 },
      appliesFrom: "next lease acquisition",
    });
    expect(await body(await patch({ yieldMs: null, maxBatch: 500 }))).toMatchObject({
      tuning: { stepTargetMs: 20, maxBatch: 500 },
    });
    const stored = await h.client.execute({
      sql: "SELECT tuning FROM _async_migrations WHERE name = ?",
      args: [TX],
    });
    expect(JSON.parse(String(stored.rows[0]?.tuning))).toEqual({ stepTargetMs: 20, maxBatch: 500 });

    const detail = await body(await h.request("GET", `/api/migrations/${TX}`));
    expect(detail.tuning).toEqual({ stepTargetMs: 20, maxBatch: 500 });

    const audit = await auditRows(h);
    expect(audit.map((a) => [a.action, a.result])).toEqual([
      ["tune", "ok"],
      ["tune", "ok"],
    ]);
  });

  it("lists, details with recent steps, and dry-runs", async () => {
    h = await startHarness({ transmissions: 2000 });
    const dry = await h.request("POST", `/api/migrations/${TX}/dry-run`);
    expect(dry.status).toBe(200);
    const report = await body(dry);
    expect(report).toMatchObject({
      name: TX,
      blockedBy: null,
      candidates: { rowsTotal: 2000, minKey: 1, maxKey: 2000 },
    });
    expect((report.stepSql as string[]).some((s) => /UPDATE "transmissions"/.test(s))).toBe(true);
    const untouched = await h.client.execute("SELECT COUNT(*) AS n FROM transmissions WHERE last_seen = 0");
    expect(Number(untouched.rows[0]?.n)).toBe(2000);

    await h.service.tick(1000);
    const list = await body(await h.request("GET", "/api/migrations"));
    expect((list.migrations as { name: string }[]).map((m) => m.name)).toEqual([TX]);
    const detail = await body(await h.request("GET", `/api/migrations/${TX}?steps=3`));
    expect(detail).toMatchObject({ table: "transmissions", key: "id", maxKey: 2000 });
    const steps = detail.recentSteps as { durationMs: number; batchSize: number }[];
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.length).toBeLessThanOrEqual(3);
    expect(typeof steps[0]?.durationMs).toBe("number");
    expect((await auditRows(h)).map((a) => a.action)).toEqual(["dry-run"]);
  });
});

describe("control API under a held write lock", () => {
  it("answers 503 with Retry-After (not 500) when the database stays busy, and changes nothing", async () => {
    h = await startHarness({ busyTimeoutMs: 50 });
    const before = await stateRows(h.client);
    const other = h.db.open({ timeout: 50 });
    const lock = await other.transaction("write"); // BEGIN IMMEDIATE: holds the write lock
    try {
      const res = await h.request("POST", `/api/migrations/${TX}/pause`);
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("1");
      expect(String((await body(res)).error)).toMatch(/busy/);
    } finally {
      await lock.rollback();
    }
    expect(await stateRows(h.client)).toBe(before);
    expect((await h.request("POST", `/api/migrations/${TX}/pause`)).status).toBe(200);
  });
});

describe("fuzz: control and tick routes", () => {
  it("never answer 5xx, and change no state without a valid token", async () => {
    h = await startHarness({ transmissions: 200, env: { TRICKLE_SNAPSHOT_TTL_MS: "0" } });
    const harness = h;
    let changes = 0;
    const segment = fc.oneof(
      fc.constantFrom(
        TX,
        "obs_hop_count_v1",
        "pause",
        "resume",
        "cancel",
        "retry",
        "dry-run",
        "",
        "..",
        "%",
        "%zz",
        "%00",
      ),
      fc.string({ maxLength: 20 }).map(encodeURIComponent),
      fc.stringMatching(/^[a-z_0-9]{1,12}$/),
    );
    const randomPath = fc.oneof(
      fc.constant("/api/migrations"),
      segment.map((s) => `/api/migrations/${s}`),
      fc.tuple(segment, segment).map(([a, b]) => `/api/migrations/${a}/${b}`),
      fc.constant("/api/tick"),
      segment.map((s) => `/api/tick/${s}`),
    );
    const method = fc.constantFrom("GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS");
    // Well-formed routes most of the time, so the token checks and validation are what gets exercised.
    const route = fc.oneof(
      {
        arbitrary: fc.constantFrom(
          ...CONTROL_REQUESTS,
          ["GET", `/api/migrations/${TX}/failures`] as const,
          ["POST", `/api/migrations/${TX}/failures/retry`] as const,
          ["GET", "/api/tick"] as const,
          ["POST", "/api/tick"] as const,
        ),
        weight: 3,
      },
      { arbitrary: fc.tuple(method, randomPath), weight: 1 },
    );
    const query = fc.oneof(
      fc.constant(""),
      fc.constantFrom(
        "?budgetMs=10",
        "?budgetMs=-1",
        "?budgetMs=1e9",
        "?budgetMs=900000",
        "?budgetMs=",
        "?steps=2",
        "?steps=x",
        "?a=1&a=2",
      ),
      fc
        .dictionary(fc.stringMatching(/^[a-zA-Z]{1,6}$/), fc.string({ maxLength: 8 }), { maxKeys: 3 })
        .map((d) => `?${new URLSearchParams(d).toString()}`),
    );
    const auth = fc.oneof(
      { arbitrary: fc.constant(`Bearer ${ADMIN_TOKEN}`), weight: 2 },
      { arbitrary: fc.constant(`Bearer ${CRON_SECRET}`), weight: 1 },
      { arbitrary: fc.constant<string | undefined>(undefined), weight: 1 },
      {
        arbitrary: fc.constantFrom(
          "Bearer wrong",
          "Bearer",
          `Basic ${ADMIN_TOKEN}`,
          `Bearer ${ADMIN_TOKEN} extra`,
          `Bearer ${ADMIN_TOKEN.slice(1)}`,
          ADMIN_TOKEN,
        ),
        weight: 3,
      },
      { arbitrary: fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, "")), weight: 1 },
    );
    const bodyArb = fc.oneof(
      { arbitrary: fc.constant<string | undefined>(undefined), weight: 3 },
      { arbitrary: fc.json({ maxDepth: 3 }), weight: 1 },
      { arbitrary: fc.string({ maxLength: 200 }), weight: 1 },
      {
        arbitrary: fc
          .record(
            {
              stepTargetMs: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
              yieldMs: fc.oneof(fc.integer(), fc.constant(null)),
              sliceBudgetMs: fc.integer(),
              initialBatch: fc.integer(),
              maxBatch: fc.integer(),
              note: fc.string(),
              other: fc.anything(),
            },
            { requiredKeys: [] },
          )
          .map((o) => JSON.stringify(o, (_k, v) => (typeof v === "bigint" ? v.toString() : v))),
        weight: 2,
      },
      {
        // Quarantined keys to retry: around and beyond the signed 64-bit range, as text and as numbers.
        arbitrary: fc
          .array(
            fc.oneof(
              fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }).map(String),
              fc.constantFrom("9223372036854775807", "9223372036854775808", "-9223372036854775809"),
              fc.integer(),
              fc.double(),
            ),
            { minLength: 1, maxLength: 4 },
          )
          .map((keys) => JSON.stringify({ keys })),
        weight: 1,
      },
    );
    const request = fc.record({
      route,
      query: fc.oneof({ arbitrary: fc.constant(""), weight: 3 }, { arbitrary: query, weight: 1 }),
      auth,
      contentType: fc.constantFrom(
        undefined,
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
      ),
      body: bodyArb,
    });

    await fc.assert(
      fc.asyncProperty(request, async ({ route: [method, path], ...r }) => {
        const headers: Record<string, string> = {};
        if (r.auth !== undefined) headers.authorization = r.auth;
        if (r.contentType !== undefined) headers["content-type"] = r.contentType;
        const hasBody = r.body !== undefined && method !== "GET" && method !== "HEAD";
        // Only the right token for the route may change anything (the cron secret opens no control route).
        const mayChange =
          (r.auth === `Bearer ${ADMIN_TOKEN}` && path.startsWith("/api/migrations")) ||
          (r.auth === `Bearer ${CRON_SECRET}` && path.startsWith("/api/tick"));
        const before = mayChange ? "" : await stateRows(harness.client);
        const res = await harness.service.app.request(`${path}${r.query}`, {
          method,
          headers,
          ...(hasBody ? { body: r.body } : {}),
        });
        expect(res.status, `${method} ${path}${r.query}`).toBeLessThan(500);
        await res.arrayBuffer();
        if (mayChange && res.status === 200 && method !== "GET") changes++;
        if (!mayChange) expect(await stateRows(harness.client)).toBe(before);
      }),
      { numRuns: 400, seed: 20261124 },
    );
    // The run did exercise successful state changes (so "no change without a token" is not vacuous).
    expect(changes).toBeGreaterThanOrEqual(5);
  });
});
