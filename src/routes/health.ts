/** `GET /api/healthz`: readiness and migration progress for load balancers and the warm-up banner. */
import { Hono } from "hono";
import { isMigrationRunning } from "../progress/snapshot.ts";
import { ROUTES } from "./api.ts";
import type { AppDeps } from "./deps.ts";
import { mounter } from "./mount.ts";

export function healthRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  mounter(app, deps)(ROUTES.healthz, async (c) => {
    const { snapshot, ageMs } = await deps.snapshots.get();
    const running = isMigrationRunning(snapshot);
    const failed = snapshot.migrations.some((m) => m.status === "failed");
    c.header("Cache-Control", "no-store");
    // Public and read-only: pages on other origins may include the banner, which polls this route.
    c.header("Access-Control-Allow-Origin", "*");
    const body = {
      ready: snapshot.error === undefined,
      status: snapshot.error !== undefined ? "error" : running ? "migrating" : failed ? "degraded" : "ok",
      async_migrations: snapshot.migrations,
      async_migrations_running: running,
      ...(snapshot.error !== undefined ? { async_migrations_error: snapshot.error } : {}),
      snapshot_age_ms: Math.round(ageMs),
    };
    // Fail closed: a state nobody can read is not healthy.
    return c.json(body, snapshot.error !== undefined ? 503 : 200);
  });
  return app;
}
