/**
 * The Cloudflare Worker on a D1 binding, in workerd via `wrangler dev`, against wrangler's local D1 — D1's real
 * implementation, kept under `--persist-to` (test/edge/fixtures/wrangler-d1.toml: `[[d1_databases]]` bound as
 * `DB`, `DATABASE_BINDING = "DB"`). Data sets are built in libSQL files with the usual helpers and loaded with
 * `wrangler d1 execute --local` (test/edge/helpers/d1.ts).
 * - CoreScope: cron invocations (`/cdn-cgi/handler/scheduled`) with a small slice budget advance the backfill
 *   over many invocations until `/api/healthz` says done; `/api/perf` shows it running with a rising count on
 *   the way; `/api/healthz`, `/api/perf` and the control API (`/api/migrations`, Bearer `ADMIN_TOKEN`) answer
 *   from the binding; the dry-run answers 409 (D1 has no interactive transactions); and every row read back
 *   from D1 equals the seed's one-shot statement run on the same data in a libSQL file.
 * - Overlapping cron invocations: two scheduled events fired at once, again and again, against a non-idempotent
 *   migration (`n = n + 1`): the two slices take the lease from each other and the fence stops the one that
 *   lost it, so every row ends with n = 1 and `rows_processed` is exact.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { seedCoreScope } from "../../src/seed/corescope.ts";
import { lastSeenById, oneShotResult, type TempDb, tempDb } from "../helpers/db.ts";
import { createCounterTable } from "../helpers/engine.ts";
import { stopAllChildren, tail } from "./helpers/child.ts";
import { d1Rows, loadIntoD1 } from "./helpers/d1.ts";
import { D1_CONFIG, startWranglerDev, type WranglerDev } from "./helpers/wrangler.ts";

const TX = "tx_last_seen_backfill_v1";
const COUNTER = "edge_counter_v1";
const ADMIN_TOKEN = "admin-token-0123456789abcdef";

interface PerfItem {
  name: string;
  status: string;
  rowsProcessed: number;
  rowsTotal: number;
  phase: string | null;
  phaseCursor: number | string | null;
}

let db: TempDb | undefined;
let persistTo: string | undefined;
let worker: WranglerDev | undefined;

afterEach(async () => {
  await worker?.stop();
  await stopAllChildren();
  db?.cleanup();
  if (persistTo) rmSync(persistTo, { recursive: true, force: true });
  worker = undefined;
  db = undefined;
  persistTo = undefined;
});

async function perfItem(w: WranglerDev, name: string): Promise<PerfItem | undefined> {
  const response = await w.fetch("/api/perf");
  expect(response.status, tail(w.child.output())).toBe(200);
  const body = (await response.json()) as { asyncMigrations: PerfItem[] };
  return body.asyncMigrations.find((m) => m.name === name);
}

const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };

/**
 * Caps the batch size through the control API, so a run takes many steps and invocations. The first invocation
 * creates the state table (on D1, as on any database), so it runs before.
 */
async function capBatches(w: WranglerDev, name: string, maxBatch: number): Promise<void> {
  const response = await w.fetch(`/api/migrations/${name}`, {
    method: "PATCH",
    headers: admin,
    body: JSON.stringify({ initialBatch: 10, maxBatch }),
  });
  expect(response.status, await response.clone().text()).toBe(200);
}

/**
 * Fires `invoke` until `name` is done. Bounded by progress, not by a count: it fails only when nothing moved for
 * 200 rounds (a loaded machine may fit a single step into a round).
 */
async function untilDone(
  w: WranglerDev,
  name: string,
  invoke: () => Promise<void>,
  seen: PerfItem[] = [],
): Promise<number> {
  let last = "";
  let rounds = 0;
  for (let still = 0; still < 200; still++) {
    await invoke();
    rounds++;
    const item = await perfItem(w, name);
    if (item) seen.push(item);
    if (item?.status === "done") return rounds;
    const now = `${item?.status} ${item?.phase} ${item?.phaseCursor} ${item?.rowsProcessed}`;
    if (now !== last) still = 0;
    last = now;
  }
  throw new Error(`${name} did not move in 200 rounds:\n${tail(w.child.output())}`);
}

async function scheduled(w: WranglerDev): Promise<void> {
  const response = await w.scheduled();
  expect(response.status, tail(w.child.output())).toBe(200);
}

