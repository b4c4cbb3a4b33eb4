/** What the routes are built from: ports injected by the runtime entry (Node, Workers, Deno, Bun, tests). */

import type { ControlPort } from "../engine/controls.ts";
import type { SliceResult } from "../engine/runner.ts";
import type { FleetSource } from "../fleet/view.ts";
import type { RequestStats } from "../progress/request-stats.ts";
import type { ServedSnapshot } from "../progress/snapshot.ts";

/** Serves progress snapshots (a `SnapshotCache`). */
export interface SnapshotSource {
  get(): Promise<ServedSnapshot>;
}

/** The slice of configuration the routes use. */
export interface AppConfig {
  /** Undefined: the control API answers 403. */
  readonly adminToken: string | undefined;
  /** Undefined: `/api/tick` answers 403. */
  readonly cronSecret: string | undefined;
  /**
   * Default and largest budget of an HTTP tick, ms: the configured slice budget (the settings keep it below the
   * lease TTL). `/api/tick?budgetMs=` above it is a 400 naming the limit.
   */
  readonly sliceBudgetMs: number;
  /** A running migration whose cursor has not moved for this long is reported `stuck` (default 10 min). */
  readonly stuckAfterMs?: number;
  /** The configured step target, ms: the line the status page draws step durations against. */
  readonly stepTargetMs?: number;
}

/** The routes' configuration out of the settings, the same for every runtime. */
export function appConfig(settings: {
  readonly adminToken: string | undefined;
  readonly cronSecret: string | undefined;
  readonly tuning: { readonly sliceBudgetMs: number; readonly stepTargetMs: number };
  readonly stuckAfterMs: number;
}): AppConfig {
  return {
    adminToken: settings.adminToken,
    cronSecret: settings.cronSecret,
    sliceBudgetMs: settings.tuning.sliceBudgetMs,
    stepTargetMs: settings.tuning.stepTargetMs,
    stuckAfterMs: settings.stuckAfterMs,
  };
}

export interface AppDeps {
  readonly config: AppConfig;
  readonly snapshots: SnapshotSource;
  readonly controls: ControlPort;
  /** Runs one slice within `budgetMs` (joins one in flight); absent where no runner is reachable. */
  readonly tick?: (budgetMs: number) => Promise<SliceResult>;
  /** The tenants of a fleet (`TRICKLE_FLEET_DATABASES`); `/api/fleet` answers 404 without one. */
  readonly fleet?: FleetSource;
  /** Wall clock, ms. */
  readonly now?: () => number;
  /** Per-route statistics for `/api/perf`; one is created when absent. */
  readonly requestStats?: RequestStats;
  /** One line per unexpected error; never given secrets. Default: console.error. */
  readonly log?: (line: string) => void;
}
