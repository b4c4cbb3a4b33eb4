/**
 * What the parts of a run share with the `Runner` that owns them — its connection (and its settings for steps)
 * and state store, its clocks, its throttle, what it knows in-process about each migration, its event
 * listeners — and the few things every part does the same way: back off after a transient error, and fail a
 * migration.
 */
import type { Client } from "@libsql/client";
import type { BatchSizer } from "../batch-sizer.ts";
import type { Clock } from "../clock.ts";
import { type ClassifiedError, classifyError } from "../errors.ts";
import type { RunnerEvent } from "../events.ts";
import type { Lease, MigrationRow } from "../state/row.ts";
import type { StateStore } from "../state/store.ts";
import type { StepConnection } from "../step-connection.ts";
import type { Throttle } from "../throttle.ts";
import type { Tuning } from "../tuning.ts";
import type { Yielder } from "../yield.ts";

/** How one migration's part of a slice ended. */
export type MigrationOutcome =
  | "budget" // stopped because the next step would overrun the budget
  | "done"
  | "failed"
  | "waiting" // cannot start yet (missing tables)
  | "blocked" // waits for the migrations it depends on
  | "throttled" // a throttle signal holds it back for now
  | "retrying" // transient error; backing off
  | "lease-lost"
  | "leased-elsewhere"
  | "stopped"; // the caller's signal aborted

/** What one slice knows across migrations: statuses as they change, and outcomes so far. */
export interface SliceState {
  readonly statuses: Map<string, string>;
  readonly outcomes: Map<string, MigrationOutcome>;
}

/** A throttle as the runner knows it in-process. */
export interface RunnerThrottleState {
  readonly reason: string;
  readonly policy: "backoff" | "hold";
  /** Wall-clock ms. */
  readonly untilMs: number;
}

/** What this runner knows about a migration beyond its row: why it waits, how it is sized. */
export interface RunnerMigrationState {
  readonly name: string;
  readonly reason: string | null;
  readonly attempts: number;
  readonly batchSize: number | null;
  readonly lastStepMs: number | null;
  readonly throttle: RunnerThrottleState | null;
}

export type InProcessState = Omit<RunnerMigrationState, "name">;

const INITIAL: InProcessState = {
  reason: null,
  attempts: 0,
  batchSize: null,
  lastStepMs: null,
  throttle: null,
};

/** The in-process state of each migration (reasons not yet, or not possibly, written to the database). */
export class InProcessStates {
  readonly #states = new Map<string, InProcessState>();

  get(name: string): InProcessState {
    return this.#states.get(name) ?? INITIAL;
  }

  set(name: string, patch: Partial<InProcessState>): void {
    this.#states.set(name, { ...this.get(name), ...patch });
  }
}

/** The runner's parts, as every part of a run uses them. */
export interface RunContext {
  readonly client: Client;
  readonly store: StateStore;
  /** Lease owner id of this runner. */
  readonly owner: string;
  /** The runner's tuning (before any definition's). */
  readonly tuning: Tuning;
  readonly clock: Clock;
  /** Wall clock in ms (quiet hours, throttle deadlines, ETA points). */
  readonly wallClock: () => number;
  readonly throttle: Throttle;
  /** No checkpoint and no log sync inside a step, on a local file (../step-connection.ts). */
  readonly stepConnection: StepConnection;
  /** The pause after work that held the write lock (../yield.ts). */
  readonly yielder: Yielder;
  readonly states: InProcessStates;
  /** The runner's tuning with the definition's on top (live overrides come on top of that, per lease). */
  tuningOf(name: string): Tuning;
  emit(event: RunnerEvent): void;
}

/** Records a transient error and returns how long to wait before the next attempt. */
export function backoff(
  ctx: RunContext,
  name: string,
  t: Tuning,
  error: ClassifiedError,
  sizer?: BatchSizer,
): number {
  const attempts = ctx.states.get(name).attempts + 1;
  const base = Math.min(t.retryMaxMs, t.retryMinMs * 2 ** Math.min(attempts - 1, 20));
  const delayMs = Math.round(base * (0.75 + Math.random() * 0.5));
  sizer?.shrink();
  const reason = `${error.code}: ${error.message} (attempt ${attempts}, retrying in ${delayMs} ms)`;
  ctx.states.set(name, { reason, attempts, ...(sizer ? { batchSize: sizer.size } : {}) });
  ctx.emit({ type: "retrying", name, code: error.code, message: error.message, delayMs, attempt: attempts });
  return delayMs;
}

/**
 * Fails the migration with `message` (fenced). If even that cannot be written, the outcome says why: the lease
 * is gone, or the next slice meets the same error again.
 */
export async function fail(
  ctx: RunContext,
  lease: Lease,
  message: string,
  fields: { residual?: bigint; row?: MigrationRow; failedSteps?: number } = {},
): Promise<MigrationOutcome> {
  try {
    await ctx.store.markFailed(lease, message, {
      ...(fields.residual === undefined ? {} : { residual: fields.residual }),
      ...(fields.failedSteps === undefined ? {} : { failedSteps: fields.failedSteps }),
    });
  } catch (thrown) {
    const error = classifyError(thrown);
    if (error.kind === "lease-lost") return "lease-lost";
    return "retrying"; // could not record the failure; the next slice meets the same error again
  }
  ctx.states.set(lease.name, { reason: null });
  ctx.emit({
    type: "failed",
    name: lease.name,
    message,
    ...(fields.row ? { rowsProcessed: fields.row.rowsProcessed, rowsTotal: fields.row.rowsTotal } : {}),
  });
  return "failed";
}
