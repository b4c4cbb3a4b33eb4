/**
 * The engine, assembled in one place (design invariant 12): the runner, its scheduler, the snapshot publisher,
 * the webhook notifier and the audited controls, all built from the same settings. Every runtime uses this —
 * the in-process service (Workers, Deno, Bun, tests: src/service.ts), the Node engine thread
 * (src/node/runner-worker.ts), the Node HTTP thread's start-up checks and controls (src/node/server.ts) and the
 * CLI — so a setting means the same thing everywhere.
 *
 * Portable: no `node:*` imports.
 */
import type { Client } from "@libsql/client";
import type { MigrationDefinition } from "../migrations/define.ts";
import { readSnapshot, type Snapshot, SnapshotCache, SnapshotPublisher } from "../progress/snapshot.ts";
import type { Settings } from "../settings.ts";
import { type DryRunOptions, type DryRunReport, MigrationControls } from "./controls.ts";
import { classifyError } from "./errors.ts";
import { WebhookNotifier } from "./hooks.ts";
import { moved, Runner, type SliceResult } from "./runner.ts";
import { Scheduler } from "./scheduler.ts";

/** The settings the engine reads. */
export type EngineSettings = Pick<
  Settings,
  "tuning" | "tickMs" | "snapshotTtlMs" | "throttle" | "stuckAfterMs" | "webhook"
> &
  Partial<Pick<Settings, "yieldPolicy" | "sliceIntervalMs">>;

/** The runner every runtime uses: tuning and throttling straight from the settings. */
export function createRunner(options: {
  readonly client: Client;
  readonly settings: Pick<EngineSettings, "tuning" | "yieldPolicy" | "throttle">;
  readonly migrations: readonly MigrationDefinition[];
  readonly owner?: string;
}): Runner {
  return new Runner({
    client: options.client,
    migrations: options.migrations,
    tuning: options.settings.tuning,
    ...(options.settings.yieldPolicy ? { yieldPolicy: options.settings.yieldPolicy } : {}),
    throttle: options.settings.throttle,
    ...(options.owner !== undefined ? { owner: options.owner } : {}),
  });
}

/** The controls (pause, resume, live tuning, dry-runs, quarantine) every runtime uses. */
export function createControls(options: {
  readonly client: Client;
  readonly settings: Pick<EngineSettings, "tuning">;
  readonly migrations: readonly MigrationDefinition[];
  /** Where requests come from, kept in the audit trail: `http`, `cli`. */
  readonly source: string;
  readonly onChange?: () => void;
  /** Runs dry-runs elsewhere (Node: in the engine thread, off the request thread). */
  readonly dryRun?: (name: string, options: DryRunOptions) => Promise<DryRunReport>;
}): MigrationControls {
  return new MigrationControls({
    client: options.client,
    migrations: options.migrations,
    tuning: options.settings.tuning,
    source: options.source,
    ...(options.onChange ? { onChange: options.onChange } : {}),
    ...(options.dryRun ? { dryRun: options.dryRun } : {}),
  });
}

export interface EngineOptions {
  readonly client: Client;
  readonly settings: EngineSettings;
  /** The migrations this engine registers and runs. */
  readonly migrations: readonly MigrationDefinition[];
  /** Lease owner id of the runner (default: a random one). */
  readonly owner?: string;
  /** One line per state change and per unexpected error. Default: console.log. */
  readonly log?: (line: string) => void;
  /** Wall clock in ms for snapshot ages (tests inject one). Default: `Date.now`. */
  readonly now?: () => number;
  /** Let the process exit while only the scheduler's timer is pending. */
  readonly unrefTimers?: boolean;
  /**
   * Where published snapshots go. Default: into `engine.snapshots`, the in-process cache the read routes serve.
   * A function: somewhere else too (the Node engine thread posts them to the HTTP thread). `false`: no
   * publisher at all (the CLI, where nobody reads them).
   */
  readonly publish?: ((snapshot: Snapshot) => void) | false;
  /** Audit source of control actions (default `http`). */
  readonly source?: string;
}

