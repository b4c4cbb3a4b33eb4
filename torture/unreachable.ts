/**
 * Database unreachable at start: the service is started against a remote database (Hrana over HTTP) whose
 * server is not running yet. It must start anyway, answer `/api/healthz` with 503, `ready: false` and the reason
 * (`async_migrations_error`), and recover WITHOUT a restart once the server comes up: healthz 200, the backfill
 * runs to the result of the seed's one-shot statement. A second outage in the middle of the run must be
 * survived the same way.
 *
 * Two services are tried: the in-process one (src/service.ts, what Workers, Deno and Bun run) and the Node entry
 * as a child process (`tsx src/node.ts`, what `npm start` runs).
 *
 * Why remote: an embedded `file:` database is opened by the process itself. A missing directory is created,
 * and the scenario runs as root in a sandbox, where file permissions do not stop anything; the failure that
 * really happens in production — the database server is down or not reachable yet — is the remote one.
 */
import { createClient } from "@libsql/client/web";
import { loadConfig } from "../src/config.ts";
import { createService, type Service } from "../src/service.ts";
import {
  freePort,
  type ServerProcess,
  startServerProcess,
  waitForExit,
} from "../test/fixtures/server-process.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  lastSeenById,
  oneShotResult,
  type TempDb,
  tempDb,
} from "../test/helpers/db.ts";
import { legacyTransmissions } from "../test/helpers/engine.ts";
import { type HranaServer, startHranaServer } from "../test/hrana/server.ts";
import {
  check,
  describeError,
  newResult,
  runScenario,
  type ScenarioOptions,
  type ScenarioResult,
  sleep,
  waitUntil,
} from "./common.ts";

const TX = "tx_last_seen_backfill_v1";

export interface UnreachableOptions extends ScenarioOptions {
  readonly transmissions?: number;
  /** Also try the Node entry as a child process (default true). */
  readonly node?: boolean;
}

interface Health {
  readonly status: number;
  readonly body: {
    ready?: boolean;
    async_migrations_error?: string;
    async_migrations?: { name: string; status: string; rowsProcessed: number | string }[];
  };
}

/** A CoreScope database of legacy rows and the one-shot statement's result on it. */
async function seed(db: TempDb, transmissions: number): Promise<string[]> {
  const client = db.open({ timeout: 5_000 });
  await createCoreScopeSchema(client);
  // CoreScope's own index (the migration still builds the composite one it wants); keeps the oracle quick.
  await client.execute("CREATE INDEX idx_observations_transmission_id ON observations(transmission_id)");
  await insertCoreScopeRows(client, legacyTransmissions(transmissions));
  return oneShotResult(client, db);
}

