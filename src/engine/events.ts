/** What a runner does, as typed events (for logs, progress bars, snapshots, hooks and tests). */
import type { ThrottleSignal } from "./throttle.ts";

export type RunnerEvent =
  | {
      readonly type: "run-started";
      readonly name: string;
      readonly rowsTotal: bigint;
      readonly minKey: bigint | null;
      readonly maxKey: bigint | null;
    }
  | {
      readonly type: "step";
      readonly name: string;
      /** Keys the step covered at most (its batch size). */
      readonly batchSize: number;
      /** Candidate rows this step processed. */
      readonly rows: bigint;
      readonly cursor: bigint | null;
      readonly rowsProcessed: bigint;
      /** How long the step held the write lock, ms. */
      readonly durationMs: number;
      /** How long it waited for the lock first, ms (on a local file; 0 elsewhere, where the two are not told apart). */
      readonly lockWaitMs: number;
      /** Batch size chosen for the next step. */
      readonly nextBatchSize: number;
    }
  | {
      readonly type: "retrying";
      readonly name: string;
      readonly code: string;
      readonly message: string;
      readonly delayMs: number;
      readonly attempt: number;
    }
  | { readonly type: "waiting"; readonly name: string; readonly reason: string }
  | { readonly type: "lease-lost"; readonly name: string }
  | { readonly type: "sweep"; readonly name: string; readonly residual: bigint; readonly pass: number }
  /** One piece of a read-only walk (counting candidates, or verifying) was recorded. */
  | {
      readonly type: "scan";
      readonly name: string;
      readonly phase: "counting" | "verifying";
      readonly scanCursor: bigint;
      readonly scanCount: bigint;
    }
  /** Counting finished: the data walk covers `[minKey, maxKey]` and `rowsTotal` candidates. */
  | {
      readonly type: "counted";
      readonly name: string;
      readonly rowsTotal: bigint;
      readonly minKey: bigint | null;
      readonly maxKey: bigint | null;
    }
  | {
      readonly type: "done";
      readonly name: string;
      readonly rowsProcessed: bigint;
      /** Candidate rows of the run (re-sweeps included); set by this version's runner. */
      readonly rowsTotal?: bigint;
      /** Rows skipped as poison rows and still unresolved. */
      readonly quarantined?: bigint;
    }
  | {
      readonly type: "failed";
      readonly name: string;
      readonly message: string;
      readonly rowsProcessed?: bigint;
      readonly rowsTotal?: bigint;
    }
  /** A migration that depends on others waits for them (`reason` names them and their status). */
  | { readonly type: "blocked"; readonly name: string; readonly reason: string }
  /** The throttle's probe query ran (`ok` false: it failed); `limitMs` is the latency that holds the work back. */
  | {
      readonly type: "probe";
      readonly name: string;
      readonly durationMs: number;
      readonly limitMs: number;
      readonly ok: boolean;
    }
  /** A throttle signal tripped; the migration holds back until `untilMs` (wall clock). */
  | {
      readonly type: "throttled";
      readonly name: string;
      readonly signal: ThrottleSignal;
      readonly policy: "backoff" | "hold";
      readonly reason: string;
      readonly untilMs: number;
    }
  /** A step failed on this key alone; the row was recorded and skipped (poison-row quarantine). */
  | {
      readonly type: "quarantined";
      readonly name: string;
      readonly key: bigint;
      readonly message: string;
      /** Unresolved quarantined rows of the migration now. */
      readonly quarantined: bigint;
    }
  /** A quarantined row was retried on an operator's request. */
  | {
      readonly type: "quarantine-retried";
      readonly name: string;
      readonly key: bigint;
      readonly resolved: boolean;
      readonly message: string | null;
    }
  /** A deterministic step error is being bisected: the next step covers `size` keys of the `suspect` ones. */
  | { readonly type: "bisecting"; readonly name: string; readonly suspect: number; readonly size: number };

export type RunnerEventListener = (event: RunnerEvent) => void;
