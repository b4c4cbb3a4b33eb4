/** `GET /api/openapi.json`: an OpenAPI 3.1 document of every route, built from the zod schemas in schemas.ts. */
import { Hono } from "hono";
import { z } from "zod";
import { CONTROL_ACTIONS } from "../engine/controls.ts";
import { PROBLEM_CONTENT_TYPE } from "./problem.ts";
import {
  ActionBodySchema,
  ConflictSchema,
  ControlResponseSchema,
  DetailQuerySchema,
  DryRunBodySchema,
  DryRunSchema,
  ErrorSchema,
  FailureRetryBodySchema,
  FailureRetryResponseSchema,
  FailuresQuerySchema,
  FailuresResponseSchema,
  FleetResponseSchema,
  HealthzSchema,
  MigrationDetailSchema,
  MigrationInfoSchema,
  MigrationListSchema,
  PerfSchema,
  TickQuerySchema,
  TickResponseSchema,
  TuningPatchSchema,
  TuningResponseSchema,
} from "./schemas.ts";

type JsonObject = Record<string, unknown>;

function schema(s: z.ZodType, io: "input" | "output" = "output"): JsonObject {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { io, unrepresentable: "any" }) as JsonObject;
  return rest;
}

const json = (s: z.ZodType, description: string) => ({
  description,
  content: { "application/json": { schema: schema(s) } },
});

const error = (description: string) => ({
  description,
  content: { [PROBLEM_CONTENT_TYPE]: { schema: schema(ErrorSchema) } },
});

function queryParameters(s: z.ZodObject): JsonObject[] {
  const properties = (schema(s, "input").properties ?? {}) as Record<string, JsonObject>;
  return Object.entries(properties).map(([name, p]) => ({
    name,
    in: "query",
    required: false,
    schema: p,
    ...(typeof p.description === "string" ? { description: p.description } : {}),
  }));
}

const nameParameter = {
  name: "name",
  in: "path",
  required: true,
  schema: { type: "string" },
  description: "A registered migration name, e.g. tx_last_seen_backfill_v1.",
};

const controlErrors = {
  "401": error("Missing or wrong bearer token."),
  "403": error("The control API is disabled (ADMIN_TOKEN unset)."),
  "413": error("Request body too large."),
};

const tickErrors = {
  "401": error("Missing or wrong bearer token."),
  "403": error("The HTTP tick is disabled (CRON_SECRET unset)."),
  "400": error("Malformed budgetMs, or above the configured slice budget (the message names the limit)."),
  "503": error("No runner reachable, or shutting down."),
};

