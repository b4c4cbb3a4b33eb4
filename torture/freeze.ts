import { StateStore } from "../src/engine/state-store.ts";
import { freezeHoldingLease, leaseOf } from "../test/fixtures/freeze.ts";
import {
  counterHistogram,
  createCounters,
  killAllChildren,
  type RunnerChildConfig,
  spawnRunner,
  testCounterAllV1,
} from "../test/fixtures/multiprocess.ts";
import { type TempDb, tempDb } from "../test/helpers/db.ts";
import {
  check,
  newResult,
  runScenario,
  type ScenarioOptions,
  type ScenarioResult,
  timeIsUp,
  waitUntil,
} from "./common.ts";
import { judgeCounters } from "./many-runners.ts";

const NAME = testCounterAllV1.name;

export interface FreezeOptions extends ScenarioOptions {
  /** Freeze/take-over/resume rounds; default scales with `kills`. */
  readonly rounds?: number;
}

export async function freezeScenario(options: FreezeOptions): Promise<ScenarioResult> {
  const result = newResult(
    "freeze",
    "SIGSTOP the lease holder past its lease, let another take over, SIGCONT",
  );
  let db: TempDb | undefined;
  return runScenario(
    result,
    async () => {
      db = tempDb("counters.db");
      const dbPath = db.path;
      const client = db.open({ timeout: 5_000 });
      const rounds = options.rounds ?? Math.max(3, Math.ceil(options.kills / 10));
      const rows = 3_000 + rounds * 1_000;
      await createCounters(client, rows);
      // Slow steps (20 keys, 100 ms apart) inside one long slice: a frozen runner is mid-slice, lease in hand.
      const slow: RunnerChildConfig = {
        dbPath,
        migration: NAME,
        tuning: { initialBatch: 20, maxBatch: 20, sliceBudgetMs: 60_000, leaseTtlMs: 400, yieldMs: 100 },
        // Once resumed it mostly finds the lease taken; polling slowly keeps it out of the way.
        idleWaitMs: 300,
      };
      const spawn = (label: string, config: RunnerChildConfig) => {
        result.runs++;
        return spawnRunner(label, { ...config, owner: label });
      };
      let victim = spawn("runner-0", slow);
      await victim.waitForLine((l) => l.type === "step", 30_000);
      for (let round = 0; round < rounds; round++) {
        if (timeIsUp(result, options, round, rounds, "freezes")) break;
        options.progress(`freeze ${round + 1}/${rounds}`);
        const before = await freezeHoldingLease(victim, client, {
          name: NAME,
          owner: victim.label,
          path: dbPath,
          stepWaitMs: 30_000,
        });
        await waitUntil(
          "the frozen runner's lease to expire",
          async () => !(await leaseOf(client, NAME)).live,
          10_000,
        );
        const successor = spawn(`runner-${round + 1}`, slow);
        await successor.waitForCount("step", 2, 30_000);
        const taken = await leaseOf(client, NAME);
        check(
          result,
          taken.epoch > before.epoch,
          `freeze ${round + 1}: the successor did not take a newer epoch`,
        );

        const linesBeforeResume = victim.lines.length;
        victim.signal("SIGCONT");
        const first = await victim.waitForLine(
          (l) => l.type === "step" || l.type === "lease-lost",
          30_000,
          linesBeforeResume,
        );
        result.faults++;
        if (first.type === "step") result.doubleApplies += Number(first.rows ?? 0);
        check(
          result,
          first.type === "lease-lost",
          `freeze ${round + 1}: the resumed runner committed a stale step`,
        );
        await victim.kill();
        victim = successor;
      }
      options.progress("finishing the run");
      await victim.kill();
      result.kills++;
      const finisher = spawn("finisher", {
        dbPath,
        migration: NAME,
        tuning: { initialBatch: 100, maxBatch: 1_000, leaseTtlMs: 5_000, yieldMs: 1 },
      });
      const exit = await finisher.waitForExit(120_000);
      check(result, exit.code === 0, `the finishing runner failed: ${finisher.describe()}`);
      const row = await new StateStore(client).get(NAME);
      check(result, row?.status === "done", `status ${row?.status}, not done`);
      check(
        result,
        row?.rowsProcessed === BigInt(rows),
        `rows_processed ${row?.rowsProcessed}, expected ${rows}`,
      );
      judgeCounters(result, await counterHistogram(client), rows);
    },
    async () => {
      await killAllChildren();
      db?.cleanup();
    },
  );
}
