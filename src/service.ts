/**
 * The service in one process, for runtimes without threads (Workers, Deno, Bun) and for tests: the runner, its
 * scheduler, the snapshot cache it publishes into, the audited controls, and the app — all on one client.
 *
 * Portable: no `node:*` imports. The Node entry does not use this (there the engine runs in a worker thread,
 * see src/node/server.ts) because the embedded libSQL client would run every step on the request thread.
 */

import type { Client } from "@libsql/client";
import type { Hono } from "hono";
import { createApp } from "./app.ts";
import type { ServiceConfig } from "./config.ts";
import { MigrationControls } from "./engine/controls.ts";
import { classifyError } from "./engine/errors.ts";
import type { RunnerEvent } from "./engine/events.ts";
import { type LifecycleEvent, onLifecycle, WebhookNotifier } from "./engine/hooks.ts";
import { DEFAULT_OPERATOR_CONFIG, type OperatorConfig } from "./engine/operator-config.ts";
import { Runner, type SliceResult } from "./engine/runner.ts";
import { Scheduler } from "./engine/scheduler.ts";
import { resolveTuning } from "./engine/tuning.ts";
import { buildSnapshot, SnapshotCache, SnapshotPublisher } from "./progress/snapshot.ts";

export interface ServiceOptions {
  readonly client: Client;
  readonly config: Pick<
    ServiceConfig,
    "adminToken" | "cronSecret" | "migrations" | "tuning" | "tickMs" | "snapshotTtlMs"
  >;
  /** Lease owner id of this process's runner (default: a random one). */
  readonly owner?: string;
  /** One line per state change and per unexpected error. Default: console.log. */
  readonly log?: (line: string) => void;
  /** Let the process exit while only the scheduler's timer is pending. */
  readonly unrefTimers?: boolean;
  /** Wall clock in ms for snapshot ages (tests inject one). Default: `Date.now`. */
  readonly now?: () => number;
  /**
   * Throttling, stuck detection, the lifecycle webhook and the quarantine cap (`loadOperatorConfig(env)`).
   * Default: no throttling, stuck after 10 min, no webhook.
   */
  readonly operator?: OperatorConfig;
}

export interface Service {
  readonly app: Hono;
  readonly runner: Runner;
  readonly scheduler: Scheduler;
  readonly snapshots: SnapshotCache;
  readonly controls: MigrationControls;
  readonly publisher: SnapshotPublisher;
  /** Delivers lifecycle events to `TRICKLE_WEBHOOK_URL`, when configured. */
  readonly notifier: WebhookNotifier | undefined;
  /** One slice within `budgetMs`, joining one in flight (what `/api/tick` and cron handlers call). */
  tick(budgetMs?: number): Promise<SliceResult>;
  /** Calls `listener` when a migration ends (`done` or `failed`). Returns the unsubscribe. */
  onLifecycle(listener: (event: LifecycleEvent) => void): () => void;
  /**
   * Resolves once the webhook deliveries started so far have ended (a cron invocation on Workers passes this to
   * `ctx.waitUntil`, so a delivery is not cut off when the invocation ends).
   */
  hooksIdle(): Promise<void>;
  /** Creates/upgrades the state table, registers the migrations, starts ticking. */
  start(): Promise<void>;
  /** Stops ticking; resolves once the slice in flight finished its step and released its lease. */
  stop(): Promise<void>;
}

