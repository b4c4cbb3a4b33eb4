/**
 * Many runners: four runner processes tick the same database for the whole run, taking the lease in turns
 * through short slices, while one of them at a time is SIGKILLed and replaced (so four are always ticking).
 * The migration is the non-idempotent counter (`n = n + 1` on every row, no done flag): any range applied
 * twice — by two runners, or by a runner that lost its lease — leaves n = 2 somewhere, any range skipped n = 0.
 */
import { StateStore } from "../src/engine/state-store.ts";
import {
  type ChildHandle,
  counterHistogram,
  createCounters,
  killAllChildren,
  type RunnerChildConfig,
  spawnRunner,
  stepProgress,
  testCounterAllV1,
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
  sleep,
} from "./common.ts";

const NAME = testCounterAllV1.name;
const RUNNERS = 4;

export interface ManyRunnersOptions extends ScenarioOptions {
  readonly rows?: number;
  /** Runners killed and replaced during the run; default scales with `kills`. */
  readonly restarts?: number;
}

/** Adds the histogram's verdict to `result`: rows at n = 0 are lost, every extra increment a double-apply. */
export function judgeCounters(result: ScenarioResult, histogram: Record<string, bigint>, rows: number): void {
  for (const [n, count] of Object.entries(histogram)) {
    const times = Number(n);
    if (times === 0) result.lost += Number(count);
    if (times > 1) result.doubleApplies += Number(count) * (times - 1);
  }
  check(
    result,
    histogram["1"] === BigInt(rows) && Object.keys(histogram).length === 1,
    `counter histogram ${JSON.stringify(histogram, (_k, v) => (typeof v === "bigint" ? `${v}` : v))}, expected every one of ${rows} rows at n = 1`,
  );
  result.rowsVerified += rows;
}

/** Committed steps reported by all children form one chain: strictly increasing cursors, none reported twice. */
export function judgeStepChain(result: ScenarioResult, children: readonly ChildHandle[]): void {
  const steps = children
    .flatMap((child) => child.ofType("step").map(stepProgress))
    .sort((a, b) => (a.rowsProcessed < b.rowsProcessed ? -1 : a.rowsProcessed > b.rowsProcessed ? 1 : 0));
  for (const [i, step] of steps.entries()) {
    // Ids are 1..rows and every row is a candidate, so after each step rows_processed equals the cursor.
    check(
      result,
      step.rowsProcessed === step.cursor,
      `a step reported ${step.rowsProcessed} rows at cursor ${step.cursor}`,
    );
    const before = steps[i - 1];
    if (before) check(result, step.cursor > before.cursor, `two steps reported cursor ${step.cursor}`);
  }
}

export async function manyRunnersScenario(options: ManyRunnersOptions): Promise<ScenarioResult> {
  const result = newResult(
    "many runners",
    "four runner processes on one database, one killed and replaced at a time",
  );
  let db: TempDb | undefined;
  return runScenario(
    result,
    async () => {
      db = tempDb("counters.db");
      const client = db.open({ timeout: 5_000 });
      const random = prng(options.seed);
      const restarts = options.restarts ?? Math.max(4, Math.ceil(options.kills / 4));
      const rows = options.rows ?? 20_000 + restarts * 5_000;
      await createCounters(client, rows);
      const store = new StateStore(client);
      await store.ensureSchema(); // so the progress can be read before the first runner has initialised
      await store.register([NAME]);
      // Two kinds of runner, two of each. Turn-takers: short slices and a pause between them, so the lease
      // changes hands all the time. Stale ones: a lease (20 ms) that expires during every pause between their
      // steps (30 ms), so another runner takes over mid-slice and their next step runs on a stale epoch, which
      // the fence must abort. Leases are short, so a killed holder's lease expires quickly.
      const kinds: RunnerChildConfig[] = [
        {
          dbPath: db.path,
          migration: NAME,
          tuning: { initialBatch: 50, maxBatch: 100, sliceBudgetMs: 15, leaseTtlMs: 300, yieldMs: 1 },
          timeoutMs: 100,
          idleWaitMs: 2,
          pauseBetweenSlicesMs: 5,
        },
        {
          dbPath: db.path,
          migration: NAME,
          tuning: { initialBatch: 60, maxBatch: 200, sliceBudgetMs: 1_000, leaseTtlMs: 20, yieldMs: 30 },
          timeoutMs: 100,
          idleWaitMs: 2,
        },
      ];
      let spawned = 0;
      const spawn = (slot: number) => {
        const label = `runner-${spawned++}`;
        result.runs++;
        return spawnRunner(label, { ...kinds[slot % kinds.length]!, owner: label });
      };
      const all: ChildHandle[] = [];
      const running: ChildHandle[] = [];
      for (let i = 0; i < RUNNERS; i++) {
        const child = spawn(i);
        all.push(child);
        running.push(child);
      }
      const isDone = async () => (await store.get(NAME))?.status === "done";
      while (result.kills < restarts && Date.now() < options.deadline) {
        await sleep(randomInt(random, 250, 700));
        const row = await store.get(NAME);
        options.progress(`kill ${result.kills + 1}/${restarts}, ${row?.rowsProcessed ?? 0n} of ${rows} rows`);
        if (row?.status === "done") break;
        const index = randomInt(random, 0, running.length - 1);
        const victim = running[index]!;
        if (victim.exitStatus) break; // it found no work left
        await victim.kill();
        result.kills++;
        const replacement = spawn(index);
        all.push(replacement);
        running[index] = replacement;
      }
      if (result.kills < restarts)
        result.notes.push(
          `${result.kills} of ${restarts} runner kills before the run ended (or the time limit)`,
        );
      options.progress("waiting for the four runners to finish");
      const exits = await Promise.all(running.map((child) => child.waitForExit(300_000)));
      for (const [i, exit] of exits.entries())
        check(result, exit.code === 0, `${running[i]!.label} failed: ${running[i]!.describe()}`);
      check(result, await isDone(), "the migration is not done");
      const row = await store.get(NAME);
      check(
        result,
        row?.rowsProcessed === BigInt(rows),
        `rows_processed ${row?.rowsProcessed}, expected ${rows}`,
      );
      judgeCounters(result, await counterHistogram(client), rows);
      judgeStepChain(result, all);
      const active = all.filter((c) => c.ofType("step").length > 0).length;
      const fenced = all.reduce((sum, c) => sum + c.ofType("lease-lost").length, 0);
      result.faults += fenced;
      result.notes.push(
        `${active} of ${all.length} runner processes committed steps; ${fenced} stale steps fenced off; lease epoch ${row?.leaseEpoch}`,
      );
      check(result, fenced > 0, "no runner ever stepped on a stale lease; the fence was not exercised");
      check(result, active >= 2, "the work was not shared between runners");
    },
    async () => {
      await killAllChildren();
      db?.cleanup();
    },
  );
}
