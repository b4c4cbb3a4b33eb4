/**
 * The control API (Bearer `ADMIN_TOKEN`): list, detail, pause, resume, cancel, retry, dry-run and live tuning.
 *
 * Order of checks: the token (403 when the API is disabled, 401 when missing or wrong), then the migration
 * name against the registered ones (404, before any SQL), then the query and body (400 naming the field),
 * then the transition itself (409 when it is impossible from the current status).
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { CONTROL_ACTIONS } from "../engine/controls.ts";
import { jsonInteger, jsonIntegerOrNull, migrationInfo } from "../progress/snapshot.ts";
import { requireBearer } from "./auth.ts";
import type { AppDeps } from "./deps.ts";
import { ActionBodySchema, DetailQuerySchema, EmptyQuerySchema, TuningPatchSchema } from "./schemas.ts";
import { parseJsonBody, parseQuery } from "./validation.ts";

export const MAX_BODY_BYTES = 16 * 1024;
const DEFAULT_RECENT_STEPS = 20;

export function migrationRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const { controls } = deps;
  const now = deps.now ?? Date.now;
  const auth = requireBearer(() => deps.config.adminToken, "control API disabled");
  const limit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) =>
      c.json({ error: `the request body must be at most ${MAX_BODY_BYTES} bytes`, field: "body" }, 413),
  });
  app.use("/api/migrations", auth, limit);
  app.use("/api/migrations/*", auth, limit);

  const unknown = (c: { json: (body: unknown, status: 404) => Response }) =>
    c.json({ error: "unknown migration", field: "name" }, 404);

  app.get("/api/migrations", async (c) => {
    const query = parseQuery(c, EmptyQuerySchema);
    if (!query.ok) return query.response;
    const rows = await controls.list();
    const t = now();
    return c.json({ migrations: rows.map((row) => migrationInfo(row, t)) });
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
      migration: migrationInfo(row, now()),
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
        migration: row ? migrationInfo(row, now()) : null,
      });
    });
  }

  app.post("/api/migrations/:name/dry-run", async (c) => {
    const name = c.req.param("name");
    if (!controls.names.includes(name)) return unknown(c);
    const query = parseQuery(c, EmptyQuerySchema);
    if (!query.ok) return query.response;
    const body = await parseJsonBody(c, ActionBodySchema.optional());
    if (!body.ok) return body.response;
    const report = await controls.dryRun(name);
    if (!report) return unknown(c);
    return c.json({
      ...report,
      candidates: report.candidates && {
        rowsTotal: jsonInteger(report.candidates.rowsTotal),
        minKey: jsonIntegerOrNull(report.candidates.minKey),
        maxKey: jsonIntegerOrNull(report.candidates.maxKey),
      },
    });
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
