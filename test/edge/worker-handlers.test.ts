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

  it("ignores bindings that are not strings (KV namespaces, JSON vars)", async () => {
    const worker = createWorker();
    const env = { DATABASE_URL: "https://db.example.com", SOME_KV: { get: () => null }, JSON_VAR: { a: 1 } };
    const response = await worker.fetch(new Request("http://worker/api/openapi.json"), env, ctx);
    expect(response.status).not.toBe(500);
  });
});
