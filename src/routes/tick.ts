/**
 * `GET|POST /api/tick` (Bearer `CRON_SECRET`): one time-budgeted slice for external cron (Vercel Cron sends a
 * GET with `Authorization: Bearer $CRON_SECRET`; systemd timers and CI can POST). Unknown query parameters are
 * ignored (cron services add their own); a malformed `budgetMs` is a 400.
 */
import { Hono } from "hono";
import { SchedulerStoppedError } from "../engine/scheduler.ts";
import { jsonInteger } from "../progress/snapshot.ts";
import { requireBearer } from "./auth.ts";
import type { AppDeps } from "./deps.ts";
import { TickQuerySchema } from "./schemas.ts";
import { limitBody, parseQuery } from "./validation.ts";

export function tickRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const clock = () => performance.now();
  app.use(
    "/api/tick",
    requireBearer(() => deps.config.cronSecret, "HTTP tick disabled"),
    limitBody(),
  );
  app.on(["GET", "POST"], "/api/tick", async (c) => {
    const query = parseQuery(c, TickQuerySchema);
    if (!query.ok) return query.response;
    const tick = deps.tick;
    if (!tick) return c.json({ error: "no runner is reachable from this process" }, 503);
    const began = clock();
    try {
      const result = await tick(query.value.budgetMs ?? deps.config.sliceBudgetMs);
      c.header("Cache-Control", "no-store");
      return c.json({
        steps: result.steps,
        rows: jsonInteger(result.rows),
        outcomes: result.outcomes.map((o) => ({ name: o.name, outcome: o.outcome })),
        moreWork: result.moreWork,
        durationMs: Math.round(clock() - began),
      });
    } catch (error) {
      if (error instanceof SchedulerStoppedError)
        return c.json({ error: "the service is shutting down" }, 503);
      throw error;
    }
  });
  return app;
}
