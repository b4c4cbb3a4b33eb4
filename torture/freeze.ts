/**
 * Freeze: the lease holder is stopped (SIGSTOP) between two steps, stays frozen past its lease, another runner
 * takes the migration over and commits steps, then the frozen one is resumed (SIGCONT). The first thing it
 * tries — the next step of its old slice, under its old epoch — must commit nothing: the fence aborts it and
 * it reports `lease-lost`. Repeated, each successor becoming the next one frozen; the counter migration
 * (`n = n + 1`, no done flag) shows any range applied twice.
 */
import { readFileSync } from "node:fs";
import { type Client, createClient } from "@libsql/client";
import { classifyError } from "../src/engine/errors.ts";
import { StateStore } from "../src/engine/state-store.ts";
import {
  type ChildHandle,
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
  waitUntil,
} from "./common.ts";
import { judgeCounters } from "./many-runners.ts";

const NAME = testCounterAllV1.name;

export interface FreezeOptions extends ScenarioOptions {
  /** Freeze/take-over/resume rounds; default scales with `kills`. */
  readonly rounds?: number;
}

/** The scheduler state letter of a process (`T` = stopped), from /proc. */
function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

/** The lease as the database sees it, judged by the database's clock like the fence does. */
async function leaseOf(client: Client): Promise<{ owner: string | null; epoch: bigint; live: boolean }> {
  const result = await client.execute({
    sql: `SELECT lease_owner, CAST(lease_epoch AS TEXT) AS epoch,
            COALESCE(lease_expires_at > strftime('%Y-%m-%dT%H:%M:%fZ','now'), 0) AS live
          FROM _async_migrations WHERE name = ?`,
    args: [NAME],
  });
  const row = result.rows[0];
  if (!row) return { owner: null, epoch: 0n, live: false };
  return {
    owner: row.lease_owner === null ? null : String(row.lease_owner),
    epoch: BigInt(String(row.epoch)),
    live: Number(row.live) === 1,
  };
}

/** False while some connection holds the write lock (a frozen runner inside a step would). */
async function writeLockFree(path: string): Promise<boolean> {
  // A fresh client per probe: a failed BEGIN IMMEDIATE leaves its connection unusable (libsql-client-ts#352).
  const probe = createClient({ url: `file:${path}`, intMode: "bigint", timeout: 20 });
  try {
    const tx = await probe.transaction("write");
    await tx.rollback();
    return true;
  } catch (error) {
    if (classifyError(error).code === "SQLITE_BUSY") return false;
    throw error;
  } finally {
    probe.close();
  }
}

/** Stops `child` right after one of its steps, holding a live lease outside any transaction. */
async function freezeHoldingLease(child: ChildHandle, client: Client, path: string) {
  for (let attempt = 0; attempt < 10; attempt++) {
    await child.waitForLine((l) => l.type === "step", 30_000, child.lines.length);
    child.signal("SIGSTOP");
    await waitUntil(`${child.label} to stop`, () => processState(child.pid) === "T", 5_000);
    const lease = await leaseOf(client);
    if (lease.owner === child.label && lease.live && (await writeLockFree(path))) return lease;
    child.signal("SIGCONT");
  }
  throw new Error(`could not freeze ${child.label} while it held the lease outside a transaction`);
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
        if (Date.now() > options.deadline) {
          result.notes.push(`time limit reached after ${round} of ${rounds} freezes`);
          break;
        }
        options.progress(`freeze ${round + 1}/${rounds}`);
        const before = await freezeHoldingLease(victim, client, dbPath);
        await waitUntil(
          "the frozen runner's lease to expire",
          async () => !(await leaseOf(client)).live,
          10_000,
        );
        const successor = spawn(`runner-${round + 1}`, slow);
        await successor.waitForCount("step", 2, 30_000);
        const taken = await leaseOf(client);
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
