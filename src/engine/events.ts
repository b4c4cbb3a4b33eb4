/** What a runner does, as typed events (for logs, progress bars, snapshots and tests). */
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
      readonly durationMs: number;
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
  | { readonly type: "done"; readonly name: string; readonly rowsProcessed: bigint }
  | { readonly type: "failed"; readonly name: string; readonly message: string };

export type RunnerEventListener = (event: RunnerEvent) => void;
