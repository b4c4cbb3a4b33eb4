/**
 * The slice loop: the steps of one tick, shared fairly among the runnable migrations. Each gets its share of what
 * is left of the budget, oldest progress first, and whatever time the others leave unused goes round again; each
 * migration's part is ./migration-run.ts. The result says whether runnable work is left, so a scheduler knows
 * whether to tick again at once.
 */
import type { ClassifiedError } from "../errors.ts";
import type { MigrationPlan } from "../plan.ts";
import type { MigrationRow } from "../state/row.ts";
import { backoff, type MigrationOutcome, type RunContext, type SliceState } from "./context.ts";
import { runMigration } from "./migration-run.ts";

export interface SliceResult {
  readonly steps: number;
  readonly rows: bigint;
  /** Pieces of the read-only walks (counting, verification) run: progress without changing a row. */
  readonly pieces: number;
  readonly outcomes: ReadonlyArray<{ readonly name: string; readonly outcome: MigrationOutcome }>;
  /** True while some migration is still runnable (by this runner or another one). */
  readonly moreWork: boolean;
}

const RUNNABLE = new Set(["pending", "running"]);
const STILL_WORKING: ReadonlySet<MigrationOutcome> = new Set([
  "budget",
  "retrying",
  "lease-lost",
  "leased-elsewhere",
  "stopped",
  "throttled",
]);

/** Runs one slice over the migrations' rows as read at its start, until `deadline` or the signal. */
export async function runSliceOver(
  ctx: RunContext,
  plans: ReadonlyMap<string, MigrationPlan>,
  rows: readonly MigrationRow[],
  slice: { readonly began: number; readonly deadline: number; readonly signal: AbortSignal | undefined },
): Promise<SliceResult> {
  const { began, deadline, signal } = slice;
  const byName = new Map(rows.map((r) => [r.name, r]));
  const state: SliceState = { statuses: new Map(rows.map((r) => [r.name, r.status])), outcomes: new Map() };
  const order = rows
    .filter((row) => plans.has(row.name) && RUNNABLE.has(row.status))
    // Oldest progress first, so migrations sharing ticks take turns.
    .sort((a, b) => (a.lastUpdateAt ?? "").localeCompare(b.lastUpdateAt ?? ""))
    .map((row) => row.name);
  let steps = 0;
  let pieces = 0;
  let processed = 0n;
  let queue = order;
  for (let round = 0; queue.length > 0; round++) {
    const again: string[] = [];
    for (const [i, name] of queue.entries()) {
      const now = ctx.clock.now();
      if (signal?.aborted || now >= deadline) {
        if (round === 0) state.outcomes.set(name, signal?.aborted ? "stopped" : "budget");
        continue;
      }
      // Fair share: what is left of the slice, split among the migrations still to go in this round; time
      // one of them leaves unused goes to the next, and a second round hands out what is left after that.
      const share = now + (deadline - now) / (queue.length - i);
      const row = round === 0 ? byName.get(name)! : { ...byName.get(name)!, status: "running" };
      const result = await runMigration(ctx, plans.get(name)!, row, {
        sliceBegan: began,
        deadline: share,
        signal,
        slice: state,
      });
      steps += result.steps;
      pieces += result.pieces;
      processed += result.rows;
      state.outcomes.set(name, result.outcome);
      if (result.outcome === "done" || result.outcome === "failed") state.statuses.set(name, result.outcome);
      if (result.outcome === "budget" && result.steps + result.pieces > 0) again.push(name);
    }
    queue = ctx.clock.now() < deadline && !signal?.aborted ? again : [];
  }
  const outcomes = order.map((name) => ({ name, outcome: state.outcomes.get(name) ?? "budget" }));
  const moreWork = outcomes.some(
    (o) => STILL_WORKING.has(o.outcome) || (o.outcome === "blocked" && canProceed(plans, o.name, state)),
  );
  return { steps, rows: processed, pieces, outcomes, moreWork };
}

/**
 * The slice of a runner that could not even read the state (a locked or unreachable database): every migration
 * backs off and retries next tick; that is not an error of the tick.
 */
export function unreadableSlice(
  ctx: RunContext,
  names: readonly string[],
  error: ClassifiedError,
): SliceResult {
  const outcomes = names.map((name) => {
    backoff(ctx, name, ctx.tuningOf(name), error);
    return { name, outcome: "retrying" as const };
  });
  return { steps: 0, rows: 0n, pieces: 0, outcomes, moreWork: true };
}

/**
 * Whether a slice moved some migration on: a step, or a piece of counting or verification. A slice of a long
 * verification walk has no step, and waiting a whole idle tick after it (as once) added a second to a run.
 */
export function moved(result: SliceResult): boolean {
  return result.steps > 0 || result.pieces > 0;
}

/**
 * How long to wait before the next slice of a run-until-done loop: no wait (undefined) when the slice moved; when
 * nothing moved (another runner holds the lease, or a back-off) `idleWaitMs` so the loop does not spin; at least a
 * second when only throttled migrations are left (they hold back for seconds or minutes).
 */
export function pauseAfter(result: SliceResult, idleWaitMs: number): number | undefined {
  if (moved(result)) return undefined;
  const onlyThrottled = result.outcomes.every(
    (o) => o.outcome === "throttled" || !STILL_WORKING.has(o.outcome),
  );
  return onlyThrottled ? Math.max(idleWaitMs, 1000) : idleWaitMs;
}

/**
 * Whether a migration blocked on its dependencies may still get to run without an operator: every dependency
 * is done, or running, or pending and able to start itself.
 */
function canProceed(
  plans: ReadonlyMap<string, MigrationPlan>,
  name: string,
  state: SliceState,
  seen = new Set<string>(),
): boolean {
  if (seen.has(name)) return false;
  seen.add(name);
  const plan = plans.get(name);
  if (!plan) return false;
  return plan.migration.dependsOn.every((dep) => {
    const status = state.statuses.get(dep);
    if (status === "done" || status === "running") return true;
    if (status !== "pending") return false;
    const outcome = state.outcomes.get(dep);
    if (outcome === "waiting") return false;
    return canProceed(plans, dep, state, seen);
  });
}
