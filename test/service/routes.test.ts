/**
 * The read routes (`/api/healthz`, `/api/perf`, `/metrics`, `/api/openapi.json`, the UI) and `/api/tick`,
 * through `app.request` on the in-process service over a real libSQL file.
 */
import { createClient } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { ALL_ROUTES } from "../../src/routes/api.ts";
import { createService } from "../../src/service.ts";
import { CRON_SECRET, type Harness, setStatus, startHarness, TX } from "../fixtures/server-harness.ts";
import { checkDeclaredReply } from "../helpers/declared-replies.ts";

/** The `/api/perf` item fields design.md requires (the seed PR's names). */
const PERF_FIELDS = [
  "name",
  "status",
  "rowsProcessed",
  "rowsTotal",
  "rate",
  "etaSeconds",
  "elapsedSeconds",
  "errorMessage",
  "startedAt",
  "endedAt",
  "lastUpdateAt",
];

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

// Every read sees the database as it is now (the cache is tested in cache.test.ts).
const fresh = { TRICKLE_SNAPSHOT_TTL_MS: "0" };

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

describe("GET /api/healthz", () => {
  it("has every contract field and lists the registered migration", async () => {
    h = await startHarness({ env: fresh });
    const res = await h.request("GET", "/api/healthz", { token: null });
    expect(res.status).toBe(200);
    const body = await json(res);
    // Registered and runnable but not started by a tick yet: it counts as running (the banner stays up).
    expect(body).toMatchObject({ ready: true, status: "migrating", async_migrations_running: true });
    expect(typeof body.snapshot_age_ms).toBe("number");
    expect("async_migrations_error" in body).toBe(false);
    const items = body.async_migrations as Record<string, unknown>[];
    expect(items.map((m) => m.name)).toEqual([TX]);
    for (const field of PERF_FIELDS) expect(items[0]).toHaveProperty(field);
    expect(items[0]?.status).toBe("pending");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  });

  it("counts pending only while nothing holds it back", async () => {
    h = await startHarness({ env: fresh });
    const body = async () => json(await h!.request("GET", "/api/healthz"));
    expect((await body()).async_migrations_running).toBe(true);
    await h.client.execute({
      sql: "UPDATE _async_migrations SET reason = 'waiting: table transmissions does not exist' WHERE name = ?",
      args: [TX],
    });
    expect((await body()).async_migrations_running).toBe(false);
  });

  it("counts running as running but not failed, and maps statuses it does not know to unknown", async () => {
    h = await startHarness({ env: fresh });
    const running = async () => {
      const body = await json(await h!.request("GET", "/api/healthz"));
      const item = (body.async_migrations as Record<string, unknown>[])[0]!;
      return { running: body.async_migrations_running, status: body.status, item };
    };
    await setStatus(h.client, TX, "running");
    expect(await running()).toMatchObject({
      running: true,
      status: "migrating",
      item: { status: "running" },
    });

    await setStatus(h.client, TX, "failed", "boom: disk on fire");
    expect(await running()).toMatchObject({
      running: false,
      status: "degraded",
      item: { status: "failed", errorMessage: "boom: disk on fire" },
    });

    for (const stored of ["pending_async", "garbage", "RUNNING", ""]) {
      await setStatus(h.client, TX, stored);
      expect(await running()).toMatchObject({
        running: false,
        item: { status: "unknown", errorMessage: null },
      });
    }
  });

  it("fails closed with 503 and an error while the state cannot be read, and recovers (errors not cached)", async () => {
    h = await startHarness({ env: fresh });
    await h.client.execute("ALTER TABLE _async_migrations RENAME TO moved_away");
    const res = await h.request("GET", "/api/healthz");
    expect(res.status).toBe(503);
    const body = await json(res);
    expect(body.ready).toBe(false);
    expect(body.async_migrations_running).toBe(true);
    expect(body.async_migrations_error).toMatch(/could not read migration state/);
    expect(Array.isArray(body.async_migrations)).toBe(true);

    const perf = await h.request("GET", "/api/perf");
    expect(perf.status).toBe(200);
    const perfBody = await json(perf);
    expect(Array.isArray(perfBody.asyncMigrations)).toBe(true);
    expect(perfBody.asyncMigrationsError).toMatch(/could not read/);
    expect(perf.headers.get("x-async-migrations-error")).toMatch(/could not read/);
    const metrics = await (await h.request("GET", "/metrics")).text();
    expect(metrics).toContain("trickle_state_read_error 1");

    await h.client.execute("ALTER TABLE moved_away RENAME TO _async_migrations");
    const again = await h.request("GET", "/api/healthz");
    expect(again.status).toBe(200);
    const recovered = await json(again);
    expect(recovered.async_migrations_running).toBe(true); // pending, about to run
    expect("async_migrations_error" in recovered).toBe(false);
  });

  it("fails closed when the client is closed", async () => {
    h = await startHarness({ env: fresh });
    const other = createClient({ url: h.db.url, intMode: "bigint" });
    const service = createService({ client: other, config: loadConfig(fresh), log: () => {} });
    await service.runner.init();
    other.close();
    const res = await service.app.request("/api/healthz");
    expect(res.status).toBe(503);
    const body = await json(res);
    expect(body).toMatchObject({ async_migrations_running: true, ready: false });
    expect(typeof body.async_migrations_error).toBe("string");
    await service.stop();
  });

  it("reports counters beyond 2^53 exactly, as decimal strings", async () => {
    h = await startHarness({ env: fresh });
    await h.client.execute({
      sql: "UPDATE _async_migrations SET rows_processed = ?, rows_total = ? WHERE name = ?",
      args: [2n ** 60n, 2n ** 62n + 1n, TX],
    });
    const body = await json(await h.request("GET", "/api/healthz"));
    const item = (body.async_migrations as Record<string, unknown>[])[0]!;
    expect(item.rowsProcessed).toBe("1152921504606846976");
    expect(item.rowsTotal).toBe("4611686018427387905");
  });
});

