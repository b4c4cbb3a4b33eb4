/**
 * The control API (Bearer `ADMIN_TOKEN`): list, detail, pause, resume, cancel, retry, dry-run, live tuning, and
 * the quarantined rows (list, retry).
 *
 * Order of checks: the token (403 when the API is disabled, 401 when missing or wrong), then the migration
 * name against the registered ones (404, before any SQL), then the query and body (400 naming the field),
 * then the transition itself (409 when it is impossible from the current status).
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { CONTROL_ACTIONS } from "../engine/controls.ts";
import { UnsupportedOperationError } from "../engine/errors.ts";
import { jsonInteger, jsonIntegerOrNull, migrationInfo } from "../progress/snapshot.ts";
import { ROUTES } from "./api.ts";
import type { AppDeps } from "./deps.ts";
import { mounter } from "./mount.ts";
import { invalidRequest, problem } from "./problem.ts";

const DEFAULT_RECENT_STEPS = 20;

export function migrationRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const { controls } = deps;
  const now = deps.now ?? Date.now;
  const info = deps.config.stuckAfterMs === undefined ? {} : { stuckAfterMs: deps.config.stuckAfterMs };

  const nameOf = (c: Context) => c.req.param("name") ?? "";
  const unknown = (c: Context) => problem(c, 404, "unknown migration", { field: "name" });
  /** 404 for a `:name` this service does not register, before anything else is read. */
  const known: MiddlewareHandler = async (c, next) => {
    if (!controls.names.includes(nameOf(c))) return unknown(c);
    await next();
  };
  const mount = mounter(app, deps, { name: known });

  mount(ROUTES.list, async (c) => {
    const rows = await controls.list();
    const t = now();
    return c.json({ migrations: rows.map((row) => migrationInfo(row, t, undefined, info)) });
  });

  mount(ROUTES.detail, async (c) => {
    const name = nameOf(c);
    const row = await controls.get(name);
    const definition = controls.definition(name);
    if (!row || !definition) return unknown(c);
    const { snapshot } = await deps.snapshots.get();
    const count = c.var.query.steps ?? DEFAULT_RECENT_STEPS;
    const steps = snapshot.activity?.steps[name] ?? [];
    return c.json({
      migration: migrationInfo(row, now(), undefined, info),
      description: definition.definition.description,
      table: definition.table,
      key: definition.key,
      cursor: jsonIntegerOrNull(row.cursor),
      minKey: jsonIntegerOrNull(row.minKey),
      maxKey: jsonIntegerOrNull(row.maxKey),
      leaseExpiresAt: row.leaseExpiresAt,
      leaseEpoch: jsonInteger(row.leaseEpoch),
      verifiedAt: row.verifiedAt,
      residual: jsonIntegerOrNull(row.residual),
      tuning: row.tuning,
      dependsOn: definition.dependsOn,
      failedSteps: jsonInteger(row.failedSteps),
      recentSteps: count === 0 ? [] : steps.slice(-count),
    });
  });

  for (const action of CONTROL_ACTIONS) {
    mount(ROUTES[action], async (c) => {
      const name = nameOf(c);
      const result = await controls.act(name, action, c.var.body?.note);
      if (result.status === "not-found") return unknown(c);
      if (result.status === "conflict")
        return problem(c, 409, result.message, { name, migrationStatus: result.from });
      const row = await controls.get(name);
      return c.json({
        name,
        action,
        from: result.from,
        to: result.to,
        migration: row ? migrationInfo(row, now(), undefined, info) : null,
      });
    });
  }

  mount(ROUTES.dryRun, async (c) => {
    const name = nameOf(c);
    const { note: _note, ...options } = c.var.body ?? {};
    let report: Awaited<ReturnType<typeof controls.dryRun>>;
    try {
      report = await controls.dryRun(name, options);
    } catch (error) {
      // The database cannot do what a dry-run needs (Cloudflare D1: no interactive transaction). Nothing ran.
      if (error instanceof UnsupportedOperationError)
        return problem(c, 409, `dry-run: ${error.message}`, { name });
      throw error;
    }
    if (!report) return unknown(c);
    return c.json({
      ...report,
      candidates: report.candidates && {
        rowsTotal: jsonInteger(report.candidates.rowsTotal),
        minKey: jsonIntegerOrNull(report.candidates.minKey),
        maxKey: jsonIntegerOrNull(report.candidates.maxKey),
      },
      step: report.step && {
        ...report.step,
        fromKey: jsonInteger(report.step.fromKey),
        toKey: jsonInteger(report.step.toKey),
        keys: jsonInteger(report.step.keys),
        rows: jsonInteger(report.step.rows),
      },
      // A poison row in the range is the dry-run's finding, answered 200 like any other report.
      failure: report.failure && {
        ...report.failure,
        fromKey: jsonIntegerOrNull(report.failure.fromKey),
        toKey: jsonIntegerOrNull(report.failure.toKey),
      },
      projection: report.projection && {
        ...report.projection,
        keysInRange: jsonInteger(report.projection.keysInRange),
        rowsTotal: jsonInteger(report.projection.rowsTotal),
      },
    });
  });

  mount(ROUTES.failures, async (c) => {
    const name = nameOf(c);
    const failures = await controls.failures(name, { includeResolved: c.var.query.resolved === "include" });
    const row = await controls.get(name);
    if (!failures || !row) return unknown(c);
    return c.json({
      name,
      quarantined: jsonInteger(row.quarantined),
      failures: failures.map((f) => ({
        key: jsonInteger(f.key),
        error: f.error,
        at: f.at,
        attempts: f.attempts,
        pass: f.pass,
        resolvedAt: f.resolvedAt,
        resolution: f.resolution,
        retryRequestedAt: f.retryRequestedAt,
      })),
    });
  });

  mount(ROUTES.retryFailures, async (c) => {
    const name = nameOf(c);
    const result = await controls.retryFailures(name, c.var.body?.keys, c.var.body?.note);
    if (result.status === "not-found") return unknown(c);
    const appliesWhen =
      result.to === "running" || result.to === "pending"
        ? "the runner's next slice"
        : `the migration runs again (it is ${result.to}: resume or retry it)`;
    return c.json({ name, requested: result.requested, from: result.from, to: result.to, appliesWhen });
  });

  mount(ROUTES.tune, async (c) => {
    const name = nameOf(c);
    const result = await controls.tune(name, c.var.body);
    if (result.status === "not-found") return unknown(c);
    if (result.status === "invalid")
      return invalidRequest(c, [{ field: result.field, message: result.message }]);
    return c.json({ name, tuning: result.tuning, appliesFrom: "next lease acquisition" });
  });

  return app;
}
