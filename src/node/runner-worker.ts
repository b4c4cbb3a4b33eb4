/**
 * The engine's worker thread on Node. The embedded libSQL client runs every statement synchronously on the
 * calling thread, so the runner gets a thread — and a connection — of its own, and the HTTP thread stays free
 * while steps run. It ticks with the scheduler, publishes snapshots to the main thread by message, and answers
 * "tick" and "dry-run" requests. On "stop" it lets the slice in flight finish its step and release its lease,
 * closes its client and says "stopped".
 */
import { parentPort, workerData } from "node:worker_threads";
import { dryRunMigration } from "../engine/controls.ts";
import { classifyError } from "../engine/errors.ts";
import { WebhookNotifier } from "../engine/hooks.ts";
import { Runner } from "../engine/runner.ts";
import { Scheduler, SchedulerStoppedError } from "../engine/scheduler.ts";
import { resolveMigration } from "../migrations/define.ts";
import { BUILTIN_MIGRATIONS } from "../migrations/registry.ts";
import { SnapshotPublisher } from "../progress/snapshot.ts";
import { logStateChange } from "../service.ts";
import { openDatabase } from "./database.ts";
import type { FromWorker, ToWorker, WorkerConfig } from "./protocol.ts";

if (!parentPort) throw new Error("runner-worker.ts runs only as a worker thread (see src/node/server.ts)");
const port = parentPort;
const config = workerData as WorkerConfig;
const post = (message: FromWorker) => port.postMessage(message);
const log = (line: string) => post({ type: "log", line });

/** Longest wait for the write lock on the engine's own connection (file: databases), ms. */
const ENGINE_BUSY_TIMEOUT_MS = 1_000;

async function main(): Promise<void> {
  const migrations = config.migrationNames.map((name) => {
    const definition = BUILTIN_MIGRATIONS.find((m) => m.name === name);
    if (!definition) throw new Error(`unknown migration ${name}`);
    return definition;
  });
  // The engine's connection may wait longer for the write lock than the request thread's: waiting blocks only
  // this worker, and giving up after 100 ms under a busy ingest only turns into back-off and a smaller batch.
  const client = await openDatabase({
    ...config.database,
    busyTimeoutMs: Math.max(config.database.busyTimeoutMs, ENGINE_BUSY_TIMEOUT_MS),
  });
  const { operator } = config;
  const runner = new Runner({
    client,
    migrations,
    tuning: { ...config.tuning, ...operator.tuning },
    owner: config.owner,
    throttle: operator.throttle,
  });
  const names = runner.migrations.map((m) => m.name);
  runner.on(logStateChange(log));
  // Deliveries run here, next to the runner that emits the events; the HTTP thread never waits for them.
  const notifier = operator.webhook ? new WebhookNotifier({ ...operator.webhook, log }) : undefined;
  notifier?.attach(runner);
  const publisher = new SnapshotPublisher({
    runner,
    names,
    stuckAfterMs: operator.stuckAfterMs,
    publish: (snapshot) => post({ type: "snapshot", snapshot }),
  });

  let failing = false;
  const scheduler = new Scheduler({
    runSlice: (budgetMs, signal) => runner.runSlice(budgetMs, signal),
    sliceBudgetMs: config.tuning.sliceBudgetMs,
    tickMs: config.tickMs,
    yieldMs: config.tuning.yieldMs,
    onSlice: (result) => {
      if (failing) log("trickle: slices succeed again");
      failing = false;
      if (result.steps > 0) void publisher.refresh();
    },
    onError: (error) => {
      // One line when slices start failing (the database is unreachable…), not one per tick.
      if (!failing) log(`trickle: slice failed, retrying every tick: ${classifyError(error).message}`);
      failing = true;
    },
  });

  let stopping = false;
  port.on("message", (message: ToWorker) => {
    switch (message.type) {
      case "tick":
        scheduler.runOnce(message.budgetMs).then(
          (result) => {
            if (result.steps > 0) void publisher.refresh();
            post({ type: "tick-result", id: message.id, result });
          },
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
        const definition = migrations.find((m) => m.name === message.name);
        const run = definition
          ? dryRunMigration(client, resolveMigration(definition), {
              ...message.options,
              tuning: runner.tuning,
            })
          : Promise.reject(new Error(`unknown migration ${message.name}`));
        run.then(
          (report) => post({ type: "dry-run-result", id: message.id, report }),
          (error: unknown) =>
            post({ type: "request-failed", id: message.id, message: classifyError(error).message, stopping }),
        );
        return;
      }
      case "refresh":
        void publisher.refresh();
        scheduler.wake();
        return;
      case "stop":
        if (stopping) return;
        stopping = true;
        void (async () => {
          await scheduler.stop();
          publisher.stop();
          if (notifier && notifier.pending > 0)
            await Promise.race([notifier.idle(), new Promise((resolve) => setTimeout(resolve, 5_000))]);
          client.close();
          post({ type: "stopped" });
          port.close();
        })();
        return;
    }
  });

  try {
    await runner.init();
  } catch (error) {
    // The scheduler's slices call init() again; it is reported from there while it keeps failing.
    log(`trickle: engine start-up check failed, retrying: ${classifyError(error).message}`);
  }
  await publisher.refresh();
  scheduler.start();
  post({ type: "ready" });
}

main().catch((error: unknown) => {
  log(`trickle: engine worker failed: ${classifyError(error).message}`);
  // An exit code the main thread sees as "engine died", so the service stops instead of serving stale state.
  process.exit(1);
});