describe("GET /api/perf", () => {
  it("reports per-route request statistics, the snapshot age and the migrations array", async () => {
    h = await startHarness({ env: fresh });
    for (let i = 0; i < 3; i++) await h.request("GET", "/api/healthz");
    await h.request("GET", "/no/such/route");
    const res = await h.request("GET", "/api/perf");
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(typeof body.uptime).toBe("number");
    expect(body.totalRequests).toBe(4);
    expect(typeof body.snapshotAgeMs).toBe("number");
    const endpoints = body.endpoints as Record<string, Record<string, number>>;
    expect(endpoints["/api/healthz"]).toMatchObject({ count: 3 });
    for (const key of ["avgMs", "p50Ms", "p95Ms", "maxMs"])
      expect(typeof endpoints["/api/healthz"]?.[key]).toBe("number");
    expect(endpoints["(not found)"]).toMatchObject({ count: 1 });
    const items = body.asyncMigrations as Record<string, unknown>[];
    expect(items).toHaveLength(1);
    for (const field of PERF_FIELDS) expect(items[0]).toHaveProperty(field);
  });

  it("groups requests by route pattern, so memory does not grow with distinct paths", async () => {
    h = await startHarness({ env: fresh });
    for (let i = 0; i < 50; i++) await h.request("GET", `/api/migrations/name_${i}`);
    for (let i = 0; i < 50; i++) await h.request("GET", `/random/${i}`);
    const body = await json(await h.request("GET", "/api/perf"));
    expect(Object.keys(body.endpoints as object).sort()).toEqual(["(not found)", "/api/migrations/:name"]);
  });
});

