/**
 * The engine's worker thread on Node. The embedded libSQL client runs every statement synchronously on the
 * calling thread, so the runner gets a thread — and a connection — of its own, and the HTTP thread stays free
 * while steps run. It ticks with the scheduler, publishes snapshots to the main thread by message, and answers
 * "tick" and "dry-run" requests. On "stop" it lets the slice in flight finish its step and release its lease,
 * closes its client and says "stopped".
 */
import { parentPort, workerData } from "node:worker_threads";
import { dryRunMigration } from "../engine/dry-run.ts";
import { createEngine } from "../engine/engine.ts";
import { classifyError } from "../engine/errors.ts";
import { SchedulerStoppedError } from "../engine/scheduler.ts";
import { logStateChange } from "../service.ts";
import { loadNodeConfig } from "./config.ts";
import { databaseConfig, openDatabase } from "./database.ts";
import type { FromWorker, ToWorker, WorkerConfig } from "./protocol.ts";

if (!parentPort) throw new Error("runner-worker.ts runs only as a worker thread (see src/node/server.ts)");
const port = parentPort;
const workerConfig = workerData as WorkerConfig;
const post = (message: FromWorker) => port.postMessage(message);
const log = (line: string) => post({ type: "log", line });

/** Longest wait for the write lock on the engine's own connection (file: databases), ms. */
const ENGINE_BUSY_TIMEOUT_MS = 1_000;

async function main(): Promise<void> {
  // The same loader as the main thread, on the same variables: the same settings and the same migrations,
  // user-defined ones (JSON, or modules with custom steps) included.
  const config = await loadNodeConfig(workerConfig.env, { configFile: workerConfig.configFile });
  const names = config.migrations.map((m) => m.name);
  if (names.join(",") !== workerConfig.migrationNames.join(",")) {
    throw new Error(
      `the engine thread loaded migrations ${names.join(", ")}, the server ${workerConfig.migrationNames.join(", ")}`,
    );
  }
  // The engine's connection may wait longer for the write lock than the request thread's: waiting blocks only
  // this worker, and giving up after 100 ms under a busy ingest only turns into back-off and a smaller batch.
  const database = databaseConfig(config);
  const client = await openDatabase({
    ...database,
    busyTimeoutMs: Math.max(database.busyTimeoutMs, ENGINE_BUSY_TIMEOUT_MS),
  });
  // Webhook deliveries run here, next to the runner that emits the events; the HTTP thread never waits for them.
  const engine = createEngine({
    client,
    settings: config,
    migrations: config.migrations,
    owner: workerConfig.owner,
    log,
    publish: (snapshot) => post({ type: "snapshot", snapshot }),
  });
  engine.runner.on(logStateChange(log));

  let stopping = false;
  port.on("message", (message: ToWorker) => {
    switch (message.type) {
      case "tick":
        engine.tick(message.budgetMs).then(
          (result) => post({ type: "tick-result", id: message.id, result }),
          (error: unknown) =>
            post({
              type: "request-failed",
              id: message.id,
              message: classifyError(error).message,
              stopping: error instanceof SchedulerStoppedError,
            }),
        );
        return;
      case "dry-run": {
        // Not through engine.controls: the HTTP thread's controls already audited this request.
        const migration = engine.runner.migrations.find((m) => m.name === message.name);
        const run = migration
          ? dryRunMigration(client, migration, { ...message.options, tuning: engine.runner.tuning })
          : Promise.reject(new Error(`unknown migration ${message.name}`));
        run.then(
          (report) => post({ type: "dry-run-result", id: message.id, report }),
          (error: unknown) =>
            post({ type: "request-failed", id: message.id, message: classifyError(error).message, stopping }),
        );
        return;
      }
      case "refresh":
        void engine.refresh();
        return;
      case "stop":
        if (stopping) return;
        stopping = true;
        void (async () => {
          await engine.stop();
          client.close();
          post({ type: "stopped" });
          port.close();
        })();
        return;
    }
  });

  try {
    await engine.init();
  } catch (error) {
    // The scheduler's slices call init() again; it is reported from there while it keeps failing.
    log(`trickle: engine start-up check failed, retrying: ${classifyError(error).message}`);
  }
  // The first snapshot goes out before the first tick, so the HTTP thread serves state from the start.
  await engine.refresh();
  engine.scheduler.start();
  post({ type: "ready" });
}

main().catch((error: unknown) => {
  log(`trickle: engine worker failed: ${classifyError(error).message}`);
  // An exit code the main thread sees as "engine died", so the service stops instead of serving stale state.
  process.exit(1);
});
