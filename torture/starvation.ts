/**
 * Starvation: while the in-process service (src/service.ts: runner, scheduler, snapshot cache, app) backfills
 * a counter table, another process takes the write lock (BEGIN IMMEDIATE) and holds it for seconds, again and
 * again. During every hold `/api/healthz` must show the migration still `running` with a visible reason naming
 * SQLITE_BUSY; it must never go `failed`; after the last hold it completes with every row changed once and the
 * application's own writes committed.
 */
import { resolveTuning } from "../src/engine/tuning.ts";
import { createService, type Service } from "../src/service.ts";
import {
  counterHistogram,
  createCounters,
  killAllChildren,
  spawnLockHolder,
  testCounterV1,
} from "../test/fixtures/multiprocess.ts";
import { type TempDb, tempDb } from "../test/helpers/db.ts";
import {
  check,
  newResult,
  prng,
  randomInt,
  runScenario,
  type ScenarioOptions,
  type ScenarioResult,
  scalar,
  sleep,
  timeIsUp,
  waitUntil,
} from "./common.ts";
import { judgeCounters } from "./many-runners.ts";

const NAME = testCounterV1.name;
const HOLD_MS = 2_500;

export interface StarvationOptions extends ScenarioOptions {
  /** Lock holds; default scales with `kills`. */
  readonly holds?: number;
}

interface HealthItem {
  readonly name: string;
  readonly status: string;
  readonly reason: string | null;
}

export async function starvationScenario(options: StarvationOptions): Promise<ScenarioResult> {
  const result = newResult("starvation", "another process holds BEGIN IMMEDIATE for 2.5 s, repeatedly");
  let db: TempDb | undefined;
  let service: Service | undefined;
  return runScenario(
    result,
    async () => {
      db = tempDb("counters.db");
      const monitor = db.open({ timeout: 5_000 });
      const random = prng(options.seed);
      const holds = options.holds ?? Math.min(10, Math.max(3, Math.ceil(options.kills / 10)));
      const rows = 6_000 + holds * 4_000;
      await createCounters(monitor, rows);
      await monitor.execute("CREATE TABLE app_writes (id INTEGER PRIMARY KEY, at TEXT NOT NULL)");
      service = createService({
        client: db.open({ timeout: 50 }),
        config: {
          adminToken: undefined,
          cronSecret: undefined,
          migrations: [testCounterV1],
          tuning: resolveTuning({
            initialBatch: 100,
            maxBatch: 100,
            yieldMs: 20,
            sliceBudgetMs: 2_000,
            leaseTtlMs: 20_000,
            retryMinMs: 25,
            retryMaxMs: 250,
          }),
          tickMs: 20,
          snapshotTtlMs: 0,
        },
        log: () => {},
      });
      result.runs++;
      const app = service.app;
      const health = async (): Promise<HealthItem | undefined> => {
        const res = await app.request("/api/healthz");
        if (res.status >= 500) result.fiveXX++;
        const body = (await res.json()) as { async_migrations: HealthItem[] };
        return body.async_migrations.find((m) => m.name === NAME);
      };
      const failures: string[] = [];
      service.runner.on((event) => {
        if (event.type === "failed") failures.push(event.message);
      });
      await service.start();
      await waitUntil("the run to start", async () => (await health())?.status === "running", 30_000);

      for (let hold = 0; hold < holds; hold++) {
        if (timeIsUp(result, options, hold, holds, "lock holds")) break;
        const before = await health();
        if (before?.status !== "running") {
          result.notes.push(`the run ended before lock hold ${hold + 1} of ${holds}`);
          break;
        }
        options.progress(`lock hold ${hold + 1}/${holds}`);
        const holder = spawnLockHolder(`app-${hold}`, { dbPath: db.path, holdMs: HOLD_MS });
        await holder.waitForLine((l) => l.type === "locked", 30_000);
        const reasons: string[] = [];
        const statuses = new Set<string>();
        while (holder.ofType("released").length === 0 && !holder.exitStatus) {
          const item = await health();
          statuses.add(item?.status ?? "missing");
          if (item?.reason) reasons.push(item.reason);
          await sleep(100);
        }
        const exit = await holder.waitForExit(30_000);
        check(result, exit.code === 0, `lock holder ${hold + 1} failed: ${holder.describe()}`);
        result.faults++;
        check(
          result,
          statuses.size === 1 && statuses.has("running"),
          `hold ${hold + 1}: statuses seen while the lock was held: ${[...statuses].join(", ")}`,
        );
        check(
          result,
          reasons.some((r) => r.startsWith("SQLITE_BUSY")),
          `hold ${hold + 1}: no SQLITE_BUSY reason visible in /api/healthz (saw ${reasons.slice(-1)[0] ?? "none"})`,
        );
        await sleep(randomInt(random, 300, 800));
      }
      options.progress("waiting for the run to complete");
      await waitUntil("the run to complete", async () => (await health())?.status === "done", 120_000, 100);
      await service.stop();
      check(result, failures.length === 0, `the migration failed: ${failures.join("; ")}`);
      const after = await health();
      check(result, after?.reason === null, `a reason is still shown after completion: ${after?.reason}`);
      judgeCounters(result, await counterHistogram(monitor), rows);
      const appWrites = await scalar(monitor, "SELECT COUNT(*) FROM app_writes");
      check(
        result,
        appWrites === BigInt(result.faults),
        `the application committed ${appWrites} of ${result.faults} writes`,
      );
    },
    async () => {
      await service?.stop();
      await killAllChildren();
      db?.cleanup();
    },
  );
}
