/**
 * Crash: the built-in `tx_last_seen_backfill_v1` on a CoreScope database, its runner process SIGKILLed at
 * random moments N times while an ingest process (torture/ingest-child.ts) keeps writing the CoreScope hot path.
 *
 * After every kill, with no runner alive, the database must show a consistent prefix:
 * - the cursor never moved backwards and covers every step the killed runner reported;
 * - legacy rows (last_seen = 0 when seeded) up to the cursor hold the newest observation's timestamp;
 * - legacy rows beyond the cursor are untouched (still 0) unless the ingest bumped them itself;
 * - `rows_processed` equals the legacy rows up to the cursor minus those the ingest bumped before the backfill
 *   reached them (exact, not approximately).
 * At the end (a last runner finishes the run) the oracle is the seed's one-shot statement adjusted for the
 * ingest: every legacy row's `last_seen` equals COALESCE(MAX(timestamp), 0) over ALL its observations (ingest
 * bumps keep it the maximum), every other row holds what the ingest maintained, and the row counts add up.
 */
import { StateStore } from "../src/engine/state-store.ts";
import { txLastSeenBackfillV1 } from "../src/migrations/builtin/tx-last-seen-backfill.ts";
import {
  type ChildHandle,
  killAllChildren,
  type RunnerChildConfig,
  spawnRunner,
  stepProgress,
} from "../test/fixtures/multiprocess.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  sparseTransmissions,
  type TempDb,
  tempDb,
} from "../test/helpers/db.ts";
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
} from "./common.ts";
import { INGEST_LOG_SCHEMA, spawnIngest } from "./ingest.ts";

const NAME = txLastSeenBackfillV1.name;

/** Rows per requested kill: enough that the run outlasts the kills (a round covers at most 8 steps of ≤100 keys). */
const TRANSMISSIONS_PER_KILL = 1_600;
/** The most steps a child may take in one round before it stops itself and waits for its kill. */
const MAX_STEPS_PER_ROUND = 8;

export interface CrashOptions extends ScenarioOptions {
  /** Transmissions to seed; default scales with `kills`. */
  readonly transmissions?: number;
}

