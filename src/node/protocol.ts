/** Messages between the Node main thread (HTTP) and the engine's worker thread. Structured-clone safe. */
import type { DryRunOptions, DryRunReport } from "../engine/controls.ts";
import type { SliceResult } from "../engine/runner.ts";
import type { Snapshot } from "../progress/snapshot.ts";

/**
 * `workerData` of the engine worker. Settings travel as the variables they come from, and the worker loads them
 * through the same loader as the main thread (src/node/config.ts): definitions may hold functions, which cannot
 * cross the thread boundary, and one loader means one meaning for every setting.
 */
export interface WorkerConfig {
  /** The environment's trickle variables (`SETTINGS_VARIABLES`), as the main thread read them. */
  readonly env: Readonly<Record<string, string>>;
  /** The migrations file given in place of `TRICKLE_CONFIG`, if any. */
  readonly configFile: string | undefined;
  /** What the main thread registered: the worker checks that it loaded the same. */
  readonly migrationNames: readonly string[];
  /** Lease owner id of the worker's runner. */
  readonly owner: string;
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
