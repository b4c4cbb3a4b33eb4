/**
 * The one Hono app every runtime serves. It is built from injected ports (snapshots, controls, tick), so the
 * same app runs on Node (engine in a worker thread), in-process runtimes (src/service.ts) and in tests.
 *
 * Routes live in src/routes/ as feature sub-apps. Every response carries secure headers; every error is a
 * problem-details body (src/routes/problem.ts): `HTTPException` keeps its status, anything unexpected becomes a
 * 500 without stack or details, an unknown path a 404, a declared path with another method a 405 with `Allow`.
 * Every route is declared once in src/routes/api.ts (method, path, query, body, answers).
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import { classifyError } from "./engine/errors.ts";
import { RequestStats } from "./progress/request-stats.ts";
import { routesAt } from "./routes/api.ts";
import type { AppDeps } from "./routes/deps.ts";
import { fleetRoutes } from "./routes/fleet.ts";
import { healthRoutes } from "./routes/health.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { migrationRoutes } from "./routes/migrations.ts";
import { openApiRoutes } from "./routes/openapi.ts";
import { perfRoutes } from "./routes/perf.ts";
import { problem } from "./routes/problem.ts";
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
  app.route("/", fleetRoutes(deps));

  app.notFound((c) => {
    // A declared path with another method: 405 naming the methods it has (GET implies HEAD).
    const methods: string[] = [...new Set(routesAt(c.req.path).flatMap((r) => r.methods))];
    if (methods.includes("GET")) methods.push("HEAD");
    if (methods.length === 0) return problem(c, 404, "not found");
    c.header("Allow", methods.join(", "));
    return problem(c, 405, `${c.req.method} is not allowed here; use ${methods.join(" or ")}`);
  });
  app.onError((error, c) => {
    if (error instanceof HTTPException) return problem(c, error.status, error.message || "request failed");
    // Name and message only: no stack, no request data (tokens live in headers we never log).
    log(`trickle: ${c.req.method} ${c.req.path} failed: ${error.name}: ${error.message}`);
    // The writer holds the lock (SQLITE_BUSY), the network dropped…: worth retrying, so say so.
    if (classifyError(error).kind === "transient") {
      c.header("Retry-After", "1");
      return problem(c, 503, "the database is busy or unreachable; retry shortly");
    }
    return problem(c, 500, "internal error");
  });
  return app;
}
