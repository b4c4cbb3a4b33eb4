/** Messages between the Node main thread (HTTP) and the engine's worker thread. Structured-clone safe. */
import type { DryRunOptions, DryRunReport } from "../engine/controls.ts";
import type { OperatorConfig } from "../engine/operator-config.ts";
import type { SliceResult } from "../engine/runner.ts";
import type { Tuning } from "../engine/tuning.ts";
import type { Snapshot } from "../progress/snapshot.ts";
import type { DatabaseConfig } from "./database.ts";

/** `workerData` of the engine worker. Migrations travel by name (definitions may hold functions). */
export interface WorkerConfig {
  readonly database: DatabaseConfig;
  readonly migrationNames: readonly string[];
  readonly tuning: Tuning;
  readonly tickMs: number;
  /** Lease owner id of the worker's runner. */
  readonly owner: string;
  /** Throttling, stuck detection, webhook, quarantine cap (plain data: it crosses the thread boundary). */
  readonly operator: OperatorConfig;
}

export type ToWorker =
  | { readonly type: "tick"; readonly id: number; readonly budgetMs: number }
  | { readonly type: "dry-run"; readonly id: number; readonly name: string; readonly options: DryRunOptions }
  /** Something changed the state (a control action): publish a fresh snapshot and tick now. */
  | { readonly type: "refresh" }
  | { readonly type: "stop" };

export type FromWorker =
  | { readonly type: "ready" }
  | { readonly type: "snapshot"; readonly snapshot: Snapshot }
  | { readonly type: "log"; readonly line: string }
  | { readonly type: "tick-result"; readonly id: number; readonly result: SliceResult }
  | { readonly type: "dry-run-result"; readonly id: number; readonly report: DryRunReport }
  | {
      readonly type: "request-failed";
      readonly id: number;
      readonly message: string;
      readonly stopping: boolean;
    }
  | { readonly type: "stopped" };
