/**
 * Throttle signals (SQLITE_BUSY rate, a slow probe query, quiet hours) as a run meets them: a decision holds a
 * migration back until a wall-clock time, with the reason recorded in its row (so every runner respects it) and
 * in this runner's in-process state (so its snapshots show it at once).
 */
import { parseTime } from "../../progress/rate.ts";
import { classifyError } from "../errors.ts";
import type { MigrationPlan } from "../plan.ts";
import type { Lease, MigrationRow } from "../state/row.ts";
import type { ThrottleDecision } from "../throttle.ts";
import type { RunContext } from "./context.ts";

/**
 * Whether a throttle decision — this runner's, or another's recorded in the row — holds the migration back now,
 * in which case the slice skips it without taking the lease. A decision whose time has passed is cleared.
 */
export function heldBack(ctx: RunContext, row: MigrationRow): boolean {
  const name = row.name;
  const wallNow = ctx.wallClock();
  const heldUntil = parseTime(row.throttledUntil);
  const current = ctx.states.get(name).throttle;
  if (heldUntil !== null && heldUntil > wallNow && (!current || current.untilMs < heldUntil)) {
    ctx.states.set(name, {
      throttle: {
        reason: row.throttleReason ?? "throttled",
        policy: current?.policy ?? "backoff",
        untilMs: heldUntil,
      },
    });
  }
  const throttle = ctx.states.get(name).throttle;
  if (throttle && throttle.untilMs > wallNow) return true;
  if (throttle) ctx.states.set(name, { throttle: null });
  return false;
}

/**
 * Looks at the throttle signals before a step; when one trips, records the decision in the row (fenced) and
 * returns true. Quiet hours and the busy rate cost nothing; the probe runs at most every `everyMs`.
 */
export async function throttleCheck(ctx: RunContext, plan: MigrationPlan, lease: Lease): Promise<boolean> {
  const decision = await ctx.throttle.decide(plan.migration.name, (sql: string) => ctx.client.execute(sql));
  if (!decision) return false;
  try {
    await ctx.store.recordThrottle(lease, decision.reason, new Date(decision.untilMs).toISOString());
  } catch (thrown) {
    // The lock this throttle is about may be what failed the write: hold back in this process anyway (its
    // snapshots carry the reason); other runners meet the same signal themselves.
    if (classifyError(thrown).kind === "lease-lost") throw thrown;
  }
  holdInProcess(ctx, plan.migration.name, decision);
  return true;
}

/** Holds the migration back in this process until the decision's time. */
export function holdInProcess(ctx: RunContext, name: string, decision: ThrottleDecision): void {
  ctx.throttle.reset(name);
  ctx.states.set(name, {
    throttle: { reason: decision.reason, policy: decision.policy, untilMs: decision.untilMs },
  });
  ctx.emit({ type: "throttled", name, ...decision });
}
