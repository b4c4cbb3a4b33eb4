/** `GET /api/fleet`: where every tenant of the configured fleet stands, from a cached read (src/fleet/view.ts). */
import { Hono } from "hono";
import { jsonInteger } from "../progress/snapshot.ts";
import { ROUTES } from "./api.ts";
import type { AppDeps } from "./deps.ts";
import { mounter } from "./mount.ts";
import { problem } from "./problem.ts";

export function fleetRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  mounter(app, deps)(ROUTES.fleet, async (c) => {
    if (!deps.fleet)
      return problem(
        c,
        404,
        "no fleet is configured here (TRICKLE_FLEET_DATABASES names a fleet file; on Workers, TRICKLE_FLEET lists the tenants)",
      );
    const view = await deps.fleet.get();
    c.header("Cache-Control", "no-store");
    return c.json({
      takenAt: new Date(view.takenAt).toISOString(),
      summary: view.summary,
      tenants: view.tenants.map((t) => ({
        ...t,
        migrations: t.migrations.map((m) => ({
          ...m,
          rowsProcessed: jsonInteger(m.rowsProcessed),
          rowsTotal: jsonInteger(m.rowsTotal),
        })),
      })),
    });
  });
  return app;
}
