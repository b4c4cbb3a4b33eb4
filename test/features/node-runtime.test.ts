/**
 * The operator features through the Node runtime (`tsx src/node.ts`, engine in a worker thread): the operator
 * variables reach the worker's runner (quiet hours hold it back, visibly, in /api/healthz), and a dry-run is
 * forwarded to the worker and comes back with its step, samples and projection, changing nothing.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  freePort,
  getJson,
  poll,
  type ServerProcess,
  startServerProcess,
  waitForExit,
} from "../fixtures/server-process.ts";
import { createCoreScopeSchema, insertCoreScopeRows, type TempDb, tempDb } from "../helpers/db.ts";
import { legacyTransmissions } from "../helpers/engine.ts";

const TOKEN = "node-admin-token-0123456789";
const TX = "tx_last_seen_backfill_v1";
let db: TempDb | undefined;
let server: ServerProcess | undefined;
afterEach(async () => {
  if (server && server.child.exitCode === null) {
    server.child.kill("SIGTERM");
    await waitForExit(server, 20_000).catch(() => undefined);
  }
  server = undefined;
  db?.cleanup();
  db = undefined;
});

/** A UTC window from an hour ago to an hour from now, as `HH:MM-HH:MM`. */
function windowAroundNow(): string {
  const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);
  return `${hhmm(Date.now() - 3_600_000)}-${hhmm(Date.now() + 3_600_000)}`;
}

describe("Node runtime", () => {
  it("passes the operator settings to the engine worker and forwards dry-runs to it", async () => {
    db = tempDb();
    const client = db.open();
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, legacyTransmissions(500));
    const port = await freePort();
    server = startServerProcess({
      port,
      env: {
        DATABASE_URL: db.url,
        PORT: String(port),
        ADMIN_TOKEN: TOKEN,
        TRICKLE_QUIET_HOURS: windowAroundNow(),
        TRICKLE_SNAPSHOT_TTL_MS: "100",
      },
    });
    const p = server;
    const held = await poll(async () => {
      const { body } = await getJson(p.url("/api/healthz"));
      const item = (body.async_migrations as { throttle: { reason: string } | null }[] | undefined)?.[0];
      return item?.throttle ? item : undefined;
    }, "the quiet-hours hold in /api/healthz");
    expect(held.throttle?.reason).toMatch(/^quiet hours \d\d:\d\d-\d\d:\d\d UTC/);

    const res = await fetch(p.url(`/api/migrations/${TX}/dry-run`), {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ batchSize: 50, tickIntervalMs: 30_000 }),
    });
    expect(res.status).toBe(200);
    const report = (await res.json()) as {
      rolledBack: boolean;
      step: { keys: number; rows: number };
      samples: { after: { last_seen: number } }[];
      projection: { schedule: { tickIntervalMs: number } };
    };
    expect(report).toMatchObject({ rolledBack: true, step: { keys: 50, rows: 50 } });
    expect(report.samples[0]?.after.last_seen).toBe(1001);
    expect(report.projection.schedule.tickIntervalMs).toBe(30_000);
    const untouched = await client.execute("SELECT COUNT(*) AS n FROM transmissions WHERE last_seen = 0");
    expect(Number(untouched.rows[0]?.n)).toBe(500);

    server.child.kill("SIGTERM");
    expect((await waitForExit(server, 20_000)).code).toBe(0);
  });

  it("refuses to start with a bad operator variable, naming it", async () => {
    db = tempDb();
    const port = await freePort();
    server = startServerProcess({
      port,
      env: { DATABASE_URL: db.url, PORT: String(port), TRICKLE_QUIET_HOURS: "25:00-26:00" },
    });
    const { code } = await waitForExit(server, 20_000);
    expect(code).toBe(1);
    expect(server.output()).toMatch(/TRICKLE_QUIET_HOURS: "25:00-26:00" must be a UTC window/);
  });
});
