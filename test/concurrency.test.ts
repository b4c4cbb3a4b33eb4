import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StateStore } from "../src/engine/state-store.ts";
import { freezeHoldingLease, leaseOf, waitUntil } from "./fixtures/freeze.ts";
import {
  type ChildHandle,
  type ChildLine,
  counterHistogram,
  createCounters,
  killAllChildren,
  type RunnerChildConfig,
  spawnRunner,
  stepProgress,
  testCounterAllV1,
} from "./fixtures/multiprocess.ts";
import { type TempDb, tempDb } from "./helpers/db.ts";

const NAME = testCounterAllV1.name;

let db: TempDb;

beforeEach(() => {
  db = tempDb();
});

afterEach(async () => {
  await killAllChildren();
  db.cleanup();
});

interface OwnedStep {
  readonly child: string;
  readonly cursor: bigint;
  readonly rowsProcessed: bigint;
  readonly rows: bigint;
}

/** Every child's step lines, tagged with the child, in the order the database committed them. */
function committedSteps(children: readonly ChildHandle[]): OwnedStep[] {
  const steps = children.flatMap((child) =>
    child.ofType("step").map((line: ChildLine) => ({
      child: child.label,
      ...stepProgress(line),
      rows: BigInt(String(line.rows)),
    })),
  );
  return steps.sort((a, b) =>
    a.rowsProcessed < b.rowsProcessed ? -1 : a.rowsProcessed > b.rowsProcessed ? 1 : 0,
  );
}

async function runConcurrently(
  rows: number,
  runners: number,
  tuning: RunnerChildConfig["tuning"],
  pauseBetweenSlicesMs?: number,
) {
  const client = db.open();
  await createCounters(client, rows);
  const children = Array.from({ length: runners }, (_, i) =>
    spawnRunner(`runner-${i}`, {
      dbPath: db.path,
      migration: NAME,
      owner: `runner-${i}`,
      tuning,
      timeoutMs: 100,
      idleWaitMs: 2,
      ...(pauseBetweenSlicesMs === undefined ? {} : { pauseBetweenSlicesMs }),
    }),
  );
  const exits = await Promise.all(children.map((child) => child.waitForExit(45_000)));
  for (const [i, exit] of exits.entries())
    expect(exit, children[i]!.describe()).toEqual({ code: 0, signal: null });
  const row = await new StateStore(client).get(NAME);
  return { client, children, row: row! };
}

function expectExactlyOnce(
  rows: number,
  steps: readonly OwnedStep[],
  row: { status: string; rowsProcessed: bigint; rowsTotal: bigint },
) {
  expect(row.status).toBe("done");
  expect(row.rowsProcessed).toBe(BigInt(rows));
  expect(row.rowsTotal).toBe(BigInt(rows));
  // Ids are 1..rows and every row is a candidate, so after each committed step rows_processed equals the
  // cursor; across all runners the committed steps form one chain of strictly increasing cursors.
  for (const step of steps) expect(step.rowsProcessed).toBe(step.cursor);
  for (let i = 1; i < steps.length; i++) expect(steps[i]!.cursor).toBeGreaterThan(steps[i - 1]!.cursor);
  expect(steps.reduce((sum, s) => sum + s.rows, 0n)).toBe(BigInt(rows));
  expect(steps.at(-1)?.cursor).toBe(BigInt(rows));
}

/** How often the runner that committed the next step differs from the one that committed the previous step. */
function handovers(steps: readonly OwnedStep[]): number {
  let count = 0;
  for (let i = 1; i < steps.length; i++) if (steps[i]!.child !== steps[i - 1]!.child) count++;
  return count;
}

describe("runners in separate processes on one database", () => {
  it("three runners taking turns through short slices apply every row exactly once", async () => {
    const rows = 30_000;
    const { client, children, row } = await runConcurrently(
      rows,
      3,
      {
        initialBatch: 50,
        maxBatch: 100,
        sliceBudgetMs: 15,
        leaseTtlMs: 2_000,
        yieldMs: 1,
      },
      5,
    );
    expect(await counterHistogram(client)).toEqual({ "1": BigInt(rows) });
    const steps = committedSteps(children);
    expectExactlyOnce(rows, steps, row);
    // The work was really shared: several runners committed steps and the lease changed hands many times.
    const active = children.filter((c) => c.ofType("step").length > 0);
    expect(active.length).toBeGreaterThanOrEqual(2);
    expect(handovers(steps)).toBeGreaterThanOrEqual(5);
    expect(row.leaseEpoch).toBeGreaterThanOrEqual(10n);
  });

  it("runners whose leases expire between their steps are fenced off and every row is still applied once", async () => {
    // The lease (20 ms) expires during every pause between steps (30 ms), so another runner takes it over
    // mid-slice, and the first one's next step runs on a stale epoch: the fence must abort it, data included.
    const rows = 12_000;
    const { client, children, row } = await runConcurrently(rows, 3, {
      initialBatch: 60,
      maxBatch: 200,
      sliceBudgetMs: 1_000,
      leaseTtlMs: 20,
      yieldMs: 30,
    });
    expect(await counterHistogram(client)).toEqual({ "1": BigInt(rows) });
    const steps = committedSteps(children);
    expectExactlyOnce(rows, steps, row);
    const active = children.filter((c) => c.ofType("step").length > 0);
    expect(active.length).toBeGreaterThanOrEqual(2);
    // Steps were really attempted on stale epochs, and the lease changed hands nearly every step.
    const leaseLost = children.reduce((sum, c) => sum + c.ofType("lease-lost").length, 0);
    expect(leaseLost).toBeGreaterThanOrEqual(10);
    expect(handovers(steps)).toBeGreaterThanOrEqual(10);
  });
});

