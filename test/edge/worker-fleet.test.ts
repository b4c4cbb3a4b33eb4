/**
 * A Worker that advances a fleet (`TRICKLE_FLEET`, src/worker/fleet-worker.ts, src/fleet/cron.ts), in workerd via
 * `wrangler dev`: four CoreScope tenants, each behind its own Hrana test server, plus one URL where nothing
 * listens. Each cron invocation's budget holds about two tenants' turns (two at a time), so the tenants must take
 * turns:
 * - every reachable tenant advances within the first invocations (least recently advanced first), and repeated
 *   invocations bring each one to done, its data equal to the seed's one-shot statement on a copy;
 * - the unreachable tenant is reported — in every invocation's log line and as `unreachable` on `/api/fleet` —
 *   and holds up nobody;
 * - `/api/healthz` adds the migration up over the fleet: four of five tenants done, one unreachable.
 */
import { createServer } from "node:net";
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { loadSettings } from "../../src/config.ts";
import { createControls } from "../../src/engine/engine.ts";
import { Runner } from "../../src/engine/runner.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import { seedCoreScope } from "../../src/seed/corescope.ts";
import { lastSeenById, oneShotResult, type TempDb, tempDb } from "../helpers/db.ts";
import { rawStateRow } from "../helpers/engine.ts";
import { type HranaServer, startHranaServer } from "../hrana/server.ts";
import { sleep, stopAllChildren, tail } from "./helpers/child.ts";
import { startWranglerDev, type WranglerDev } from "./helpers/wrangler.ts";

const TX = "tx_last_seen_backfill_v1";
const DB_TOKEN = "hrana-fleet-token-0123456789";
const TENANTS = 4;

let dbs: TempDb[] = [];
let servers: HranaServer[] = [];
let worker: WranglerDev | undefined;

afterEach(async () => {
  await worker?.stop();
  await stopAllChildren();
  await Promise.all(servers.map((s) => s.close()));
  for (const db of dbs) db.cleanup();
  worker = undefined;
  servers = [];
  dbs = [];
});

