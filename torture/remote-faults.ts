/**
 * Remote faults: two runners on `@libsql/client/web` backfill the non-idempotent counter table through the
 * Hrana test server (test/hrana/server.ts) while it answers 5xx, drops connections, delays responses — each
 * before or after running the request, so some commits are ambiguous — and restarts (close, then start again
 * on the same file and port). No range may be applied twice, none skipped, and the run must complete.
 */
import { createClient } from "@libsql/client/web";
import { Runner } from "../src/engine/runner.ts";
import { StateStore } from "../src/engine/state-store.ts";
import type { Tuning } from "../src/engine/tuning.ts";
import { counterHistogram, createCounters, testCounterAllV1 } from "../test/fixtures/multiprocess.ts";
import { freePort } from "../test/fixtures/server-process.ts";
import { type TempDb, tempDb } from "../test/helpers/db.ts";
import { type FaultBody, type HranaServer, startHranaServer } from "../test/hrana/server.ts";
import {
  check,
  newResult,
  prng,
  randomInt,
  runScenario,
  type ScenarioOptions,
  type ScenarioResult,
  sleep,
  within,
} from "./common.ts";
import { judgeCounters } from "./many-runners.ts";

const NAME = testCounterAllV1.name;
const RUNNERS = 2;

export interface RemoteFaultsOptions extends ScenarioOptions {
  readonly rows?: number;
  /** Server restarts; default scales with `kills`. */
  readonly restarts?: number;
}

/** Server statistics summed over restarts. */
interface FaultCounts {
  http5xx: number;
  dropped: number;
  delays: number;
  restarts: number;
}

function addStats(counts: FaultCounts, server: HranaServer): void {
  for (const [status, n] of Object.entries(server.stats.byStatus)) {
    if (status === "dropped") counts.dropped += n;
    else if (Number(status) >= 500) counts.http5xx += n;
  }
}

export async function remoteFaultsScenario(options: RemoteFaultsOptions): Promise<ScenarioResult> {
  const result = newResult(
    "remote faults",
    "Hrana server answering 5xx, dropping connections, delaying, restarting (before/after running the request)",
  );
  let db: TempDb | undefined;
  let server: HranaServer | undefined;
  let stopChaos = false;
  return runScenario(
    result,
    async () => {
      db = tempDb("remote.db");
      const dbPath = db.path;
      const local = db.open({ timeout: 5_000 });
      const random = prng(options.seed);
      const restarts = options.restarts ?? Math.max(3, Math.ceil(options.kills / 8));
      const rows = options.rows ?? 30_000 + restarts * 5_000;
      await createCounters(local, rows);
      const port = await freePort();
      server = await startHranaServer({ dbPath, port });
      const counts: FaultCounts = { http5xx: 0, dropped: 0, delays: 0, restarts: 0 };

      const tuning: Partial<Tuning> = {
        initialBatch: 50,
        maxBatch: 100,
        yieldMs: 2,
        sliceBudgetMs: 1_000,
        leaseTtlMs: 3_000,
        retryMinMs: 10,
        retryMaxMs: 200,
      };
      const clients = Array.from({ length: RUNNERS }, () =>
        createClient({ url: server!.url, intMode: "bigint" }),
      );
      const runners = clients.map(
        (client, i) => new Runner({ client, migrations: [testCounterAllV1], tuning, owner: `remote-${i}` }),
      );
      result.runs += RUNNERS;
      const failures: string[] = [];
      for (const runner of runners)
        runner.on((event) => {
          if (event.type === "failed") failures.push(event.message);
        });
      const runs = Promise.all(runners.map((runner) => runner.runUntilDone({ idleWaitMs: 20 })));
      let finished = false;
      void runs.then(
        () => {
          finished = true;
        },
        () => {
          finished = true;
        },
      );

      const store = new StateStore(local);
      // Chaos until the run is done; restarts are spread so that all of them happen while it runs.
      while (!finished && !stopChaos) {
        await sleep(randomInt(random, 80, 300));
        if (finished) break;
        // The runners create the state table at their first tick; on a busy machine that may not have happened yet.
        const started = await store.hasState();
        const row = started ? await store.get(NAME) : undefined;
        const progress = row?.rowsProcessed ?? 0n;
        options.progress(
          `${progress} of ${rows} rows; ${counts.http5xx} 5xx, ${counts.dropped} drops, ${counts.delays} delays, ${counts.restarts} restarts`,
        );
        const dueRestarts = Math.ceil((Number(progress) / rows) * (restarts + 1));
        const pastDeadline = Date.now() > options.deadline;
        // Restarts are few and counted, so they do not wait for the clock: the first one is due as soon as the
        // run has made progress, however busy the machine is (only the other chaos stops at the deadline).
        if ((!pastDeadline || counts.restarts === 0) && counts.restarts < Math.min(restarts, dueRestarts)) {
          addStats(counts, server);
          await server.close();
          await sleep(randomInt(random, 100, 600)); // clients meet ECONNREFUSED meanwhile
          server = await startHranaServer({ dbPath, port });
          counts.restarts++;
          continue;
        }
        if (pastDeadline) continue;
        const faults = server.faults;
        const dice = random();
        const after = random() < 0.5;
        if (dice < 0.35) {
          // What proxies (text) and sqld (`{"error": …}`) send. Not `{"message": …}` without a code: the client
          // turns that into a Hrana protocol error (code UNKNOWN, HTTP status dropped), deterministic by design.
          const bodies: FaultBody[] = ["text", "json"];
          faults.failNext(randomInt(random, 1, 3), [500, 502, 503][randomInt(random, 0, 2)]!, {
            after,
            body: bodies[randomInt(random, 0, 1)]!,
          });
        } else if (dice < 0.65) {
          faults.dropNext(randomInt(random, 1, 2), { after });
        } else if (dice < 0.85) {
          faults.delayMs = randomInt(random, 50, 400);
          counts.delays++;
          await sleep(randomInt(random, 100, 500));
          faults.delayMs = 0;
        }
      }
      await within("both remote runners", 300_000, runs);
      addStats(counts, server);
      server.faults.clear();
      for (const client of clients) client.close();

      result.faults = counts.http5xx + counts.dropped + counts.delays + counts.restarts;
      result.notes.push(
        `${counts.http5xx} HTTP 5xx, ${counts.dropped} dropped connections, ${counts.delays} delay periods, ${counts.restarts} server restarts`,
      );
      check(result, counts.restarts >= Math.min(restarts, 1), "the server was never restarted");
      check(result, failures.length === 0, `the migration failed: ${failures.join("; ")}`);
      const row = await store.get(NAME);
      check(result, row?.status === "done", `status ${row?.status} (${row?.error ?? row?.reason}), not done`);
      check(
        result,
        row?.rowsProcessed === BigInt(rows),
        `rows_processed ${row?.rowsProcessed}, expected ${rows}`,
      );
      judgeCounters(result, await counterHistogram(local), rows);
    },
    async () => {
      stopChaos = true;
      await server?.close();
      db?.cleanup();
    },
  );
}
