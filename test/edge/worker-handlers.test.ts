/**
 * The Workers handlers' configuration errors, run in Node (the handlers are portable): each names the variable
 * at fault, none repeats a secret or the database URL, `fetch` answers them as a JSON 500 and `scheduled`
 * rejects (so the cron event shows as failed). The Worker's own default slice budget (15 s) is the one the
 * lease check sees when `TRICKLE_SLICE_BUDGET_MS` is unset.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createWorker, type WorkerContext, type WorkerEnv } from "../../src/worker/handlers.ts";

const ctx: WorkerContext = {
  waitUntil: () => {},
  passThroughOnException: () => {},
  props: {},
};
const SECRET = "very-secret-value-0123456789";

beforeEach(() => {
  vi.spyOn(console, "error").mockImplementation(() => {});
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function fetchError(env: WorkerEnv): Promise<string> {
  const response = await createWorker().fetch(new Request("http://worker/api/healthz"), env, ctx);
  expect(response.status).toBe(500);
  const body = (await response.json()) as { error: string };
  expect(body.error).toMatch(/^trickle is misconfigured: /);
  return body.error;
}

describe("Workers handlers: configuration errors", () => {
  it("requires a remote DATABASE_URL and says which schemes work", async () => {
    expect(await fetchError({})).toMatch(/DATABASE_URL is required on Cloudflare Workers/);
    expect(await fetchError({ DATABASE_URL: "file:data/trickle.db" })).toMatch(
      /DATABASE_URL: file: databases cannot be opened on Cloudflare Workers/,
    );
    expect(await fetchError({ DATABASE_URL: "ftp://db.example.com" })).toMatch(
      /DATABASE_URL has unsupported scheme "ftp:"/,
    );
    expect(await fetchError({ DATABASE_URL: "not a url" })).toMatch(/DATABASE_URL must start with one of/);
  });

  it("names the bad variable without repeating secrets or the URL", async () => {
    const env = {
      DATABASE_URL: `libsql://db.example.com?authToken=${SECRET}`,
      DATABASE_AUTH_TOKEN: SECRET,
      CRON_SECRET: SECRET,
      TRICKLE_SLICE_BUDGET_MS: "soon",
    };
    const message = await fetchError(env);
    expect(message).toMatch(/TRICKLE_SLICE_BUDGET_MS/);
    expect(message).not.toContain(SECRET);
    expect(message).not.toContain("db.example.com");
    await expect(
      createWorker().scheduled({ cron: "* * * * *", scheduledTime: Date.now() }, env, ctx),
    ).rejects.toThrow(/TRICKLE_SLICE_BUDGET_MS/);
  });

  it("defaults the slice budget to 15 s, so a lease must outlive that", async () => {
    const message = await fetchError({
      DATABASE_URL: "https://db.example.com",
      TRICKLE_LEASE_TTL_MS: "10000",
    });
    expect(message).toMatch(
      /TRICKLE_LEASE_TTL_MS \(10000\) must be greater than TRICKLE_SLICE_BUDGET_MS \(15000\)/,
    );
  });

  it("DATABASE_BINDING: names a D1 binding that must exist and be a D1 database, never with DATABASE_URL", async () => {
    expect(await fetchError({ DATABASE_BINDING: "DB" })).toMatch(
      /^trickle is misconfigured: DATABASE_BINDING: this Worker has no binding named "DB"; add a \[\[d1_databases\]\] block/,
    );
    expect(await fetchError({ DATABASE_BINDING: "DB", DB: { get: () => null } })).toMatch(
      /DATABASE_BINDING: the binding "DB" is not a D1 database/,
    );
    expect(await fetchError({ DATABASE_BINDING: "DB", DB: "a string var" })).toMatch(
      /DATABASE_BINDING: the binding "DB" is not a D1 database/,
    );
    expect(await fetchError({ DATABASE_BINDING: "libsql://db.example.com" })).toMatch(
      /^trickle is misconfigured: DATABASE_BINDING must be the name of a D1 binding/,
    );
    const both = await fetchError({
      DATABASE_BINDING: "DB",
      DATABASE_URL: `libsql://db.example.com?authToken=${SECRET}`,
    });
    expect(both).toMatch(
      /^trickle is misconfigured: DATABASE_BINDING and DATABASE_URL are both set; set one/,
    );
    expect(both).not.toContain(SECRET);
    // A D1 binding (anything with prepare() and batch()) is accepted: the app answers.
    const d1 = { prepare: () => ({}), batch: async () => [], exec: async () => ({}) };
    const response = await createWorker().fetch(
      new Request("http://worker/api/openapi.json"),
      { DATABASE_BINDING: "DB", DB: d1 },
      ctx,
    );
    expect(response.status).toBe(200);
  });

  it("TRICKLE_FLEET: remote URLs one per line, never with a single database, with a bounded concurrency", async () => {
    expect(await fetchError({ TRICKLE_FLEET: "# nothing yet" })).toMatch(
      /^trickle is misconfigured: TRICKLE_FLEET: lists no database/,
    );
    expect(await fetchError({ TRICKLE_FLEET: "https://a.example.com\nfile:tenant.db" })).toMatch(
      /^trickle is misconfigured: TRICKLE_FLEET: line 2: the URL is a file: database, which a Worker cannot open/,
    );
    const duplicate = await fetchError({
      TRICKLE_FLEET: `https://a.example.com?authToken=${SECRET}\nhttps://a.example.com?authToken=${SECRET}`,
    });
    expect(duplicate).toMatch(/TRICKLE_FLEET: line 2: https:\/\/a\.example\.com\/ is listed twice/);
    expect(duplicate).not.toContain(SECRET);
    expect(
      await fetchError({ TRICKLE_FLEET: "https://a.example.com", DATABASE_URL: "https://b.example.com" }),
    ).toMatch(/TRICKLE_FLEET and DATABASE_URL are both set; a Worker advances one database/);
    expect(await fetchError({ TRICKLE_FLEET: "https://a.example.com", DATABASE_BINDING: "DB" })).toMatch(
      /TRICKLE_FLEET and DATABASE_BINDING are both set/,
    );
    expect(
      await fetchError({ TRICKLE_FLEET: "https://a.example.com", TRICKLE_FLEET_CONCURRENCY: "7" }),
    ).toMatch(/TRICKLE_FLEET_CONCURRENCY must be at most 6/);
    expect(
      await fetchError({ DATABASE_URL: "https://a.example.com", TRICKLE_FLEET_CONCURRENCY: "2" }),
    ).toMatch(/TRICKLE_FLEET_CONCURRENCY is set but TRICKLE_FLEET is not/);
    // A good list: the app answers, and the control API has no migration of its own.
    const env = {
      TRICKLE_FLEET: "# tenants\nhttps://a.example.com\n\nhttps://b.example.com\n",
      ADMIN_TOKEN: SECRET,
    };
    const worker = createWorker();
    expect((await worker.fetch(new Request("http://worker/api/openapi.json"), env, ctx)).status).toBe(200);
    const list = await worker.fetch(
      new Request("http://worker/api/migrations", { headers: { authorization: `Bearer ${SECRET}` } }),
      env,
      ctx,
    );
    expect(await list.json()).toEqual({ migrations: [] });
  });

  it("ignores bindings that are not strings (KV namespaces, JSON vars)", async () => {
    const worker = createWorker();
    const env = { DATABASE_URL: "https://db.example.com", SOME_KV: { get: () => null }, JSON_VAR: { a: 1 } };
    const response = await worker.fetch(new Request("http://worker/api/openapi.json"), env, ctx);
    expect(response.status).not.toBe(500);
  });
});
