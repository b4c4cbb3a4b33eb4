/**
 * `GET|POST /api/tick` (Bearer `CRON_SECRET`): one time-budgeted slice for external cron (Vercel Cron sends a
 * GET with `Authorization: Bearer $CRON_SECRET`; systemd timers and CI can POST). Unknown query parameters are
 * ignored (cron services add their own); a malformed `budgetMs` is a 400.
 *
 * `budgetMs` may be at most the configured slice budget (`TRICKLE_SLICE_BUDGET_MS`): that is the most the runner
 * gives a slice, and the settings keep it below the lease TTL. A larger value is a 400 naming the limit, never
 * silently shortened; the response reports the budget the slice was given.
 */
import { Hono } from "hono";
import { SchedulerStoppedError } from "../engine/scheduler.ts";
import { jsonInteger } from "../progress/snapshot.ts";
import { ROUTES } from "./api.ts";
import type { AppDeps } from "./deps.ts";
import { mounter } from "./mount.ts";
import { invalidRequest, problem } from "./problem.ts";

export function tickRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const clock = () => performance.now();
  mounter(app, deps)(ROUTES.tick, async (c) => {
    const maxBudgetMs = deps.config.sliceBudgetMs;
    const budgetMs = c.var.query.budgetMs ?? maxBudgetMs;
    if (budgetMs > maxBudgetMs) {
      return invalidRequest(c, [
        {
          field: "budgetMs",
          message:
            `budgetMs must be at most ${maxBudgetMs}, the configured slice budget (TRICKLE_SLICE_BUDGET_MS); ` +
            "raise that setting for longer ticks",
        },
      ]);
    }
    const tick = deps.tick;
    if (!tick) return problem(c, 503, "no runner is reachable from this process");
    const began = clock();
    try {
      const result = await tick(budgetMs);
      c.header("Cache-Control", "no-store");
      return c.json({
        budgetMs,
        steps: result.steps,
        rows: jsonInteger(result.rows),
        pieces: result.pieces,
        outcomes: result.outcomes.map((o) => ({ name: o.name, outcome: o.outcome })),
        moreWork: result.moreWork,
        durationMs: Math.round(clock() - began),
      });
    } catch (error) {
      if (error instanceof SchedulerStoppedError) return problem(c, 503, "the service is shutting down");
      throw error;
    }
  });
  return app;
}