export function createService(options: ServiceOptions): Service {
  const { client, config } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const now = options.now ?? Date.now;
  const operator = options.operator ?? DEFAULT_OPERATOR_CONFIG;
  const tuning = resolveTuning(config.tuning, operator.tuning);
  const runner = new Runner({
    client,
    migrations: config.migrations,
    tuning,
    throttle: operator.throttle,
    ...(options.owner !== undefined ? { owner: options.owner } : {}),
  });
  const names = runner.migrations.map((m) => m.name);
  const stuckAfterMs = operator.stuckAfterMs;
  const notifier = operator.webhook ? new WebhookNotifier({ ...operator.webhook, log }) : undefined;
  notifier?.attach(runner);

  let publisher: SnapshotPublisher | undefined;
  const snapshots = new SnapshotCache({
    ttlMs: config.snapshotTtlMs,
    now,
    read: async () =>
      buildSnapshot(await runner.store.list(), {
        names,
        takenAt: now(),
        runnerState: runner.state(),
        stuckAfterMs,
        ...(publisher
          ? { steps: publisher.recorder.history(), stepHistogram: publisher.recorder.histograms() }
          : {}),
      }),
  });
  publisher = new SnapshotPublisher({
    runner,
    names,
    now,
    stuckAfterMs,
    publish: (s) => snapshots.publish(s),
  });
  runner.on(logStateChange(log));

  const scheduler = new Scheduler({
    runSlice: (budgetMs, signal) => runner.runSlice(budgetMs, signal),
    sliceBudgetMs: config.tuning.sliceBudgetMs,
    tickMs: config.tickMs,
    yieldMs: config.tuning.yieldMs,
    unref: options.unrefTimers ?? false,
    onSlice: (result) => {
      if (result.steps > 0) void publisher?.refresh();
    },
    onError: (error) => log(`trickle: slice failed: ${(error as Error)?.message ?? String(error)}`),
  });

  const controls = new MigrationControls({
    client,
    migrations: config.migrations,
    tuning,
    source: "http",
    onChange: () => {
      snapshots.invalidate();
      scheduler.wake();
    },
  });

  const tick = (budgetMs: number = config.tuning.sliceBudgetMs) => scheduler.runOnce(budgetMs);
  const app = createApp({
    config: {
      adminToken: config.adminToken,
      cronSecret: config.cronSecret,
      sliceBudgetMs: config.tuning.sliceBudgetMs,
      stuckAfterMs,
    },
    snapshots,
    controls,
    tick,
    now,
    log,
  });

  return {
    app,
    runner,
    scheduler,
    snapshots,
    controls,
    publisher,
    notifier,
    tick,
    onLifecycle: (listener) => onLifecycle(runner, listener),
    hooksIdle: () => notifier?.idle() ?? Promise.resolve(),
    async start() {
      try {
        await runner.init();
      } catch (error) {
        // Locked or unreachable (a remote database still starting): start anyway. /api/healthz answers 503 with
        // the reason until the state can be read, and every slice retries init(). Static problems in a
        // definition are deterministic and still stop the start.
        if (classifyError(error).kind !== "transient") throw error;
      }
      scheduler.start();
    },
    async stop() {
      await scheduler.stop();
      publisher?.stop();
      // Give webhook deliveries in flight a bounded chance to finish; they never hold a step.
      if (notifier && notifier.pending > 0) await Promise.race([notifier.idle(), delay(HOOKS_STOP_WAIT_MS)]);
    },
  };
}

const HOOKS_STOP_WAIT_MS = 5_000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A listener that logs one line per state change (never per step). */
export function logStateChange(log: (line: string) => void): (event: RunnerEvent) => void {
  const lastReason = new Map<string, string>();
  return (event) => {
    switch (event.type) {
      case "run-started":
        log(`trickle: ${event.name} started: ${event.rowsTotal} candidate rows`);
        break;
      case "sweep":
        log(`trickle: ${event.name} pass ${event.pass}: re-sweeping ${event.residual} rows`);
        break;
      case "done":
        log(
          `trickle: ${event.name} done: ${event.rowsProcessed} rows` +
            (event.quarantined
              ? `, ${event.quarantined} quarantined (see /api/migrations/${event.name}/failures)`
              : ""),
        );
        break;
      case "failed":
        log(`trickle: ${event.name} failed: ${event.message}`);
        break;
      case "waiting":
        if (lastReason.get(event.name) !== event.reason) log(`trickle: ${event.name} ${event.reason}`);
        lastReason.set(event.name, event.reason);
        return;
      case "retrying":
        // One line when a streak of transient errors starts, not one per attempt.
        if (event.attempt === 1) log(`trickle: ${event.name} retrying after ${event.code}: ${event.message}`);
        break;
      case "lease-lost":
        log(`trickle: ${event.name} lease lost (paused, cancelled, or taken over)`);
        break;
      case "blocked":
        if (lastReason.get(event.name) !== event.reason) log(`trickle: ${event.name} ${event.reason}`);
        lastReason.set(event.name, event.reason);
        return;
      case "throttled":
        log(`trickle: ${event.name} throttled (${event.signal}): ${event.reason}`);
        break;
      case "quarantined":
        log(
          `trickle: ${event.name} quarantined key ${event.key} (${event.quarantined} in all): ${event.message}`,
        );
        break;
      case "quarantine-retried":
        log(
          `trickle: ${event.name} retry of quarantined key ${event.key}: ${event.resolved ? "resolved" : `failed again: ${event.message}`}`,
        );
        break;
      case "step":
      case "bisecting":
        return;
    }
    lastReason.delete(event.name);
  };
}
