/**
 * The service in one process, for runtimes without threads (Workers, Deno, Bun) and for tests: the runner, its
 * scheduler, the snapshot cache it publishes into, the audited controls, and the app — all on one client. The
 * engine is assembled by src/engine/engine.ts, as on every other runtime; this adds the app and the lifecycle.
 *
 * Portable: no `node:*` imports. The Node entry does not use this (there the engine runs in a worker thread,
 * see src/node/server.ts) because the embedded libSQL client would run every step on the request thread.
 */

import type { Client } from "@libsql/client";
import type { Hono } from "hono";
import { createApp } from "./app.ts";
import type { ServiceConfig } from "./config.ts";
import type { MigrationControls } from "./engine/controls.ts";
import { createEngine, type EngineSettings } from "./engine/engine.ts";
import { classifyError } from "./engine/errors.ts";
import type { RunnerEvent } from "./engine/events.ts";
import { type LifecycleEvent, onLifecycle, type WebhookNotifier } from "./engine/hooks.ts";
import type { OperatorConfig } from "./engine/operator-config.ts";
import type { Runner, SliceResult } from "./engine/runner.ts";
import type { Scheduler } from "./engine/scheduler.ts";
import { resolveTuning } from "./engine/tuning.ts";
import type { SnapshotCache, SnapshotPublisher } from "./progress/snapshot.ts";
import { loadSettings } from "./settings.ts";

/** What the service reads from its configuration: `loadConfig(env)` gives all of it. */
export type ServiceSettings = Pick<
  ServiceConfig,
  "adminToken" | "cronSecret" | "migrations" | "tuning" | "tickMs" | "snapshotTtlMs"
> &
  Partial<Pick<ServiceConfig, "throttle" | "stuckAfterMs" | "webhook" | "yieldPolicy" | "sliceIntervalMs">>;

export interface ServiceOptions {
  readonly client: Client;
  /** `loadConfig(env)`; the operator settings (throttle, stuck threshold, webhook) default to none / 10 min. */
  readonly config: ServiceSettings;
  /** Lease owner id of this process's runner (default: a random one). */
  readonly owner?: string;
  /** One line per state change and per unexpected error. Default: console.log. */
  readonly log?: (line: string) => void;
  /** Let the process exit while only the scheduler's timer is pending. */
  readonly unrefTimers?: boolean;
  /** Wall clock in ms for snapshot ages (tests inject one). Default: `Date.now`. */
  readonly now?: () => number;
  /**
   * @deprecated `loadConfig(env)` already holds the operator settings. When given, these replace the config's
   * throttling, stuck threshold and webhook, and add their tuning.
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

/** Operator settings when the config leaves them out (a hand-built config): the environment's defaults. */
const DEFAULTS = loadSettings({});

function engineSettings(config: ServiceSettings, operator: OperatorConfig | undefined): EngineSettings {
  return {
    tuning: operator ? resolveTuning(config.tuning, operator.tuning) : config.tuning,
    tickMs: config.tickMs,
    snapshotTtlMs: config.snapshotTtlMs,
    throttle: operator?.throttle ?? config.throttle ?? DEFAULTS.throttle,
    stuckAfterMs: operator?.stuckAfterMs ?? config.stuckAfterMs ?? DEFAULTS.stuckAfterMs,
    webhook: operator ? operator.webhook : config.webhook,
    yieldPolicy: config.yieldPolicy ?? DEFAULTS.yieldPolicy,
    sliceIntervalMs: config.sliceIntervalMs ?? DEFAULTS.sliceIntervalMs,
  };
}

export function createService(options: ServiceOptions): Service {
  const { client, config } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const now = options.now ?? Date.now;
  const settings = engineSettings(config, options.operator);
  const engine = createEngine({
    client,
    settings,
    migrations: config.migrations,
    log,
    now,
    ...(options.owner !== undefined ? { owner: options.owner } : {}),
    ...(options.unrefTimers !== undefined ? { unrefTimers: options.unrefTimers } : {}),
  });
  const { runner, scheduler, snapshots, controls, notifier } = engine;
  const publisher = engine.publisher as SnapshotPublisher; // always present: `publish` is not false here
  runner.on(logStateChange(log));

  const app = createApp({
    config: {
      adminToken: config.adminToken,
      cronSecret: config.cronSecret,
      sliceBudgetMs: settings.tuning.sliceBudgetMs,
      stepTargetMs: settings.tuning.stepTargetMs,
      stuckAfterMs: settings.stuckAfterMs,
    },
    snapshots,
    controls,
    tick: engine.tick,
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
    tick: engine.tick,
    onLifecycle: (listener) => onLifecycle(runner, listener),
    hooksIdle: () => notifier?.idle() ?? Promise.resolve(),
    async start() {
      try {
        await engine.init();
      } catch (error) {
        // Locked or unreachable (a remote database still starting): start anyway. /api/healthz answers 503 with
        // the reason until the state can be read, and every slice retries init(). Static problems in a
        // definition are deterministic and still stop the start.
        if (classifyError(error).kind !== "transient") throw error;
      }
      scheduler.start();
    },
    stop: () => engine.stop(),
  };
}

/** A listener that logs one line per state change (never per step). */
export function logStateChange(log: (line: string) => void): (event: RunnerEvent) => void {
  const lastReason = new Map<string, string>();
  return (event) => {
    switch (event.type) {
      case "run-started":
        log(
          `trickle: ${event.name} started: counting candidates up to key ${event.maxKey ?? "(none: empty table)"}`,
        );
        break;
      case "counted":
        log(
          `trickle: ${event.name}: ${event.rowsTotal} candidate rows, keys ${event.minKey ?? "-"}..${event.maxKey ?? "-"}`,
        );
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
      case "scan":
        return;
    }
    lastReason.delete(event.name);
  };
}