describe("a runner frozen past its lease (SIGSTOP) in another process", () => {
  const rows = 3_000;
  // Slow steps (20 keys, 100 ms apart) inside one long slice: the frozen runner is mid-slice, lease in hand.
  const frozenTuning = {
    initialBatch: 20,
    maxBatch: 20,
    sliceBudgetMs: 60_000,
    leaseTtlMs: 400,
    yieldMs: 100,
  };

  async function freezeFirstRunner() {
    const client = db.open();
    await createCounters(client, rows);
    const frozen = spawnRunner("frozen", {
      dbPath: db.path,
      migration: NAME,
      owner: "frozen",
      tuning: frozenTuning,
      // Once resumed it mostly finds the lease taken; polling slowly keeps the run short.
      idleWaitMs: 300,
    });
    await frozen.waitForLine((l) => l.type === "step", 15_000);
    const before = await freezeHoldingLease(frozen, client, {
      name: NAME,
      owner: "frozen",
      path: db.path,
      stepWaitMs: 15_000,
    });
    // Its lease runs out while it cannot renew it.
    await waitUntil(
      "the frozen runner's lease to expire",
      async () => !(await leaseOf(client, NAME)).live,
      5_000,
    );
    return { client, frozen, before };
  }

  function expectResumedRunnerCommittedNothing(frozen: ChildHandle, linesBeforeResume: number) {
    const after = frozen.lines.slice(linesBeforeResume);
    // The first thing it did on waking was its stale step, which the fence aborted.
    expect(after.find((l) => l.type === "step" || l.type === "lease-lost")?.type).toBe("lease-lost");
  }

  it("resumes after the new owner finished: its stale step commits nothing", async () => {
    const { client, frozen, before } = await freezeFirstRunner();
    const successor = spawnRunner("successor", {
      dbPath: db.path,
      migration: NAME,
      owner: "successor",
      tuning: { initialBatch: 100, maxBatch: 1_000, leaseTtlMs: 5_000, yieldMs: 1 },
    });
    expect(await successor.waitForExit(30_000), successor.describe()).toEqual({ code: 0, signal: null });
    const finished = (await new StateStore(client).get(NAME))!;
    expect(finished.status).toBe("done");
    expect(finished.leaseEpoch).toBeGreaterThan(before.epoch);
    expect(await counterHistogram(client)).toEqual({ "1": BigInt(rows) });

    const linesBeforeResume = frozen.lines.length;
    frozen.signal("SIGCONT");
    expect(await frozen.waitForExit(30_000), frozen.describe()).toEqual({ code: 0, signal: null });
    expectResumedRunnerCommittedNothing(frozen, linesBeforeResume);
    expect(frozen.lines.slice(linesBeforeResume).filter((l) => l.type === "step")).toEqual([]);
    // Its stale range would have been incremented a second time had the step committed.
    expect(await counterHistogram(client)).toEqual({ "1": BigInt(rows) });
    const row = (await new StateStore(client).get(NAME))!;
    expect(row.status).toBe("done");
    expect(row.rowsProcessed).toBe(BigInt(rows));
  });

  it("resumes while the new owner is mid-run: both finish with every row applied once", async () => {
    const { client, frozen, before } = await freezeFirstRunner();
    const successor = spawnRunner("successor", {
      dbPath: db.path,
      migration: NAME,
      owner: "successor",
      tuning: { initialBatch: 20, maxBatch: 50, sliceBudgetMs: 300, leaseTtlMs: 2_000, yieldMs: 10 },
    });
    await successor.waitForLine((l) => l.type === "step", 15_000);
    await successor.waitForLine((l) => l.type === "step", 15_000, successor.lines.length);
    expect((await leaseOf(client, NAME)).epoch).toBeGreaterThan(before.epoch);

    const linesBeforeResume = frozen.lines.length;
    frozen.signal("SIGCONT");
    const exits = await Promise.all([frozen.waitForExit(30_000), successor.waitForExit(30_000)]);
    expect(exits, `${frozen.describe()} / ${successor.describe()}`).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    expectResumedRunnerCommittedNothing(frozen, linesBeforeResume);
    expect(await counterHistogram(client)).toEqual({ "1": BigInt(rows) });
    const row = (await new StateStore(client).get(NAME))!;
    expectExactlyOnce(rows, committedSteps([frozen, successor]), row);
  });
});
