/**
 * Faults at the client boundary (torture/faulty-client.ts): a runner whose client fails a fifth of its calls
 * with transient errors — half of them after the call committed (ambiguous commits) — backfills the
 * non-idempotent counter table. Then a persistent deterministic error on every step fails the migration with
 * its message; an operator retries it through the control API (`POST /api/migrations/:name/retry` on the
 * in-process app) and the run continues from the stored cursor to the end: every row changed exactly once.
 */
import { Runner } from "../src/engine/runner.ts";
import { StateStore } from "../src/engine/state-store.ts";
import { resolveTuning, type Tuning } from "../src/engine/tuning.ts";
import { createService } from "../src/service.ts";
import { counterHistogram, createCounters, testCounterAllV1 } from "../test/fixtures/multiprocess.ts";
import { type TempDb, tempDb } from "../test/helpers/db.ts";
import {
  check,
  newResult,
  prng,
  runScenario,
  type ScenarioOptions,
  type ScenarioResult,
  scalar,
  within,
} from "./common.ts";
import { deterministicError, FAULT_KINDS, FaultInjector } from "./faulty-client.ts";
import { judgeCounters } from "./many-runners.ts";

const NAME = testCounterAllV1.name;
export const GUARD_MESSAGE = "CHECK constraint failed: torture_guard";
const ADMIN_TOKEN = "torture-admin-token-0123456789";

export interface ClientFaultsOptions extends ScenarioOptions {
  readonly rows?: number;
  /** Probability that a call fails (default 0.2). */
  readonly rate?: number;
}

export async function clientFaultsScenario(options: ClientFaultsOptions): Promise<ScenarioResult> {
  const result = newResult(
    "client faults",
    "transient errors, timeouts, network exceptions (before/after commit) injected into execute/batch; a deterministic error, then retry via the control API",
  );
  let db: TempDb | undefined;
  return runScenario(
    result,
    async () => {
      db = tempDb("counters.db");
      const client = db.open({ timeout: 2_000 });
      const rows = options.rows ?? 10_000 + options.kills * 400;
      await createCounters(client, rows);
      const injector = new FaultInjector({
        random: prng(options.seed),
        rate: options.rate ?? 0.2,
        afterRate: 0.5,
        kinds: FAULT_KINDS,
      });
      const tuning: Partial<Tuning> = {
        initialBatch: 50,
        maxBatch: 100,
        yieldMs: 1,
        sliceBudgetMs: 500,
        leaseTtlMs: 5_000,
        retryMinMs: 2,
        retryMaxMs: 40,
        // The injected error fails every step batch alike; with quarantine on, each key would be bisected and
        // quarantined until the fail ratio trips. This scenario is about failing and retrying a run.
        maxQuarantined: 0,
      };
      const runner = new Runner({
        client: injector.wrap(client),
        migrations: [testCounterAllV1],
        tuning,
        owner: "faulty-runner",
      });
      result.runs++;
      const store = new StateStore(client);
      let armed = false;
      runner.on((event) => {
        if (event.type === "step")
          options.progress(`${event.rowsProcessed} of ${rows} rows, ${injector.injected.length} faults`);
        // Part way through, every step starts failing deterministically (once; the operator lifts it later).
        if (event.type === "step" && event.rowsProcessed * 5n >= BigInt(rows) * 2n && !armed) {
          armed = true;
          injector.persistent = {
            error: () => deterministicError(GUARD_MESSAGE),
            match: (call) => call.isStep,
          };
        }
      });

      await within("the run up to the deterministic error", 120_000, runner.runUntilDone({ idleWaitMs: 5 }));
      const failed = await store.get(NAME);
      check(
        result,
        failed?.status === "failed",
        `expected failed after the deterministic error, got ${failed?.status}`,
      );
      check(
        result,
        failed?.error?.includes(GUARD_MESSAGE) === true,
        `the failure does not carry the error's message: ${failed?.error}`,
      );
      const cursor = failed?.cursor ?? 0n;
      // A consistent prefix at the failure: rows up to the cursor once, the rest not yet.
      const wrong = await scalar(
        client,
        "SELECT COUNT(*) FROM counters WHERE (id <= ? AND n <> 1) OR (id > ? AND n <> 0)",
        [cursor, cursor],
      );
      check(result, wrong === 0n, `${wrong} rows inconsistent with the cursor ${cursor} at the failure`);
      check(
        result,
        failed?.rowsProcessed === cursor,
        `rows_processed ${failed?.rowsProcessed} at cursor ${cursor}`,
      );

      // The operator's view and action, through the app, on the real client.
      injector.persistent = undefined;
      const service = createService({
        client,
        config: {
          adminToken: ADMIN_TOKEN,
          cronSecret: undefined,
          migrations: [testCounterAllV1],
          tuning: resolveTuning(tuning),
          tickMs: 1_000,
          snapshotTtlMs: 0,
        },
        log: () => {},
      });
      const perf = await service.app.request("/api/perf");
      if (perf.status >= 500) result.fiveXX++;
      const perfItem = (
        (await perf.json()) as { asyncMigrations: { name: string; errorMessage: string | null }[] }
      ).asyncMigrations.find((m) => m.name === NAME);
      check(
        result,
        perfItem?.errorMessage?.includes(GUARD_MESSAGE) === true,
        "/api/perf does not show the failure",
      );
      const retry = await service.app.request(`/api/migrations/${NAME}/retry`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ note: "torture: the guard was lifted" }),
      });
      if (retry.status >= 500) result.fiveXX++;
      check(result, retry.status === 200, `retry answered ${retry.status}: ${await retry.clone().text()}`);
      const retried = await store.get(NAME);
      check(result, retried?.status === "running", `after retry the status is ${retried?.status}`);
      check(
        result,
        retried?.cursor === cursor,
        `retry moved the cursor from ${cursor} to ${retried?.cursor}`,
      );
      check(result, retried?.rowsProcessed === failed?.rowsProcessed, "retry reset rows_processed");

      let firstCursorAfterRetry: bigint | null | undefined;
      const off = runner.on((event) => {
        if (event.type === "step" && firstCursorAfterRetry === undefined)
          firstCursorAfterRetry = event.cursor;
      });
      await within("the run after the retry", 120_000, runner.runUntilDone({ idleWaitMs: 5 }));
      off();
      await service.stop();
      check(
        result,
        firstCursorAfterRetry != null && firstCursorAfterRetry > cursor,
        `the first step after the retry ended at ${firstCursorAfterRetry}, not beyond the cursor ${cursor}`,
      );
      const done = await store.get(NAME);
      check(
        result,
        done?.status === "done",
        `status ${done?.status} (${done?.error ?? done?.reason}), not done`,
      );
      check(
        result,
        done?.rowsProcessed === BigInt(rows),
        `rows_processed ${done?.rowsProcessed}, expected ${rows}`,
      );
      judgeCounters(result, await counterHistogram(client), rows);
      const random = injector.injected.filter((f) => f.kind !== "persistent");
      result.faults = injector.injected.length;
      result.notes.push(
        `${random.length} random faults (${random.filter((f) => f.timing === "after").length} after the call ran, ${injector.ambiguousCommits} of them after a committed step), ${injector.injected.length - random.length} deterministic`,
      );
      check(
        result,
        injector.ambiguousCommits > 0,
        "no ambiguous step commit was injected; raise the rate or the rows",
      );
    },
    () => db?.cleanup(),
  );
}
