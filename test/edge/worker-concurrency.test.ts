/**
 * Two Workers isolates on one database: two `wrangler dev` processes (two workerd instances) run the test entry
 * test/edge/fixtures/counter-worker.ts and fire their cron handlers concurrently at the same libSQL server.
 * The migration is not idempotent (`n = n + 1` on every row), so any range applied twice would leave n = 2.
 * One step request is held at the server for longer than the lease lives, so its runner loses the lease in
 * the middle of a slice and the other isolate takes over: the held step must then be fenced off.
 * Afterwards every row has n = 1, `rows_processed` is exact, and both isolates did steps.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import { counterMigration, createCounterTable, rawStateRow } from "../helpers/engine.ts";
import { type HranaServer, startHranaServer } from "../hrana/server.ts";
import { decodePipeline, isStep, stepOwner } from "../hrana/wire.ts";
import { stopAllChildren, tail } from "./helpers/child.ts";
import { startWranglerDev, type WranglerDev } from "./helpers/wrangler.ts";

const NAME = "edge_counter_v1";
const ADMIN_TOKEN = "admin-token-0123456789abcdef";
const ROWS = 600;
const LEASE_TTL_MS = 1000;
/** Longer than the lease: the held step arrives after its lease expired and another isolate took over. */
const HOLD_MS = LEASE_TTL_MS + 1500;

let db: TempDb | undefined;
let server: HranaServer | undefined;
const workers: WranglerDev[] = [];

afterEach(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  workers.length = 0;
  await stopAllChildren();
  await server?.close();
  db?.cleanup();
  server = undefined;
  db = undefined;
});

interface PerfItem {
  name: string;
  status: string;
  rowsProcessed: number;
  phase: string | null;
  phaseCursor: number | string | null;
}

async function status(w: WranglerDev): Promise<PerfItem | undefined> {
  const body = (await (await w.fetch("/api/perf")).json()) as { asyncMigrations: PerfItem[] };
  return body.asyncMigrations.find((m) => m.name === NAME);
}

describe("Cloudflare Workers: two isolates ticking the same database", () => {
  it("applies a non-idempotent migration exactly once, fencing a step that outlived its lease", async () => {
    db = tempDb();
    const local = db.open();
    await local.execute("PRAGMA journal_mode=WAL");
    await createCounterTable(
      local,
      Array.from({ length: ROWS }, (_, i) => BigInt(i + 1)),
    );
    server = await startHranaServer({ dbPath: db.path, record: true });
    const live = server;

    // Hold the 15th step request (whoever sends it) at the server until its lease has expired.
    let stepRequests = 0;
    live.faults.delayMs = HOLD_MS;
    live.faults.match = (body) => {
      if (!JSON.stringify(body).includes('UPDATE \\"t\\" SET')) return false;
      stepRequests++;
      return stepRequests === 15;
    };

    const start = (label: string) =>
      startWranglerDev({
        label,
        entry: "test/edge/fixtures/counter-worker.ts",
        secrets: { DATABASE_URL: live.url, ADMIN_TOKEN },
        vars: {
          TRICKLE_MIGRATIONS: NAME,
          TRICKLE_SLICE_BUDGET_MS: "100",
          TRICKLE_LEASE_TTL_MS: String(LEASE_TTL_MS),
          TRICKLE_STEP_TARGET_MS: "20",
          TRICKLE_YIELD_MS: "0",
          TRICKLE_SNAPSHOT_TTL_MS: "0",
        },
      });
    const started = await Promise.allSettled([start("wrangler dev A"), start("wrangler dev B")]);
    for (const s of started) if (s.status === "fulfilled") workers.push(s.value);
    for (const s of started) if (s.status === "rejected") throw s.reason;

    // The state row exists (as after any trickle start); small batches make the run take many steps, so both
    // isolates get their turns.
    await new Runner({ client: local, migrations: [counterMigration({ name: NAME, table: "t" })] }).init();
    const tuned = await workers[0]!.fetch(`/api/migrations/${NAME}`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ initialBatch: 10, maxBatch: 20 }),
    });
    expect(tuned.status, await tuned.clone().text()).toBe(200);

    // Each isolate ticks back to back until it sees the migration done. Sized by progress, not by a count of
    // ticks: on a busy machine a tick may get a single step in, so it fails only when nothing moved for a while.
    const tickUntilDone = async (w: WranglerDev) => {
      let last = "";
      for (let still = 0; still < 200; still++) {
        const response = await w.scheduled();
        expect(response.status, tail(w.child.output())).toBe(200);
        const item = await status(w);
        if (item?.status === "done") return;
        const now = `${item?.status} ${item?.phase} ${item?.phaseCursor} ${item?.rowsProcessed}`;
        if (now !== last) still = 0;
        last = now;
      }
      throw new Error(`${w.child.label}: ${NAME} did not move in 200 ticks:\n${tail(w.child.output())}`);
    };
    await Promise.all(workers.map(tickUntilDone));

    const counts = await local.execute("SELECT CAST(n AS TEXT) AS n, COUNT(*) AS c FROM t GROUP BY n");
    const histogram = Object.fromEntries(counts.rows.map((r) => [String(r.n), BigInt(r.c as bigint)]));
    expect(histogram).toEqual({ "1": BigInt(ROWS) });
    const state = await rawStateRow(local, NAME);
    expect(state?.status).toBe("done");
    expect(state?.rows_processed).toBe(String(ROWS));

    const steps = live.recorded.map(decodePipeline).filter((r) => isStep(r, "t"));
    // Both isolates stepped, and the held step (at least) was fenced off: more step requests than commits.
    expect(new Set(steps.map(stepOwner)).size).toBe(2);
    expect(stepRequests).toBeGreaterThanOrEqual(15);
    expect(steps.length).toBeGreaterThan(Number(state?.steps));
    for (const w of workers) {
      expect(w.child.output()).not.toMatch(/Cannot perform I\/O on behalf of a different request/);
    }
  }, 400_000);
});