export interface Engine {
  readonly runner: Runner;
  readonly scheduler: Scheduler;
  /** The snapshot cache the read routes serve (fed by the publisher, read through on a miss). */
  readonly snapshots: SnapshotCache;
  /** Undefined when `publish: false`. */
  readonly publisher: SnapshotPublisher | undefined;
  /** Delivers lifecycle events to `TRICKLE_WEBHOOK_URL`, when configured. */
  readonly notifier: WebhookNotifier | undefined;
  readonly controls: MigrationControls;
  /** One slice within `budgetMs` (default: the slice budget), joining one in flight. */
  tick(budgetMs?: number): Promise<SliceResult>;
  /**
   * Something outside changed the state (or nothing was published yet): publish a fresh snapshot and tick now.
   * Resolves once the snapshot went out (never rejects).
   */
  refresh(): Promise<void>;
  /** Creates/upgrades the state table and registers the migrations (transient errors are the caller's call). */
  init(): Promise<void>;
  /** Stops ticking; resolves once the slice in flight finished its step and released its lease, and webhook
   * deliveries in flight had a bounded chance to finish. */
  stop(): Promise<void>;
}

/** How long `stop()` waits for webhook deliveries in flight; they never hold a step. */
const HOOKS_STOP_WAIT_MS = 5_000;

export function createEngine(options: EngineOptions): Engine {
  const { client, settings } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const now = options.now ?? Date.now;
  const runner = createRunner({
    client,
    settings,
    migrations: options.migrations,
    ...(options.owner !== undefined ? { owner: options.owner } : {}),
  });
  const names = runner.migrations.map((m) => m.name);
  const { stuckAfterMs } = settings;
  const notifier = settings.webhook ? new WebhookNotifier({ ...settings.webhook, log }) : undefined;
  notifier?.attach(runner);

  // Snapshots go out from one publisher: on the runner's events (every step, throttled; status changes at
  // once), after every slice that moved (below, for timer and HTTP ticks alike), and on `refresh()`. The cache
  // the read routes serve takes them, and reads one itself the same way on a miss.
  let publisher: SnapshotPublisher | undefined;
  const snapshots = new SnapshotCache({
    ttlMs: settings.snapshotTtlMs,
    now,
    read: () => readSnapshot(runner, { names, now, stuckAfterMs, recorder: publisher?.recorder }),
  });
  if (options.publish !== false) {
    const elsewhere = options.publish;
    publisher = new SnapshotPublisher({
      runner,
      names,
      now,
      stuckAfterMs,
      publish: (snapshot) => {
        snapshots.publish(snapshot);
        elsewhere?.(snapshot);
      },
    });
  }

  let failing = false;
  const scheduler = new Scheduler({
    // Every slice goes through the scheduler (timer ticks, HTTP ticks, wake-ups): one that moved publishes.
    runSlice: async (budgetMs, signal) => {
      const result = await runner.runSlice(budgetMs, signal);
      if (moved(result)) void publisher?.refresh();
      return result;
    },
    sliceBudgetMs: settings.tuning.sliceBudgetMs,
    tickMs: settings.tickMs,
    yieldMs: settings.tuning.yieldMs,
    sliceIntervalMs: settings.sliceIntervalMs ?? 0,
    unref: options.unrefTimers ?? false,
    onSlice: () => {
      if (failing) log("trickle: slices succeed again");
      failing = false;
    },
    onError: (error) => {
      // One line when slices start failing (the database is unreachable…), not one per tick.
      if (!failing) log(`trickle: slice failed, retrying every tick: ${classifyError(error).message}`);
      failing = true;
    },
  });

  const controls = createControls({
    client,
    settings,
    migrations: options.migrations,
    source: options.source ?? "http",
    onChange: () => {
      snapshots.invalidate();
      scheduler.wake();
    },
  });

  return {
    runner,
    scheduler,
    snapshots,
    publisher,
    notifier,
    controls,
    tick: (budgetMs = settings.tuning.sliceBudgetMs) => scheduler.runOnce(budgetMs),
    async refresh() {
      snapshots.invalidate();
      const published = publisher?.refresh();
      scheduler.wake();
      await published;
    },
    init: () => runner.init(),
    async stop() {
      await scheduler.stop();
      publisher?.stop();
      if (notifier && notifier.pending > 0)
        await Promise.race([
          notifier.idle(),
          new Promise((resolve) => setTimeout(resolve, HOOKS_STOP_WAIT_MS)),
        ]);
    },
  };
}
