/**
 * Poison rows. A deterministic error that rows may cause is narrowed down by bisection — the next steps cover
 * half of the suspect keys, then half again, down to a single key read just before its step — and that key is
 * quarantined: recorded in `_async_migration_failures` and skipped, in the same fenced batch as the cursor move,
 * while the run goes on (up to `maxQuarantined`). An operator may ask for quarantined rows to be retried; the
 * runner re-applies the change to each in its own fenced batch.
 */
import type { BatchSizer } from "../batch-sizer.ts";
import { type ClassifiedError, classifyError } from "../errors.ts";
import type { MigrationPlan } from "../plan.ts";
import type { Lease, MigrationRow } from "../state/row.ts";
import type { Tuning } from "../tuning.ts";
import { fail, type MigrationOutcome, type RunContext } from "./context.ts";

/** Quarantined-row retries one slice may run per migration. */
const RETRIES_PER_SLICE = 100;

/** Where a run stands in narrowing a failing step down to its poison row. */
export class Bisection {
  /** Keys after the cursor known to hold a row that fails (bisection in progress), or null. */
  suspect: number | null = null;
  /** Deterministic step failures not yet written to `failed_steps`. */
  failedAttempts = 0;
  /** A single-key step failed with this error: quarantine that key next. */
  poison: { readonly error: ClassifiedError; readonly key: bigint } | null = null;

  /** The size of the next step: `size`, or while bisecting the first half of the suspect keys, down to one. */
  narrow(size: number): number {
    if (this.suspect === null) return size;
    return Math.min(size, this.suspect > 1 ? Math.ceil(this.suspect / 2) : 1);
  }

  /** A step of `size` keys committed (its progress update recorded the failed attempts before it). */
  stepped(size: number): void {
    this.failedAttempts = 0;
    if (this.suspect !== null) this.suspect = this.suspect - size > 0 ? this.suspect - size : null;
  }

  /** A step of `size` keys failed on a row: bisect its keys, or, for a single named key, quarantine it next. */
  failed(size: number, key: bigint | null, error: ClassifiedError): void {
    if (size > 1 || key === null) this.suspect = size;
    else this.poison = { error, key };
  }

  /** The poison key was quarantined: one suspect key fewer. */
  quarantined(): void {
    this.failedAttempts = 0;
    this.suspect = this.suspect !== null && this.suspect > 1 ? this.suspect - 1 : null;
  }
}

/**
 * `key`, the key of a single-key step, failed on its own: record it and move the cursor to it in ONE fenced batch
 * (`MigrationPlan.quarantineBatch`), unless that would take the run over its quarantine cap (then the migration
 * fails). Returns the row as it now stands, or how this slice ends.
 */
export async function quarantine(
  ctx: RunContext,
  plan: MigrationPlan,
  lease: Lease,
  row: MigrationRow,
  t: Tuning,
  poison: { readonly error: ClassifiedError; readonly key: bigint },
  failedAttempts: number,
): Promise<MigrationRow | MigrationOutcome> {
  const { error, key } = poison;
  if (row.quarantined + 1n > BigInt(t.maxQuarantined)) {
    return fail(
      ctx,
      lease,
      `${row.quarantined} rows are quarantined and another one failed, more than the cap of ${t.maxQuarantined} (maxQuarantined); last error: ${error.message}`,
      { row, failedSteps: failedAttempts },
    );
  }
  const batch = plan.quarantineBatch(lease, { key, pass: row.pass, error: error.message, failedAttempts });
  const { cursor, quarantined } = batch.decode(await ctx.client.batch(batch.statements, "write"));
  ctx.emit({
    type: "quarantined",
    name: plan.migration.name,
    key: cursor,
    message: error.message,
    quarantined,
  });
  return { ...row, cursor, quarantined, failedSteps: row.failedSteps + BigInt(failedAttempts) };
}

/**
 * Re-applies the change to quarantined rows an operator asked to retry, each in its own fenced batch
 * (`MigrationPlan.retryBatch`). A retry that fails again stays quarantined, its attempt recorded. Returns the row
 * as it now stands, or how this slice ends; a lost lease or a transient error is thrown to the caller.
 */
export async function retryQuarantined(
  ctx: RunContext,
  plan: MigrationPlan,
  lease: Lease,
  startRow: MigrationRow,
  deadline: number,
  sizer: BatchSizer,
  signal: AbortSignal | undefined,
): Promise<MigrationRow | MigrationOutcome> {
  const name = plan.migration.name;
  let row = startRow;
  const keys = await ctx.store.failuresToRetry(name, RETRIES_PER_SLICE);
  for (const key of keys) {
    if (signal?.aborted) return "stopped";
    if (sizer.sizeWithin(deadline - ctx.clock.now()) === 0) return "budget";
    try {
      const batch = plan.retryBatch(lease, key);
      const { rowsProcessed, quarantined } = batch.decode(await ctx.client.batch(batch.statements, "write"));
      row = { ...row, rowsProcessed, quarantined };
      ctx.emit({ type: "quarantine-retried", name, key, resolved: true, message: null });
    } catch (thrown) {
      const error = classifyError(thrown);
      if (error.kind !== "deterministic") throw thrown; // lease lost, or transient: the caller handles it
      await ctx.store.recordRetryFailure(lease, key, error.message, 1);
      ctx.emit({ type: "quarantine-retried", name, key, resolved: false, message: error.message });
    }
  }
  return row;
}
