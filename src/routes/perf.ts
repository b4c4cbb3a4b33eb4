/** `GET /api/perf`: the service's own request statistics and migration progress (the seed's field names). */
import { type Context, Hono } from "hono";
import type { RequestStats } from "../progress/request-stats.ts";
import type { Snapshot } from "../progress/snapshot.ts";
import { ROUTES } from "./api.ts";
import type { AppDeps } from "./deps.ts";
import { mounter } from "./mount.ts";

export function perfRoutes(deps: AppDeps, stats: RequestStats): Hono {
  const app = new Hono();
  const mount = mounter(app, deps);
  mount(ROUTES.perf, async (c) => {
    const { snapshot, ageMs } = await deps.snapshots.get();
    publicReadHeaders(c, snapshot);
    return c.json({
      ...stats.report(),
      snapshotAgeMs: Math.round(ageMs),
      asyncMigrations: snapshot.migrations,
      // What this process's runner did last, per migration, for the status page's charts.
      recentSteps: snapshot.activity?.steps ?? {},
      recentProbes: snapshot.activity?.probes ?? {},
      stepTargetMs: deps.config.stepTargetMs ?? null,
      ...(snapshot.error !== undefined ? { asyncMigrationsError: snapshot.error } : {}),
    });
  });
  // CoreScope #1735 serves the bare list here; its banner and UI read it.
  mount(ROUTES.perfMigrations, async (c) => {
    const { snapshot } = await deps.snapshots.get();
    publicReadHeaders(c, snapshot);
    return c.json(snapshot.migrations);
  });
  return app;
}

/** Public, uncached, readable from other origins; a state that could not be read is named in a header too. */
function publicReadHeaders(c: Context, snapshot: Snapshot): void {
  c.header("Cache-Control", "no-store");
  c.header("Access-Control-Allow-Origin", "*");
  if (snapshot.error !== undefined) c.header("X-Async-Migrations-Error", headerSafe(snapshot.error));
}

/** Header values must be printable Latin-1 without line breaks; database messages may be anything. */
function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
}
