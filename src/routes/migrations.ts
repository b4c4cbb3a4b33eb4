/**
 * The control API (Bearer `ADMIN_TOKEN`): list, detail, pause, resume, cancel, retry, dry-run, live tuning, and
 * the quarantined rows (list, retry).
 *
 * Order of checks: the token (403 when the API is disabled, 401 when missing or wrong), then the migration
 * name against the registered ones (404, before any SQL), then the query and body (400 naming the field),
 * then the transition itself (409 when it is impossible from the current status).
 */
import { Hono } from "hono";
import { CONTROL_ACTIONS } from "../engine/controls.ts";
import { jsonInteger, jsonIntegerOrNull, migrationInfo } from "../progress/snapshot.ts";
import { requireBearer } from "./auth.ts";
import type { AppDeps } from "./deps.ts";
import {
  ActionBodySchema,
  DetailQuerySchema,
  DryRunBodySchema,
  EmptyQuerySchema,
  FailureRetryBodySchema,
  FailuresQuerySchema,
  TuningPatchSchema,
} from "./schemas.ts";
import { limitBody, parseJsonBody, parseQuery } from "./validation.ts";

const DEFAULT_RECENT_STEPS = 20;

export function migrationRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const { controls } = deps;
  const now = deps.now ?? Date.now;
  const info = deps.config.stuckAfterMs === undefined ? {} : { stuckAfterMs: deps.config.stuckAfterMs };
  const auth = requireBearer(() => deps.config.adminToken, "control API disabled");
  const limit = limitBody();
  app.use("/api/migrations", auth, limit);
  app.use("/api/migrations/*", auth, limit);

  const unknown = (c: { json: (body: unknown, status: 404) => Response }) =>
    c.json({ error: "unknown migration", field: "name" }, 404);

  app.get("/api/migrations", async (c) => {
    const query = parseQuery(c, EmptyQuerySchema);
    if (!query.ok) return query.response;
    const rows = await controls.list();
    const t = now();
    return c.json({ migrations: rows.map((row) => migrationInfo(row, t, undefined, info)) });
  });

  app.get("/api/migrations/:name", async (c) => {
    const name = c.req.param("name");
    if (!controls.names.includes(name)) return unknown(c);
    const query = parseQuery(c, DetailQuerySchema);
    if (!query.ok) return query.response;
    const row = await controls.get(name);
    const definition = controls.definition(name);
    if (!row || !definition) return unknown(c);
    const { snapshot } = await deps.snapshots.get();
    const count = query.value.steps ?? DEFAULT_RECENT_STEPS;
    const steps = snapshot.steps?.[name] ?? [];
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
    app.post(`/api/migrations/:name/${action}`, async (c) => {
      const name = c.req.param("name");
      if (!controls.names.includes(name)) return unknown(c);
      const query = parseQuery(c, EmptyQuerySchema);
      if (!query.ok) return query.response;
      const body = await parseJsonBody(c, ActionBodySchema.optional());
      if (!body.ok) return body.response;
      const result = await controls.act(name, action, body.value?.note);
      if (result.status === "not-found") return unknown(c);
      if (result.status === "conflict")
        return c.json({ error: result.message, name, status: result.from }, 409);
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

  app.post("/api/migrations/:name/dry-run", async (c) => {
    const name = c.req.param("name");
    if (!controls.names.includes(name)) return unknown(c);
    const query = parseQuery(c, EmptyQuerySchema);
    if (!query.ok) return query.response;
    const body = await parseJsonBody(c, DryRunBodySchema.optional());
    if (!body.ok) return body.response;
    const { note: _note, ...options } = body.value ?? {};
    const report = await controls.dryRun(name, options);
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

  app.get("/api/migrations/:name/failures", async (c) => {
    const name = c.req.param("name");
    if (!controls.names.includes(name)) return unknown(c);
    const query = parseQuery(c, FailuresQuerySchema);
    if (!query.ok) return query.response;
    const failures = await controls.failures(name, { includeResolved: query.value.resolved === "include" });
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

  app.post("/api/migrations/:name/failures/retry", async (c) => {
    const name = c.req.param("name");
    if (!controls.names.includes(name)) return unknown(c);
    const query = parseQuery(c, EmptyQuerySchema);
    if (!query.ok) return query.response;
    const body = await parseJsonBody(c, FailureRetryBodySchema.optional());
    if (!body.ok) return body.response;
    const result = await controls.retryFailures(name, body.value?.keys, body.value?.note);
    if (result.status === "not-found") return unknown(c);
    const appliesWhen =
      result.to === "running" || result.to === "pending"
        ? "the runner's next slice"
        : `the migration runs again (it is ${result.to}: resume or retry it)`;
    return c.json({ name, requested: result.requested, from: result.from, to: result.to, appliesWhen });
  });

  app.patch("/api/migrations/:name", async (c) => {
    const name = c.req.param("name");
    if (!controls.names.includes(name)) return unknown(c);
    const query = parseQuery(c, EmptyQuerySchema);
    if (!query.ok) return query.response;
    const body = await parseJsonBody(c, TuningPatchSchema);
    if (!body.ok) return body.response;
    const result = await controls.tune(name, body.value);
    if (result.status === "not-found") return unknown(c);
    if (result.status === "invalid") return c.json({ error: result.message, field: result.field }, 400);
    return c.json({ name, tuning: result.tuning, appliesFrom: "next lease acquisition" });
  });

  return app;
}