export async function crashScenario(options: CrashOptions): Promise<ScenarioResult> {
  const result = newResult(
    "crash",
    "SIGKILL the runner at random moments during tx_last_seen_backfill_v1 with concurrent CoreScope ingest",
  );
  let db: TempDb | undefined;
  let ingest: ChildHandle | undefined;
  return runScenario(
    result,
    async () => {
      db = tempDb("corescope.db");
      const client = db.open({ timeout: 5_000 });
      const random = prng(options.seed);
      const transmissions = options.transmissions ?? Math.max(20_000, options.kills * TRANSMISSIONS_PER_KILL);
      options.progress(`seeding ${transmissions} transmissions`);
      await createCoreScopeSchema(client);
      // CoreScope's single-column index; the runner builds the composite one it needs (and can die doing so).
      await client.execute("CREATE INDEX idx_observations_transmission_id ON observations(transmission_id)");
      const txs = sparseTransmissions(random, transmissions);
      const lastId = txs.at(-1)?.id ?? 0n;
      await insertCoreScopeRows(client, txs);
      await client.batch(
        [
          "CREATE TABLE torture_initial (id INTEGER PRIMARY KEY, last_seen INTEGER NOT NULL)",
          "INSERT INTO torture_initial SELECT id, last_seen FROM transmissions",
          ...INGEST_LOG_SCHEMA,
        ],
        "write",
      );
      const initialObservations = await scalar(client, "SELECT COUNT(*) FROM observations");
      const initialLegacy = await scalar(client, "SELECT COUNT(*) FROM torture_initial WHERE last_seen = 0");
      // The state table must exist before the ingest's log statement reads it.
      const store = new StateStore(client);
      await store.ensureSchema();
      await store.register([NAME]);

      ingest = spawnIngest({
        dbPath: db.path,
        migration: NAME,
        intervalMs: 4,
        newEvery: 10,
        seed: options.seed,
      });
      await ingest.waitForLine((l) => l.type === "ready", 30_000);

      const config: RunnerChildConfig = {
        dbPath: db.path,
        migration: NAME,
        // A short lease so a restarted runner takes over quickly; small steps so a run spans many kills.
        tuning: { leaseTtlMs: 250, initialBatch: 50, maxBatch: 100, yieldMs: 30, sliceBudgetMs: 1_000 },
        timeoutMs: 100,
      };

      /** Rows violating the prefix invariants right now, with no runner alive. */
      const prefixViolations = async (cursor: bigint) => ({
        expectedProcessed:
          (await scalar(client, "SELECT COUNT(*) FROM torture_initial WHERE last_seen = 0 AND id <= ?", [
            cursor,
          ])) -
          (await scalar(client, "SELECT COUNT(*) FROM torture_ingest_log WHERE stolen = 1 AND tx_id <= ?", [
            cursor,
          ])),
        wrongDone: await scalar(
          client,
          `SELECT COUNT(*) FROM transmissions t JOIN torture_initial i ON i.id = t.id
           WHERE i.last_seen = 0 AND t.id <= ?
             AND t.last_seen <> COALESCE((SELECT MAX(o.timestamp) FROM observations o WHERE o.transmission_id = t.id), 0)`,
          [cursor],
        ),
        touchedAhead: await scalar(
          client,
          `SELECT COUNT(*) FROM transmissions t JOIN torture_initial i ON i.id = t.id
           WHERE i.last_seen = 0 AND t.id > ? AND t.last_seen <> 0
             AND NOT EXISTS (SELECT 1 FROM torture_ingest_log l WHERE l.tx_id = t.id AND l.stolen = 1)`,
          [cursor],
        ),
      });

      let previous: bigint | null = null;
      let finishedEarly = false;
      // The scenario is sized by its kills, not by the clock: on a busy machine it takes longer, but it still
      // makes every kill it was asked for (the time share only paces the other scenarios' chaos).
      for (let round = 0; round < options.kills; round++) {
        options.progress(`kill ${round + 1}/${options.kills}, cursor ${previous ?? "-"} of ${lastId}`);
        // How far the child may run at most if this process lags behind on a busy machine: it stops itself after
        // that many steps and is killed there, so every round lands in the middle of the run.
        const child = spawnRunner(`runner-${round}`, {
          ...config,
          owner: `runner-${round}`,
          stopAfterSteps: MAX_STEPS_PER_ROUND,
        });
        result.runs++;
        let plan: string;
        if (random() < 0.5) {
          const delay = randomInt(random, 20, 300);
          plan = `${delay} ms after start-up`;
          await child.waitForLine((l) => l.type === "ready", 30_000);
          await sleep(delay);
        } else {
          const steps = randomInt(random, 1, 4);
          const delay = randomInt(random, 0, 25);
          plan = `${delay} ms after step ${steps}`;
          await child.waitForCount("step", steps, 30_000);
          await sleep(delay);
        }
        if (child.exitStatus) {
          finishedEarly = true;
          result.notes.push(`the run finished before kill ${round + 1}; seed more transmissions`);
          break;
        }
        const exit = await child.kill();
        if (!check(result, exit.signal === "SIGKILL", `round ${round}: not killed: ${child.describe()}`))
          break;
        result.kills++;

        const row = await store.get(NAME);
        const where = `kill ${round + 1} (${plan})`;
        if (!row) {
          result.problems.push(`${where}: the state row vanished`);
          break;
        }
        check(result, row.status !== "failed", `${where}: status failed: ${row.error}`);
        if (previous !== null) {
          check(
            result,
            row.cursor !== null && row.cursor >= previous,
            `${where}: cursor moved backwards from ${previous} to ${row.cursor}`,
          );
        }
        const lastReported = child.ofType("step").at(-1);
        if (lastReported) {
          const reported = stepProgress(lastReported).cursor;
          check(
            result,
            row.cursor !== null && row.cursor >= reported,
            `${where}: reported step to ${reported} not committed (cursor ${row.cursor})`,
          );
        }
        const cursor = row.status === "pending" ? -1n : (row.cursor ?? -1n);
        const v = await prefixViolations(cursor);
        const excess = row.rowsProcessed - v.expectedProcessed;
        if (excess > 0n) result.doubleApplies += Number(excess);
        if (excess < 0n) result.lost += Number(-excess);
        check(
          result,
          excess === 0n,
          `${where}: rows_processed ${row.rowsProcessed}, expected ${v.expectedProcessed}`,
        );
        result.lost += Number(v.wrongDone);
        check(result, v.wrongDone === 0n, `${where}: ${v.wrongDone} rows up to the cursor are wrong`);
        result.doubleApplies += Number(v.touchedAhead);
        check(
          result,
          v.touchedAhead === 0n,
          `${where}: ${v.touchedAhead} rows beyond the cursor were changed`,
        );
        previous = row.cursor;
      }

      if (!finishedEarly) {
        options.progress("finishing the run with ingest still running");
        const finisher = spawnRunner("finisher", { ...config, owner: "finisher" });
        result.runs++;
        const exit = await finisher.waitForExit(300_000);
        check(result, exit.code === 0, `the finishing runner failed: ${finisher.describe()}`);
      }
      ingest.signal("SIGTERM");
      const ingestExit = await ingest.waitForExit(30_000);
      check(result, ingestExit.code === 0, `the ingest failed: ${ingest.describe()}`);
      const ingestSummary = ingest.ofType("exit").at(-1);
      if (ingestSummary)
        result.notes.push(
          `ingest: ${ingestSummary.messages} messages, ${ingestSummary.created} new transmissions`,
        );

      options.progress("verifying against the oracle");
      const row = await store.get(NAME);
      check(result, row?.status === "done", `status ${row?.status} (${row?.error ?? row?.reason}), not done`);
      check(result, row?.pass === 1, `the run needed ${row?.pass} passes; the counts below assume one`);
      check(
        result,
        row !== undefined && row.cursor === row.maxKey,
        "the cursor did not reach the frozen bound",
      );
      const stolen = await scalar(client, "SELECT COUNT(*) FROM torture_ingest_log WHERE stolen = 1");
      result.notes.push(
        `${stolen} of ${initialLegacy} legacy rows were bumped by the ingest before the backfill reached them`,
      );
      const expectedProcessed = initialLegacy - stolen;
      const processed = row?.rowsProcessed ?? 0n;
      if (processed > expectedProcessed) result.doubleApplies += Number(processed - expectedProcessed);
      if (processed < expectedProcessed) result.lost += Number(expectedProcessed - processed);
      check(
        result,
        processed === expectedProcessed,
        `rows_processed ${processed}, expected ${expectedProcessed} (${initialLegacy} legacy − ${stolen} bumped by ingest first)`,
      );
      const wrongLegacy = await scalar(
        client,
        `SELECT COUNT(*) FROM transmissions t JOIN torture_initial i ON i.id = t.id WHERE i.last_seen = 0
           AND t.last_seen <> COALESCE((SELECT MAX(o.timestamp) FROM observations o WHERE o.transmission_id = t.id), 0)`,
      );
      const wrongOthers = await scalar(
        client,
        `SELECT COUNT(*) FROM transmissions t JOIN torture_initial i ON i.id = t.id WHERE i.last_seen <> 0
           AND t.last_seen <> MAX(i.last_seen, COALESCE((SELECT MAX(l.ts) FROM torture_ingest_log l WHERE l.tx_id = t.id), 0))`,
      );
      const wrongNew = await scalar(
        client,
        `SELECT COUNT(*) FROM transmissions t WHERE NOT EXISTS (SELECT 1 FROM torture_initial i WHERE i.id = t.id)
           AND t.last_seen <> (SELECT MAX(o.timestamp) FROM observations o WHERE o.transmission_id = t.id)`,
      );
      result.lost += Number(wrongLegacy + wrongOthers + wrongNew);
      check(result, wrongLegacy === 0n, `${wrongLegacy} legacy rows differ from the oracle`);
      check(result, wrongOthers === 0n, `${wrongOthers} non-legacy rows lost an ingest bump`);
      check(result, wrongNew === 0n, `${wrongNew} new transmissions lost an ingest bump`);
      const created = await scalar(client, "SELECT COUNT(*) FROM torture_ingest_log WHERE kind = 'new'");
      const logged = await scalar(client, "SELECT COUNT(*) FROM torture_ingest_log");
      const txCount = await scalar(client, "SELECT COUNT(*) FROM transmissions");
      const obsCount = await scalar(client, "SELECT COUNT(*) FROM observations");
      check(
        result,
        txCount === BigInt(transmissions) + created,
        `transmissions: ${txCount}, expected ${transmissions} + ${created}`,
      );
      check(
        result,
        obsCount === initialObservations + logged,
        `observations: ${obsCount}, expected ${initialObservations} + ${logged}`,
      );
      result.rowsVerified = Number(txCount);
      const integrity = await client.execute("PRAGMA integrity_check");
      check(result, String(integrity.rows[0]?.[0]) === "ok", "PRAGMA integrity_check failed");
    },
    async () => {
      ingest?.signal("SIGKILL");
      await killAllChildren();
      db?.cleanup();
    },
  );
}
