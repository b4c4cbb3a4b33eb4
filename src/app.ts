/**
 * The one Hono app every runtime serves. It is built from injected ports (snapshots, controls, tick), so the
 * same app runs on Node (engine in a worker thread), in-process runtimes (src/service.ts) and in tests.
 *
 * Routes live in src/routes/ as feature sub-apps. Every response carries secure headers; errors are JSON:
 * `HTTPException` keeps its status, anything unexpected becomes a 500 without stack or details, unmatched
 * paths a JSON 404.
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import { classifyError } from "./engine/errors.ts";
import { RequestStats } from "./progress/request-stats.ts";
import type { AppDeps } from "./routes/deps.ts";
import { healthRoutes } from "./routes/health.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { migrationRoutes } from "./routes/migrations.ts";
import { openApiRoutes } from "./routes/openapi.ts";
import { perfRoutes } from "./routes/perf.ts";
import { tickRoutes } from "./routes/tick.ts";
import { uiRoutes } from "./routes/ui.ts";

export type { AppConfig, AppDeps, SnapshotSource } from "./routes/deps.ts";

export function createApp(deps: AppDeps): Hono {
  const stats = deps.requestStats ?? new RequestStats();
  const log = deps.log ?? ((line: string) => console.error(line));
  const app = new Hono();

  // Handlers may set a header secure-headers would otherwise override (the banner's cross-origin policy).
  app.use(secureHeaders({ overwrite: false }));
  app.use(stats.middleware());

  app.route("/", uiRoutes());
  app.route("/", healthRoutes(deps));
  app.route("/", perfRoutes(deps, stats));
  app.route("/", metricsRoutes(deps));
  app.route("/", openApiRoutes());
  app.route("/", migrationRoutes(deps));
  app.route("/", tickRoutes(deps));

  app.notFound((c) => c.json({ error: "not found" }, 404));
  app.onError((error, c) => {
    if (error instanceof HTTPException) {
      return c.json({ error: error.message || "request failed" }, error.status);
    }
    // Name and message only: no stack, no request data (tokens live in headers we never log).
    log(`trickle: ${c.req.method} ${c.req.path} failed: ${error.name}: ${error.message}`);
    // The writer holds the lock (SQLITE_BUSY), the network dropped…: worth retrying, so say so.
    if (classifyError(error).kind === "transient") {
      c.header("Retry-After", "1");
      return c.json({ error: "the database is busy or unreachable; retry shortly" }, 503);
    }
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}
