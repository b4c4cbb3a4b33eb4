/**
 * Invariant 3 (fencing) with real concurrency: runners in separate processes on one database file. The
 * embedded client runs statements synchronously, so only separate processes really overlap.
 *
 * The counter migration without a done flag (`test_counter_all_v1`) increments every row of every range it
 * applies, so a range applied twice — by two runners, or by a runner that lost its lease — leaves n = 2.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StateStore } from "../src/engine/state-store.ts";
import { type TempDb, tempDb } from "./helpers/db.ts";
import {
  type ChildHandle,
  type ChildLine,
  counterHistogram,
  createCounters,
  killAllChildren,
  type RunnerChildConfig,
  sleep,
  spawnRunner,
  stepProgress,
  testCounterAllV1,
} from "./fixtures/multiprocess.ts";

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
  return steps.sort((a, b) => (a.rowsProcessed < b.rowsProcessed ? -1 : a.rowsProcessed > b.rowsProcessed ? 1 : 0));
}

async function runConcurrently(rows: number, runners: number, tuning: RunnerChildConfig["tuning"]) {
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
    }),
  );
  const exits = await Promise.all(children.map((child) => child.waitForExit(45_000)));
  for (const [i, exit] of exits.entries()) expect(exit, children[i]!.describe()).toEqual({ code: 0, signal: null });
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
    const { client, children, row } = await runConcurrently(rows, 3, {
      initialBatch: 50,
      maxBatch: 100,
      sliceBudgetMs: 15,
      leaseTtlMs: 2_000,
      yieldMs: 1,
    });
    expect(await counterHistogram(client)).toEqual({ "1": BigInt(rows) });
    const steps = committedSteps(children);
    expectExactlyOnce(rows, steps, row);
    // The work was really shared: several runners committed steps and the lease changed hands many times.
    const active = children.filter((c) => c.ofType("step").length > 0);
    expect(active.length).toBeGreaterThanOrEqual(2);
    expect(handovers(steps)).toBeGreaterThanOrEqual(3);
    expect(row.leaseEpoch).toBeGreaterThanOrEqual(BigInt(steps.length / 10));
  });

  it("runners whose leases expire mid-slice (TTL shorter than scheduling stalls) still apply every row once", async () => {
    // Leases of 30 ms with two cores and four processes: a runner descheduled between steps loses its lease
    // to another and its next step must be fenced off. The lease-lost lines show the fence was exercised.
    const rows = 20_000;
    const { client, children, row } = await runConcurrently(rows, 3, {
      initialBatch: 50,
      maxBatch: 200,
      sliceBudgetMs: 200,
      leaseTtlMs: 30,
      yieldMs: 5,
    });
    expect(await counterHistogram(client)).toEqual({ "1": BigInt(rows) });
    const steps = committedSteps(children);
    expectExactlyOnce(rows, steps, row);
    const active = children.filter((c) => c.ofType("step").length > 0);
    expect(active.length).toBeGreaterThanOrEqual(2);
    const leaseLost = children.reduce((sum, c) => sum + c.ofType("lease-lost").length, 0);
    console.log({ handovers: handovers(steps), leaseLost, steps: steps.length, epoch: row.leaseEpoch });
    await sleep(0);
  });
});
