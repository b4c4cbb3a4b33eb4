/**
 * The Node entry as `npm start` runs it (`tsx src/node.ts`) in real child processes: graceful shutdown in the
 * middle of a backfill (lease released, restart continues at once), start-up on an empty directory with no
 * configuration, and configuration errors.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { seedCoreScope } from "../../src/seed/corescope.ts";
import {
  freePort,
  getJson,
  poll,
  type ServerProcess,
  startServerProcess,
  waitForExit,
} from "../fixtures/server-process.ts";

const TX = "tx_last_seen_backfill_v1";
const CRON = "cron-secret-for-the-node-test";

const dirs: string[] = [];
const children: ServerProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0))
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "trickle-node-"));
  dirs.push(dir);
  return dir;
}

async function stateRow(url: string) {
  const client = createClient({ url, intMode: "bigint" });
  try {
    const r = await client.execute({
      sql: "SELECT status, rows_processed, rows_total, lease_owner FROM _async_migrations WHERE name = ?",
      args: [TX],
    });
    return r.rows[0];
  } finally {
    client.close();
  }
}

describe("npm start (tsx src/node.ts)", () => {
  it("stops gracefully on SIGTERM mid-backfill, releasing the lease, and a restart continues at once", async () => {
    const dir = tempDir();
    const url = `file:${join(dir, "corescope.db")}`;
    const seeding = createClient({ url, intMode: "bigint" });
    await seeding.execute("PRAGMA journal_mode=WAL");
    await seedCoreScope(seeding, {
      transmissions: 10_000,
      observations: 20_000,
      legacyFraction: 0.9,
      seed: 7,
    });
    seeding.close();

    const env = {
      DATABASE_URL: url,
      CRON_SECRET: CRON,
      // Small steps with long pauses: the backfill (counting, then the data walk) takes many seconds, so
      // SIGTERM lands in the middle.
      TRICKLE_STEP_TARGET_MS: "1",
      TRICKLE_YIELD_MS: "100",
      TRICKLE_TICK_MS: "100",
      // A lease that outlives the test: the restart can only continue if the first process released it.
      TRICKLE_LEASE_TTL_MS: "600000",
    };
    const port = await freePort();
    const first = startServerProcess({ env: { ...env, PORT: String(port) }, port });
    children.push(first);
    const base = `http://127.0.0.1:${port}`;

    // /api/healthz answers while the backfill runs in the worker.
    const running = await poll(
      async () => {
        const { status, body } = await getJson(`${base}/api/healthz`);
        const item = (body.async_migrations as Record<string, unknown>[])[0];
        return status === 200 && item?.status === "running" && Number(item.rowsProcessed) > 0
          ? body
          : undefined;
        // Sized by progress: the count comes first and may take a while on a busy machine.
      },
      "the backfill to run",
      { timeoutMs: 180_000 },
    );
    expect(running.async_migrations_running).toBe(true);

    // The HTTP tick is forwarded to the worker and answers what it did.
    const tick = await getJson(`${base}/api/tick?budgetMs=200`, { authorization: `Bearer ${CRON}` });
    expect(tick.status).toBe(200);
    expect(tick.body).toMatchObject({ moreWork: true, outcomes: [{ name: TX }] });
    expect((await fetch(`${base}/api/tick`)).status).toBe(401);

    first.child.kill("SIGTERM");
    const exit = await waitForExit(first, 15_000);
    expect(exit, first.output()).toEqual({ code: 0, signal: null });
    expect(first.output()).toMatch(/SIGTERM received/);

    const stopped = await stateRow(url);
    expect(stopped?.lease_owner).toBeNull();
    expect(stopped?.status).toBe("running");
    const processed = stopped?.rows_processed as bigint;
    expect(processed).toBeGreaterThan(0n);
    expect(processed).toBeLessThan(stopped?.rows_total as bigint);

    const secondPort = await freePort();
    const second = startServerProcess({ env: { ...env, PORT: String(secondPort) }, port: secondPort });
    children.push(second);
    await poll(async () => {
      const row = await stateRow(url);
      return (row?.rows_processed as bigint) > processed ? row : undefined;
    }, "the restarted server to continue the backfill");
    second.child.kill("SIGTERM");
    expect(await waitForExit(second, 15_000)).toEqual({ code: 0, signal: null });
    expect((await stateRow(url))?.lease_owner).toBeNull();
  }, 300_000);

  it("starts with no configuration in an empty directory: data/trickle.db, healthy, migration waiting", async () => {
    const cwd = tempDir();
    const port = await freePort();
    // PORT is the only variable (the default 8787 may be taken on a shared test machine).
    const server = startServerProcess({ env: { PORT: String(port) }, cwd, port });
    children.push(server);
    // The first slice records why the migration waits; poll until it has.
    const health = await poll(async () => {
      const r = await getJson(server.url("/api/healthz"));
      const waiting = (r.body.async_migrations as Record<string, unknown>[] | undefined)?.[0]?.reason;
      return r.status === 200 && waiting ? r.body : undefined;
    }, "healthz with the waiting reason");
    expect(existsSync(join(cwd, "data", "trickle.db"))).toBe(true);
    expect(health).toMatchObject({ ready: true, async_migrations_running: false });
    const item = (health.async_migrations as Record<string, unknown>[])[0];
    expect(item).toMatchObject({ name: TX, status: "pending" });
    expect(String(item?.reason)).toMatch(/waiting: table transmissions/);
    expect((await fetch(server.url("/api/migrations"))).status).toBe(403);
    server.child.kill("SIGINT");
    expect(await waitForExit(server, 15_000)).toEqual({ code: 0, signal: null });
  });

  it("exits 1 on bad configuration, naming the variable and never printing a secret", async () => {
    const cwd = tempDir();
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ PORT: "eighty" }, /PORT must be a TCP port number/],
      [{ ADMIN_TOKEN: "has a-secret-value" }, /ADMIN_TOKEN must not contain whitespace/],
      [{ TRICKLE_MIGRATIONS: "no_such_v1" }, /TRICKLE_MIGRATIONS: unknown migration no_such_v1/],
      [{ DATABASE_URL: "postgres://user:pw@host/db" }, /DATABASE_URL has unsupported scheme/],
    ];
    for (const [env, message] of cases) {
      const p = startServerProcess({ env, cwd, port: 0 });
      children.push(p);
      const exit = await waitForExit(p, 20_000);
      expect(exit.code, p.output()).toBe(1);
      expect(p.output()).toMatch(message);
      expect(p.output()).not.toContain("a-secret-value");
      expect(p.output()).not.toContain("user:pw");
    }
  });
});
