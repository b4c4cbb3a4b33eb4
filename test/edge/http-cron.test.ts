/**
 * HTTP cron, as Vercel Cron (GET with `Authorization: Bearer $CRON_SECRET`) or a systemd timer running curl
 * (POST) drives it: the in-process service with NO timer loop of its own — like a serverless function, it only
 * works while a request runs — served over real HTTP on a real libSQL file. A whole backfill is driven through
 * `/api/tick` alone, one slice per call, until the answer says no work is left; the data then equals the seed's
 * one-shot statement. Without the secret, or with a wrong one, the tick is refused (401) and nothing moves;
 * without CRON_SECRET configured the route is off (403).
 */
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { createService, type Service } from "../../src/service.ts";
import { lastSeenById, type TempDb, tempDb } from "../helpers/db.ts";
import { rawStateRow } from "../helpers/engine.ts";
import { seededCoreScope } from "./helpers/smoke.ts";

const TX = "tx_last_seen_backfill_v1";
const CRON_SECRET = "cron-secret-0123456789abcdef";
const ADMIN_TOKEN = "admin-token-0123456789abcdef";

interface TickBody {
  steps: number;
  rows: number;
  outcomes: { name: string; outcome: string }[];
  moreWork: boolean;
}

let db: TempDb | undefined;
let service: Service | undefined;
let closeServer: (() => Promise<void>) | undefined;

afterEach(async () => {
  await closeServer?.();
  await service?.stop();
  db?.cleanup();
  closeServer = undefined;
  service = undefined;
  db = undefined;
});

/** Serves `service.app` on a random local port, like a function host would. */
async function serveOverHttp(app: Service["app"]): Promise<string> {
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) => {
      resolve(`http://127.0.0.1:${info.port}`);
    });
    closeServer = () =>
      new Promise<void>((done) => {
        server.close(() => done());
        if ("closeAllConnections" in server) server.closeAllConnections();
      });
  });
}

describe("HTTP cron: /api/tick drives a backfill with no scheduler in the process", () => {
  it("completes a CoreScope backfill through GET/POST /api/tick with the secret, and refuses without it", async () => {
    db = tempDb();
    const { local, oracle } = await seededCoreScope(db);
    const client = db.open({ timeout: 1000 });
    const config = loadConfig({
      CRON_SECRET,
      ADMIN_TOKEN,
      TRICKLE_SLICE_BUDGET_MS: "100",
      TRICKLE_YIELD_MS: "0",
    });
    service = createService({ client, config, log: () => {} }); // never started: no timer loop
    const base = await serveOverHttp(service.app);

    // The state table exists after the first call of any kind; cap the batches so the run takes many ticks.
    await service.runner.init();
    const tuned = await fetch(`${base}/api/migrations/${TX}`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ initialBatch: 5, maxBatch: 5 }),
    });
    expect(tuned.status).toBe(200);

    // Refused: no secret, a wrong one, a malformed header. Nothing moves.
    for (const authorization of [undefined, "Bearer wrong-secret-0123456789", CRON_SECRET]) {
      const response = await fetch(`${base}/api/tick`, {
        headers: authorization === undefined ? {} : { authorization },
      });
      expect(response.status, String(authorization)).toBe(401);
    }
    expect((await rawStateRow(local, TX))?.status).toBe("pending");

    const ticks: TickBody[] = [];
    for (let call = 0; call < 500; call++) {
      // Vercel Cron sends GET; a systemd timer's `curl -X POST` is the other shape.
      const response = await fetch(`${base}/api/tick`, {
        method: call % 3 === 2 ? "POST" : "GET",
        headers: { authorization: `Bearer ${CRON_SECRET}`, "user-agent": "vercel-cron/1.0" },
      });
      expect(response.status).toBe(200);
      expect(response.headers.get("cache-control")).toBe("no-store");
      const body = (await response.json()) as TickBody;
      ticks.push(body);
      if (!body.moreWork) break;
    }
    const last = ticks.at(-1);
    expect(last?.moreWork).toBe(false);
    expect(last?.outcomes).toContainEqual({ name: TX, outcome: "done" });
    expect(ticks.length).toBeGreaterThanOrEqual(3);

    const state = await rawStateRow(local, TX);
    expect(state?.status).toBe("done");
    // The ticks' own accounting adds up to the run's: every step happened inside some tick.
    expect(ticks.reduce((sum, t) => sum + t.steps, 0)).toBe(Number(state?.steps));
    expect(ticks.reduce((sum, t) => sum + t.rows, 0)).toBe(Number(state?.rows_processed));
    expect(await lastSeenById(local)).toEqual(oracle);

    const health = (await (await fetch(`${base}/api/healthz`)).json()) as {
      async_migrations_running: boolean;
    };
    expect(health.async_migrations_running).toBe(false);
  });

  it("answers 403 when CRON_SECRET is not configured", async () => {
    db = tempDb();
    service = createService({ client: db.open(), config: loadConfig({}), log: () => {} });
    const base = await serveOverHttp(service.app);
    const response = await fetch(`${base}/api/tick`, { headers: { authorization: `Bearer ${CRON_SECRET}` } });
    expect(response.status).toBe(403);
  });
});