describe("Cloudflare Workers on a D1 binding (wrangler dev, local D1)", () => {
  it("backfills CoreScope through cron invocations to the one-shot's result, the status routes serving from D1", async () => {
    db = tempDb();
    persistTo = mkdtempSync(join(tmpdir(), "trickle-d1-state-"));
    const local = db.open();
    await seedCoreScope(local, { transmissions: 1500, observations: 6000, legacyFraction: 0.8, seed: 7 });
    const oracle = await oneShotResult(local, db);
    expect(await lastSeenById(local)).not.toEqual(oracle); // there is work to do
    const orphans = await local.execute(
      "SELECT COUNT(*) AS n FROM transmissions t WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.transmission_id = t.id)",
    );
    expect(Number(orphans.rows[0]?.n)).toBeGreaterThan(0); // transmissions without observations, too
    await loadIntoD1(local, ["transmissions", "observations"], db.dir, persistTo);

    worker = await startWranglerDev({
      label: "wrangler dev (D1)",
      config: D1_CONFIG,
      persistTo,
      secrets: { ADMIN_TOKEN },
      vars: {
        TRICKLE_SLICE_BUDGET_MS: "150",
        TRICKLE_LEASE_TTL_MS: "10000",
        TRICKLE_YIELD_MS: "0",
        TRICKLE_SNAPSHOT_TTL_MS: "0",
      },
    });
    const w = worker;

    // No invocation yet, so no state table in D1: the read routes fail closed.
    const early = await w.fetch("/api/healthz");
    expect(early.status).toBe(503);
    const earlyBody = (await early.json()) as {
      async_migrations_running: boolean;
      async_migrations_error?: string;
    };
    expect(earlyBody.async_migrations_running).toBe(true);
    expect(earlyBody.async_migrations_error).toMatch(/could not read migration state/);

    await scheduled(w);
    await capBatches(w, TX, 40);
    const seen: PerfItem[] = [];
    const invocations = 1 + (await untilDone(w, TX, () => scheduled(w), seen));

    // Several invocations (how many depends on the machine's speed: slices are time-budgeted), with visible
    // progress along the way that never went backwards.
    expect(invocations).toBeGreaterThanOrEqual(2);
    const last = seen.at(-1);
    expect(last?.rowsProcessed).toBe(last?.rowsTotal);
    const running = seen.filter((m) => m.status === "running");
    expect(new Set(running.map((m) => m.rowsProcessed)).size).toBeGreaterThanOrEqual(1);
    const counts = seen.map((m) => m.rowsProcessed);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));

    // The status routes, served from the binding.
    const health = await w.fetch("/api/healthz");
    expect(health.status).toBe(200);
    const healthBody = (await health.json()) as {
      ready: boolean;
      async_migrations_running: boolean;
      async_migrations: Array<{ name: string; status: string }>;
    };
    expect(healthBody.async_migrations_running).toBe(false);
    expect(healthBody.async_migrations.find((m) => m.name === TX)?.status).toBe("done");
    expect((await w.fetch("/api/migrations")).status).toBe(401);
    const list = await w.fetch("/api/migrations", { headers: admin });
    expect(list.status).toBe(200);
    const listBody = (await list.json()) as { migrations: Array<{ name: string; status: string }> };
    expect(listBody.migrations.find((m) => m.name === TX)?.status).toBe("done");
    // The dry-run needs an interactive transaction: a 409 that says so, not a 500.
    const dryRun = await w.fetch(`/api/migrations/${TX}/dry-run`, { method: "POST", headers: admin });
    expect(dryRun.status).toBe(409);
    expect(((await dryRun.json()) as { detail: string }).detail).toMatch(
      /D1 has no interactive transactions/,
    );

    const output = w.child.output();
    expect(output).not.toMatch(/Cannot perform I\/O on behalf of a different request/);
    expect(output).not.toMatch(/Uncaught/);
    await w.stop();

    // Every row, read back from D1, equals the one-shot statement's result on the same data.
    const rows = await d1Rows(
      persistTo,
      "SELECT CAST(id AS TEXT) AS id, CAST(last_seen AS TEXT) AS ls FROM transmissions ORDER BY transmissions.id",
    );
    expect(rows.map((r) => `${r.id}:${r.ls}`)).toEqual(oracle);
    const [state] = await d1Rows(
      persistTo,
      `SELECT status, lease_owner, CAST(rows_processed AS TEXT) AS processed, CAST(rows_total AS TEXT) AS total,
              CAST(steps AS TEXT) AS steps FROM _async_migrations WHERE name = '${TX}'`,
    );
    expect(state).toMatchObject({ status: "done", lease_owner: null });
    expect(state?.processed).toBe(state?.total);
    expect(Number(state?.steps)).toBeGreaterThanOrEqual(10);
  }, 600_000);

  it("keeps two overlapping cron invocations exactly-once: every row incremented once", async () => {
    const ROWS = 600;
    db = tempDb();
    persistTo = mkdtempSync(join(tmpdir(), "trickle-d1-state-"));
    const local = db.open();
    await createCounterTable(
      local,
      Array.from({ length: ROWS }, (_, i) => BigInt(i + 1)),
    );
    await loadIntoD1(local, ["t"], db.dir, persistTo);

    worker = await startWranglerDev({
      label: "wrangler dev (D1, counter)",
      config: D1_CONFIG,
      entry: "test/edge/fixtures/counter-worker.ts",
      persistTo,
      secrets: { ADMIN_TOKEN },
      vars: {
        TRICKLE_MIGRATIONS: COUNTER,
        TRICKLE_SLICE_BUDGET_MS: "150",
        TRICKLE_LEASE_TTL_MS: "5000",
        TRICKLE_STEP_TARGET_MS: "20",
        TRICKLE_YIELD_MS: "0",
        TRICKLE_SNAPSHOT_TTL_MS: "0",
      },
    });
    const w = worker;
    await scheduled(w);
    await capBatches(w, COUNTER, 10);

    // Two invocations at once, every round: both run a slice in the same isolate at the same time.
    const rounds = await untilDone(w, COUNTER, async () => {
      await Promise.all([scheduled(w), scheduled(w)]);
    });
    expect(rounds).toBeGreaterThanOrEqual(1);
    // The overlap was real: a slice found its lease taken by the other and was fenced off.
    const output = w.child.output();
    expect(output, tail(output)).toMatch(new RegExp(`trickle: ${COUNTER} lease lost`));
    expect(output).not.toMatch(/Cannot perform I\/O on behalf of a different request/);
    await w.stop();

    const histogram = await d1Rows(persistTo, "SELECT CAST(n AS TEXT) AS n, COUNT(*) AS c FROM t GROUP BY n");
    expect(histogram).toEqual([{ n: "1", c: ROWS }]);
    const [state] = await d1Rows(
      persistTo,
      `SELECT status, CAST(rows_processed AS TEXT) AS processed FROM _async_migrations WHERE name = '${COUNTER}'`,
    );
    expect(state).toEqual({ status: "done", processed: String(ROWS) });
  }, 600_000);
});