describe("GET /api/tick", () => {
  it("is disabled without CRON_SECRET and refuses missing or wrong tokens", async () => {
    h = await startHarness({ env: { ...fresh, CRON_SECRET: "" } });
    expect((await h.request("GET", "/api/tick", { token: CRON_SECRET })).status).toBe(403);
    await h.cleanup();
    h = await startHarness({ env: fresh });
    for (const token of [null, "wrong", `${CRON_SECRET}x`, ""]) {
      const res = await h.request("GET", "/api/tick", { token });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    }
    const bad = await h.request("GET", "/api/tick?budgetMs=abc", { token: CRON_SECRET });
    expect(bad.status).toBe(400);
    expect(await json(bad)).toMatchObject({ field: "budgetMs" });
    expect((await h.request("GET", "/api/tick?budgetMs=0", { token: CRON_SECRET })).status).toBe(400);
  });

  it("refuses a budgetMs above the configured slice budget with a 400 naming the limit, and reports the budget used", async () => {
    h = await startHarness({ env: { ...fresh, TRICKLE_SLICE_BUDGET_MS: "300" }, transmissions: 50 });
    const before = await h.client.execute("SELECT * FROM _async_migrations");
    for (const method of ["GET", "POST"]) {
      const over = await h.request(method, "/api/tick?budgetMs=3000", { token: CRON_SECRET });
      expect(over.status, method).toBe(400);
      const b = await json(over);
      expect(b.field).toBe("budgetMs");
      expect(String(b.error)).toMatch(/at most 300\b.*TRICKLE_SLICE_BUDGET_MS/);
      expect((await h.request(method, "/api/tick?budgetMs=301", { token: CRON_SECRET })).status).toBe(400);
    }
    // Refused before the slice: nothing ran.
    expect((await h.client.execute("SELECT * FROM _async_migrations")).rows).toEqual(before.rows);

    const atLimit = await h.request("GET", "/api/tick?budgetMs=300", { token: CRON_SECRET });
    expect(atLimit.status).toBe(200);
    expect(await json(atLimit)).toMatchObject({ budgetMs: 300 });
    const below = await h.request("GET", "/api/tick?budgetMs=120", { token: CRON_SECRET });
    expect(await json(below)).toMatchObject({ budgetMs: 120 });
    const byDefault = await h.request("POST", "/api/tick", { token: CRON_SECRET });
    expect(await json(byDefault)).toMatchObject({ budgetMs: 300 });
  });

  it("runs a slice that really advances the backfill (GET and POST)", async () => {
    h = await startHarness({ env: fresh, transmissions: 3000 });
    const res = await h.request("GET", "/api/tick?budgetMs=500&x-vercel=1", { token: CRON_SECRET });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.steps as number).toBeGreaterThan(0);
    expect(body.rows as number).toBeGreaterThan(0);
    expect(body.outcomes).toEqual([{ name: TX, outcome: expect.any(String) }]);
    const after1 = await h.client.execute("SELECT rows_processed FROM _async_migrations");
    expect(Number(after1.rows[0]?.rows_processed)).toBe(body.rows);

    let done = false;
    for (let i = 0; i < 200 && !done; i++) {
      const r = await json(await h.request("POST", "/api/tick", { token: CRON_SECRET }));
      done = r.moreWork === false;
    }
    expect(done).toBe(true);
    const health = await json(await h.request("GET", "/api/healthz"));
    expect((health.async_migrations as Record<string, unknown>[])[0]).toMatchObject({
      status: "done",
      rowsProcessed: 3000,
      rowsTotal: 3000,
      percent: 100,
    });
    const left = await h.client.execute("SELECT COUNT(*) AS n FROM transmissions WHERE last_seen = 0");
    expect(Number(left.rows[0]?.n)).toBe(0);
  });
});

/** A small parser of the Prometheus text exposition format (0.0.4): throws on any malformed line. */
function parseExposition(text: string) {
  const types = new Map<string, string>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const sample = new RegExp(`^(${NAME})(\\{(.*)\\})? (\\S+)( -?\\d+)?$`);
  const labelPair = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/;
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      expect(line).toMatch(new RegExp(`^# HELP ${NAME} .+$`));
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
      if (!m) throw new Error(`bad TYPE line: ${line}`);
      expect(types.has(m[1]!)).toBe(false);
      types.set(m[1]!, m[2]!);
      continue;
    }
    const m = sample.exec(line);
    if (!m) throw new Error(`bad sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    let rest = m[3] ?? "";
    while (rest !== "") {
      const p = labelPair.exec(rest);
      if (!p) throw new Error(`bad labels in ${line}`);
      labels[p[1]!] = p[2]!;
      rest = rest.slice(p[0].length);
    }
    const raw = m[4]!;
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : raw === "NaN" ? NaN : Number(raw);
    if (!["+Inf", "-Inf", "NaN"].includes(raw) && !/^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(raw))
      throw new Error(`bad value in ${line}`);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, "");
    if (!types.has(m[1]!) && !types.has(family)) throw new Error(`sample without TYPE: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { types, samples };
}