export async function unreachableScenario(options: UnreachableOptions): Promise<ScenarioResult> {
  const result = newResult(
    "unreachable",
    "service started while its remote database is down; healthz 503 with the reason; recovery without restart",
  );
  const dbs: TempDb[] = [];
  const servers: HranaServer[] = [];
  let service: Service | undefined;
  let node: ServerProcess | undefined;
  const transmissions = options.transmissions ?? 20_000;

  /** Waits for a healthz answer of `status` while recording anything unexpected. */
  const expectHealth = async (
    what: string,
    get: () => Promise<Health>,
    accept: (h: Health) => boolean,
    timeoutMs: number,
  ): Promise<Health> => {
    let last: Health | undefined;
    try {
      await waitUntil(
        what,
        async () => {
          last = await get();
          if (last.status >= 500 && last.status !== 503) result.fiveXX++;
          return accept(last);
        },
        timeoutMs,
        100,
      );
    } catch (error) {
      throw new Error(`${describeError(error)}; last answer ${last?.status} ${JSON.stringify(last?.body)}`);
    }
    return last!;
  };
  const down = (h: Health) =>
    h.status === 503 && h.body.ready === false && typeof h.body.async_migrations_error === "string";
  const up = (h: Health) => h.status === 200 && h.body.ready === true;
  const done = (h: Health) => up(h) && h.body.async_migrations?.find((m) => m.name === TX)?.status === "done";

  return runScenario(
    result,
    async () => {
      // --- in-process service ------------------------------------------------------------------------------
      const db = tempDb("remote.db");
      dbs.push(db);
      const oracle = await seed(db, transmissions);
      const port = await freePort();
      const config = loadConfig({
        ADMIN_TOKEN: "torture-admin-token-unreachable",
        TRICKLE_SNAPSHOT_TTL_MS: "0",
        TRICKLE_TICK_MS: "50",
        TRICKLE_SLICE_BUDGET_MS: "500",
        TRICKLE_LEASE_TTL_MS: "3000",
      });
      service = createService({
        client: createClient({ url: `http://127.0.0.1:${port}`, intMode: "bigint" }),
        config,
        log: () => {},
      });
      result.runs++;
      const app = service.app;
      const health = async (): Promise<Health> => {
        const res = await app.request("/api/healthz");
        return { status: res.status, body: (await res.json()) as Health["body"] };
      };
      options.progress("in-process service: starting with the database down");
      try {
        await service.start();
      } catch (error) {
        result.problems.push(
          `in-process service: start() rejected while the database was unreachable (${describeError(error)}); ` +
            "it should log and keep ticking (src/service.ts)",
        );
        service.scheduler.start(); // go on as if it had started, to test the recovery itself
      }
      const first = await expectHealth("healthz 503 while the database is down", health, down, 10_000);
      result.faults++;
      result.notes.push(`healthz while down: 503 ${first.body.async_migrations_error}`);
      const tick = await service.tick(200).then(
        (slice) => slice.outcomes.map((o) => o.outcome).join(","),
        (error: unknown) => `threw ${describeError(error)}`,
      );
      check(result, tick === "retrying", `a tick while the database is down: ${tick}, expected retrying`);

      options.progress("in-process service: the database comes up");
      let server = await startHranaServer({ dbPath: db.path, port });
      servers.push(server);
      await expectHealth("healthz 200 after the database came up", health, up, 30_000);
      await expectHealth(
        "the backfill to make progress",
        health,
        (h) => Number(h.body.async_migrations?.[0]?.rowsProcessed ?? 0) > 0,
        30_000,
      );
      options.progress("in-process service: an outage in the middle of the run");
      await server.close();
      await expectHealth("healthz 503 during the outage", health, down, 10_000);
      result.faults++;
      await sleep(300);
      server = await startHranaServer({ dbPath: db.path, port });
      servers.push(server);
      await expectHealth("the backfill to finish after the outage", health, done, 120_000);
      await service.stop();
      const local = db.open({ timeout: 5_000 });
      const final = await lastSeenById(local);
      const wrong = final.filter((entry, i) => entry !== oracle[i]).length;
      result.lost += wrong + Math.abs(final.length - oracle.length);
      check(
        result,
        wrong === 0 && final.length === oracle.length,
        `${wrong} rows differ from the one-shot statement`,
      );
      result.rowsVerified += oracle.length;

      // --- the Node entry (`npm start`) as a child process -------------------------------------------------
      if (options.node === false) return;
      const nodeDb = tempDb("remote-node.db");
      dbs.push(nodeDb);
      const nodeOracle = await seed(nodeDb, transmissions);
      const dbPort = await freePort();
      const httpPort = await freePort();
      options.progress("npm start: starting with the database down");
      node = startServerProcess({
        env: {
          DATABASE_URL: `http://127.0.0.1:${dbPort}`,
          PORT: String(httpPort),
          TRICKLE_TICK_MS: "100",
          TRICKLE_SNAPSHOT_TTL_MS: "0",
        },
        port: httpPort,
      });
      result.runs++;
      const nodeHealth = async (): Promise<Health> => {
        if (node!.child.exitCode !== null)
          throw new Error(`the Node service exited with ${node!.child.exitCode}: ${node!.output().trim()}`);
        try {
          const res = await fetch(node!.url("/api/healthz"));
          return { status: res.status, body: (await res.json()) as Health["body"] };
        } catch {
          return { status: 0, body: {} }; // not listening yet
        }
      };
      try {
        await expectHealth(
          "the Node service to answer 503 while the database is down",
          nodeHealth,
          down,
          30_000,
        );
      } catch (error) {
        result.problems.push(
          `npm start with the database down: ${describeError(error)} (src/node/server.ts gives up at start-up)`,
        );
        return;
      }
      result.faults++;
      options.progress("npm start: the database comes up");
      servers.push(await startHranaServer({ dbPath: nodeDb.path, port: dbPort }));
      await expectHealth("the Node service to finish the backfill", nodeHealth, done, 120_000);
      node.child.kill("SIGTERM");
      check(result, (await waitForExit(node, 15_000)).code === 0, "the Node service did not stop cleanly");
      const nodeFinal = await lastSeenById(nodeDb.open({ timeout: 5_000 }));
      const nodeWrong = nodeFinal.filter((entry, i) => entry !== nodeOracle[i]).length;
      result.lost += nodeWrong;
      check(result, nodeWrong === 0, `npm start: ${nodeWrong} rows differ from the one-shot statement`);
      result.rowsVerified += nodeOracle.length;
    },
    async () => {
      await service?.stop();
      if (node && node.child.exitCode === null && node.child.signalCode === null) node.child.kill("SIGKILL");
      for (const server of servers) await server.close();
      for (const db of dbs) db.cleanup();
    },
  );
}