/** A local port nothing listens on (taken from the OS, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

interface FleetBody {
  summary: { total: number; done: number; unreachable: number; running: number; pending: number };
  tenants: Array<{ database: string; status: string; detail: string | null }>;
}

describe("Cloudflare Workers: a cron that advances a fleet of libSQL databases", () => {
  it("gives every tenant turns until all are done, reporting the unreachable one without waiting for it", async () => {
    const clients: Client[] = [];
    const oracles: string[][] = [];
    for (let i = 0; i < TENANTS; i++) {
      const db = tempDb(`tenant-${i}.db`);
      dbs.push(db);
      const client = db.open();
      clients.push(client);
      await seedCoreScope(client, {
        transmissions: 600,
        observations: 1800,
        legacyFraction: 0.8,
        seed: 20 + i,
      });
      oracles.push(await oneShotResult(client, db));
      // Small batches (an operator's live tuning, as PATCH /api/migrations/:name stores it), so every tenant needs
      // many steps and several turns.
      await new Runner({ client, migrations: [txLastSeenBackfillV1] }).init();
      const controls = createControls({
        client,
        settings: loadSettings({}),
        migrations: [txLastSeenBackfillV1],
        source: "test",
      });
      expect((await controls.tune(TX, { initialBatch: 10, maxBatch: 25 })).status).toBe("ok");
      servers.push(await startHranaServer({ dbPath: db.path, authToken: DB_TOKEN }));
    }
    const missing = `http://127.0.0.1:${await closedPort()}`;
    const fleet = ["# the tenants", ...servers.map((s) => s.url), "", missing].join("\n");

    worker = await startWranglerDev({
      label: "wrangler dev (fleet)",
      secrets: { TRICKLE_FLEET: fleet, DATABASE_AUTH_TOKEN: DB_TOKEN },
      vars: {
        // Two at a time, each turn at least MIN_SHARE_MS (500), a turn starts while half a share is left: the
        // budget holds one round of two turns.
        TRICKLE_SLICE_BUDGET_MS: "650",
        TRICKLE_FLEET_CONCURRENCY: "2",
        TRICKLE_LEASE_TTL_MS: "10000",
        TRICKLE_YIELD_MS: "0",
        TRICKLE_SNAPSHOT_TTL_MS: "0",
      },
    });
    const w = worker;

    // Invocations until every reachable tenant is done, bounded by progress: it fails only when no tenant moved
    // for 100 invocations. `advancedBy[i]`: the invocation in which tenant i first moved.
    const progress = async () =>
      Promise.all(
        clients.map(async (c) => {
          const row = await rawStateRow(c, TX);
          return `${row?.status} ${row?.phase} ${row?.scan_cursor} ${row?.rows_processed}`;
        }),
      );
    const initial = await progress();
    const advancedBy: (number | undefined)[] = new Array(TENANTS).fill(undefined);
    let last = initial.join("|");
    let invocations = 0;
    for (let still = 0; still < 100; still++) {
      const response = await w.scheduled();
      expect(response.status, tail(w.child.output())).toBe(200);
      invocations++;
      const now = await progress();
      for (let i = 0; i < TENANTS; i++)
        if (advancedBy[i] === undefined && now[i] !== initial[i]) advancedBy[i] = invocations;
      if (now.every((p) => p.startsWith("done "))) break;
      if (now.join("|") !== last) still = 0;
      last = now.join("|");
    }
    const states = await Promise.all(clients.map((c) => rawStateRow(c, TX)));
    expect(
      states.map((s) => s?.status),
      tail(w.child.output()),
    ).toEqual(new Array(TENANTS).fill("done"));

    // Taking turns: the budget holds two turns, so the first invocation could not reach every tenant; yet every
    // tenant moved within the first few invocations (least recently advanced first: the next invocation serves
    // the tenants the last one did not reach, or whose turn was spent starting their run), and the whole fleet
    // needed several of them.
    const firstLine = w.child
      .output()
      .split("\n")
      .find((l) => l.includes("trickle: fleet cron"));
    expect(firstLine).toMatch(/\b2 not-reached\b/);
    expect(invocations).toBeGreaterThanOrEqual(2); // the first left two tenants for the next one
    expect(Math.max(...advancedBy.map((n) => n ?? Number.POSITIVE_INFINITY))).toBeLessThanOrEqual(4);

    // Every tenant equals the one-shot statement on its own data, and its count is exact.
    for (const [i, client] of clients.entries()) {
      expect(await lastSeenById(client), `tenant ${i}`).toEqual(oracles[i]);
      expect(states[i]?.rows_processed).toBe(states[i]?.rows_total);
      expect(states[i]?.lease_owner).toBeNull();
    }

    // Once all are done, an invocation costs one look at each tenant and does nothing else.
    expect((await w.scheduled()).status).toBe(200);
    invocations++;
    // One log line per invocation, each naming the unreachable tenant (the last one may still be on its way
    // through wrangler's output).
    const logLines = () =>
      w.child
        .output()
        .split("\n")
        .filter((l) => l.includes("trickle: fleet cron"));
    for (let wait = 0; wait < 200 && logLines().length < invocations; wait++) await sleep(50);
    const lines = logLines();
    expect(lines.length).toBe(invocations);
    for (const line of lines) expect(line).toContain(`${missing}/ unreachable: `);
    expect(lines.at(-1)).toMatch(/: 5 tenants \(4 done, 1 unreachable\); 0 steps, 0 rows in/);

    // /api/fleet from the Worker: four done, one unreachable (its read is cached a few seconds per isolate).
    let body: FleetBody | undefined;
    for (let attempt = 0; attempt < 100; attempt++) {
      const response = await w.fetch("/api/fleet");
      expect(response.status).toBe(200);
      body = (await response.json()) as FleetBody;
      if (body.summary.done === TENANTS) break;
      await sleep(250);
    }
    expect(body?.summary).toMatchObject({ total: TENANTS + 1, done: TENANTS, unreachable: 1 });
    expect(body?.tenants.find((t) => t.status === "unreachable")?.database).toBe(`${missing}/`);
    expect(JSON.stringify(body)).not.toContain(DB_TOKEN);

    // The read routes add the migration up over the fleet: not done while one tenant cannot be reached.
    const health = (await (await w.fetch("/api/healthz")).json()) as {
      async_migrations: Array<{ name: string; status: string; reason: string | null; rowsProcessed: number }>;
    };
    const item = health.async_migrations.find((m) => m.name === TX);
    expect(item?.status).toBe("running");
    expect(item?.reason).toBe(`${TENANTS} of ${TENANTS + 1} tenants done, 1 unreachable`);
    expect(item?.rowsProcessed).toBe(states.reduce((sum, s) => sum + Number(s?.rows_processed), 0));
    expect(w.child.output()).not.toMatch(/Cannot perform I\/O on behalf of a different request/);
  }, 600_000);
});