describe("GET /metrics", () => {
  it("is well-formed Prometheus text with the documented families and a consistent histogram", async () => {
    h = await startHarness({ env: fresh, transmissions: 2000 });
    await h.service.tick(1000);
    await h.client.execute({
      sql: "UPDATE _async_migrations SET lease_owner = ? WHERE name = ?",
      args: ['odd "owner"\\ with\nnewline', TX],
    });
    const res = await h.request("GET", "/metrics", { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const { types, samples } = parseExposition(await res.text());
    for (const family of [
      "trickle_rows_processed",
      "trickle_rows_candidates",
      "trickle_batch_size",
      "trickle_migration_status",
      "trickle_lease_held",
      "trickle_eta_low_seconds",
      "trickle_eta_high_seconds",
    ])
      expect(types.get(family)).toBe("gauge");
    expect(types.get("trickle_step_duration_seconds")).toBe("histogram");
    expectConventions(types, samples);

    const statuses = samples.filter(
      (s) => s.name === "trickle_migration_status" && s.labels.migration === TX,
    );
    expect(statuses.filter((s) => s.value === 1)).toHaveLength(1);
    // Held, whoever holds it: no label that changes with each process.
    expect(samples.find((s) => s.name === "trickle_lease_held")).toMatchObject({
      labels: { migration: TX },
      value: 1,
    });

    const buckets = samples.filter((s) => s.name === "trickle_step_duration_seconds_bucket");
    expect(buckets.length).toBeGreaterThan(1);
    for (let i = 1; i < buckets.length; i++)
      expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    const count = samples.find((s) => s.name === "trickle_step_duration_seconds_count")!.value;
    expect(count).toBeGreaterThan(0);
    expect(buckets.at(-1)).toMatchObject({ labels: { le: "+Inf" }, value: count });
    const processed = samples.find((s) => s.name === "trickle_rows_processed")!.value;
    expect(processed).toBeGreaterThan(0);
  });
});

/**
 * Prometheus naming conventions: counters and only counters end in `_total`; no gauge carries a summary's
 * reserved `quantile` label; no series is labelled by process; the histogram has buckets at the step goals.
 */
function expectConventions(
  types: Map<string, string>,
  samples: { name: string; labels: Record<string, string>; value: number }[],
) {
  for (const [name, type] of types) expect(name.endsWith("_total"), name).toBe(type === "counter");
  for (const s of samples) {
    expect(s.labels, s.name).not.toHaveProperty("quantile");
    expect(s.labels, s.name).not.toHaveProperty("owner");
  }
  const les = samples
    .filter((s) => s.name === "trickle_step_duration_seconds_bucket")
    .map((s) => s.labels.le);
  expect(les).toEqual(expect.arrayContaining(["0.075", "0.15"]));
}

describe("GET /metrics during a run", () => {
  it("counts steps, rows and busy waits as _total counters that only grow", async () => {
    // A short busy timeout, so a write lock held elsewhere turns into retried steps at once.
    h = await startHarness({ env: fresh, transmissions: 3000, busyTimeoutMs: 20 });
    expect((await h.service.controls.tune(TX, { initialBatch: 100, maxBatch: 100 })).status).toBe("ok");
    const scrape = async () =>
      parseExposition(await (await h!.request("GET", "/metrics", { token: null })).text());
    const value = (samples: Awaited<ReturnType<typeof scrape>>["samples"], name: string, labels = {}) =>
      samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        ?.value;

    // Past the counting walk, into the data steps.
    let first = await scrape();
    while ((value(first.samples, "trickle_steps_total", { migration: TX }) ?? 0) === 0) {
      await h.service.tick(200);
      first = await scrape();
    }
    expectConventions(first.types, first.samples);
    for (const name of ["trickle_steps_total", "trickle_step_rows_total", "trickle_busy_waits_total"])
      expect(first.types.get(name), name).toBe("counter");
    const steps = value(first.samples, "trickle_steps_total", { migration: TX }) ?? 0;
    expect(steps).toBeGreaterThan(0);
    // Mid-run: the rows the steps processed are what the table says was processed.
    expect(value(first.samples, "trickle_step_rows_total", { migration: TX })).toBe(
      value(first.samples, "trickle_rows_processed", { migration: TX }),
    );

    // Another connection holds the write lock through a tick: its steps wait, and the waits are counted.
    const other = createClient({ url: `file:${h.db.path}` });
    const lock = await other.transaction("write");
    await lock.execute("UPDATE transmissions SET hash = hash WHERE id = 1");
    await h.service.tick(300);
    await lock.rollback();
    other.close();
    await h.service.tick(200);

    const second = await scrape();
    expectConventions(second.types, second.samples);
    expect(value(second.samples, "trickle_steps_total", { migration: TX })).toBeGreaterThan(steps);
    expect(value(second.samples, "trickle_busy_waits_total", { migration: TX })).toBeGreaterThan(0);
    const retries = second.samples.filter(
      (s) => s.name === "trickle_retries_total" && s.labels.migration === TX,
    );
    expect(retries.map((s) => s.labels.reason)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^SQLITE_BUSY/)]),
    );
  });
});