export function buildOpenApiDocument(): JsonObject {
  const admin = [{ adminToken: [] }];
  const tickOperation = (method: string) => ({
    summary: `Run one time-budgeted slice (${method}; for external cron).`,
    security: [{ cronSecret: [] }],
    parameters: queryParameters(TickQuerySchema),
    responses: { "200": json(TickResponseSchema, "What the slice did."), ...tickErrors },
  });
  const actionPaths = Object.fromEntries(
    CONTROL_ACTIONS.map((action) => [
      `/api/migrations/{name}/${action}`,
      {
        post: {
          summary: `${action[0]?.toUpperCase()}${action.slice(1)} a migration.`,
          security: admin,
          parameters: [nameParameter],
          requestBody: {
            required: false,
            content: { "application/json": { schema: schema(ActionBodySchema, "input") } },
          },
          responses: {
            "200": json(ControlResponseSchema, "The transition happened."),
            "400": error("Malformed body or query."),
            "404": error("Unknown migration."),
            "409": json(ConflictSchema, "Impossible from the current status."),
            ...controlErrors,
          },
        },
      },
    ]),
  );
  return {
    openapi: "3.1.0",
    info: {
      title: "trickle",
      version: "0.1.0",
      description:
        "Online data backfills (async migrations) for libSQL/SQLite in small, time-budgeted steps.",
    },
    components: {
      securitySchemes: {
        adminToken: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN" },
        cronSecret: { type: "http", scheme: "bearer", description: "CRON_SECRET" },
      },
    },
    paths: {
      "/": {
        get: {
          summary: "Status page (HTML).",
          responses: {
            "200": { description: "HTML page", content: { "text/html": { schema: { type: "string" } } } },
          },
        },
      },
      "/warmup-banner.js": {
        get: {
          summary: "Warm-up banner script for any page to include.",
          responses: {
            "200": { description: "Script", content: { "text/javascript": { schema: { type: "string" } } } },
          },
        },
      },
      "/api/healthz": {
        get: {
          summary: "Readiness and migration progress.",
          responses: {
            "200": json(HealthzSchema, "State read."),
            "503": json(
              HealthzSchema,
              "State could not be read (fails closed: async_migrations_running is true).",
            ),
          },
        },
      },
      "/api/perf": {
        get: {
          summary: "Request statistics and migration progress.",
          responses: { "200": json(PerfSchema, "Figures.") },
        },
      },
      "/api/perf/async-migrations": {
        get: {
          summary: "The migration items alone, as CoreScope #1735 serves them.",
          responses: { "200": json(z.array(MigrationInfoSchema), "Always an array, never null.") },
        },
      },
      "/api/fleet": {
        get: {
          summary:
            "Every tenant of the fleet file TRICKLE_FLEET_DATABASES names, from its own rows (cached).",
          responses: {
            "200": json(FleetResponseSchema, "Summary and one entry per tenant, in the file's order."),
            "404": error("No fleet is configured."),
          },
        },
      },
      "/metrics": {
        get: {
          summary: "Prometheus metrics.",
          responses: {
            "200": {
              description: "Text exposition format 0.0.4",
              content: { "text/plain": { schema: { type: "string" } } },
            },
          },
        },
      },
      "/api/openapi.json": {
        get: {
          summary: "This document.",
          responses: {
            "200": {
              description: "OpenAPI 3.1",
              content: { "application/json": { schema: { type: "object" } } },
            },
          },
        },
      },
      "/api/migrations": {
        get: {
          summary: "List the registered migrations.",
          security: admin,
          responses: {
            "200": json(MigrationListSchema, "Migrations."),
            "400": error("Unknown query parameter."),
            ...controlErrors,
          },
        },
      },
      "/api/migrations/{name}": {
        get: {
          summary: "One migration with its cursor, tuning overrides and recent steps.",
          security: admin,
          parameters: [nameParameter, ...queryParameters(DetailQuerySchema)],
          responses: {
            "200": json(MigrationDetailSchema, "Detail."),
            "400": error("Malformed query."),
            "404": error("Unknown migration."),
            ...controlErrors,
          },
        },
        patch: {
          summary: "Live tuning, applied from the runner's next lease acquisition.",
          security: admin,
          parameters: [nameParameter],
          requestBody: {
            required: true,
            content: { "application/json": { schema: schema(TuningPatchSchema, "input") } },
          },
          responses: {
            "200": json(TuningResponseSchema, "Overrides stored."),
            "400": error("Malformed body, unknown field, or a value out of bounds."),
            "404": error("Unknown migration."),
            ...controlErrors,
          },
        },
      },
      ...actionPaths,
      "/api/migrations/{name}/dry-run": {
        post: {
          summary:
            "Runs one real step in a transaction that is rolled back: candidates, sample rows before and after, the step's time and a projected duration. Changes nothing but the audit record.",
          security: admin,
          parameters: [nameParameter],
          requestBody: {
            required: false,
            content: { "application/json": { schema: schema(DryRunBodySchema, "input") } },
          },
          responses: {
            "200": json(DryRunSchema, "Report."),
            "400": error("Malformed body or query."),
            "404": error("Unknown migration."),
            "503": error("The database is busy (the write lock is held); retry shortly."),
            ...controlErrors,
          },
        },
      },
      "/api/migrations/{name}/failures": {
        get: {
          summary: "Quarantined (poison) rows: keys whose step failed on their own, with the error.",
          security: admin,
          parameters: [nameParameter, ...queryParameters(FailuresQuerySchema)],
          responses: {
            "200": json(FailuresResponseSchema, "Quarantined rows."),
            "400": error("Malformed query."),
            "404": error("Unknown migration."),
            ...controlErrors,
          },
        },
      },
      "/api/migrations/{name}/failures/retry": {
        post: {
          summary:
            "Asks the runner to re-apply the change to quarantined rows (all, or the keys given), in fenced steps. A done migration goes back to running to do it.",
          security: admin,
          parameters: [nameParameter],
          requestBody: {
            required: false,
            content: { "application/json": { schema: schema(FailureRetryBodySchema, "input") } },
          },
          responses: {
            "200": json(FailureRetryResponseSchema, "Requested."),
            "400": error("Malformed body."),
            "404": error("Unknown migration."),
            ...controlErrors,
          },
        },
      },
      "/api/tick": { get: tickOperation("GET"), post: tickOperation("POST") },
    },
  };
}

export function openApiRoutes(): Hono {
  const app = new Hono();
  let document: JsonObject | undefined;
  app.get("/api/openapi.json", (c) => {
    document ??= buildOpenApiDocument();
    return c.json(document);
  });
  return app;
}