describe("GET /api/openapi.json", () => {
  it("is OpenAPI 3.1 and describes every route the app serves", async () => {
    h = await startHarness({ env: fresh });
    const doc = await json(await h.request("GET", "/api/openapi.json", { token: null }));
    expect(doc.openapi).toBe("3.1.0");
    const paths = doc.paths as Record<string, Record<string, unknown>>;
    const routes = h.service.app.routes.filter((r) => r.method !== "ALL");
    expect(routes.length).toBeGreaterThan(10);
    for (const route of routes) {
      const path = route.path.replace(/:([A-Za-z_]+)/g, "{$1}");
      expect(paths[path], `${route.method} ${route.path}`).toBeDefined();
      expect(paths[path]?.[route.method.toLowerCase()], `${route.method} ${route.path}`).toBeDefined();
    }
    // The tuning body schema comes from zod and is strict.
    const patch = paths["/api/migrations/{name}"]?.patch as {
      requestBody: { content: Record<string, { schema: Record<string, unknown> }> };
    };
    const schema = patch.requestBody.content["application/json"]!.schema;
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(schema.properties as object)).toEqual(
      expect.arrayContaining(["stepTargetMs", "yieldMs", "sliceBudgetMs"]),
    );
  });
});

describe("route declarations (src/routes/api.ts)", () => {
  it("are exactly the routes the app serves", async () => {
    h = await startHarness({ env: fresh });
    // One entry per handler of a route's chain in Hono's table: compare the distinct method and path pairs.
    const served = [
      ...new Set(h.service.app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path}`)),
    ].sort();
    const declared = ALL_ROUTES.flatMap((r) => r.methods.map((m) => `${m} ${r.path}`)).sort();
    expect(served).toEqual(declared);
  });

  it("catch an answer that breaks them: a wrong body, an undeclared status, a wrong content type", async () => {
    const answer = (status: number, body: unknown, type = "application/json") =>
      new Response(JSON.stringify(body), { status, headers: { "content-type": type } });
    const problem = { type: "about:blank", title: "Conflict", status: 409, detail: "x", error: "x" };
    await expect(checkDeclaredReply("GET", "/api/healthz", answer(200, { ready: "yes" }))).rejects.toThrow(
      /does not match its declaration/,
    );
    await expect(checkDeclaredReply("GET", "/api/healthz", answer(418, {}))).rejects.toThrow(/not declared/);
    await expect(checkDeclaredReply("GET", "/api/perf", answer(200, {}, "text/plain"))).rejects.toThrow(
      /content type/,
    );
    // A 409 must name the migration's status.
    const conflict = (body: object) => answer(409, body, "application/problem+json");
    await expect(checkDeclaredReply("POST", "/api/migrations/x/pause", conflict(problem))).rejects.toThrow(
      /migrationStatus/,
    );
    await checkDeclaredReply(
      "POST",
      "/api/migrations/x/pause",
      conflict({ ...problem, name: "x", migrationStatus: "done" }),
    );
  });
});

describe("UI and errors", () => {
  it("serves the status page and the banner script, and answers JSON 404s with secure headers", async () => {
    h = await startHarness({ env: fresh });
    const page = await h.request("GET", "/", { token: null });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await page.text()).toMatch(/<html/i);
    const banner = await h.request("GET", "/warmup-banner.js", { token: null });
    expect(banner.status).toBe(200);
    expect(banner.headers.get("content-type")).toMatch(/javascript/);
    expect(banner.headers.get("cross-origin-resource-policy")).toBe("cross-origin");
    const missing = await h.request("GET", "/nope", { token: null });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ status: 404, error: "not found" });
    expect(missing.headers.get("x-frame-options")).toBe("SAMEORIGIN");
  });
});
