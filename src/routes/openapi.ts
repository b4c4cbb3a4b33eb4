/**
 * `GET /api/openapi.json`: an OpenAPI 3.1 document derived from the route declarations (api.ts) and their zod
 * schemas (schemas.ts), so the document, the validation and the handlers cannot drift apart.
 */
import { Hono } from "hono";
import { z } from "zod";
import {
  ALL_ROUTES,
  GUARDS,
  guardOf,
  PATH_PARAMETERS,
  type Reply,
  ROUTES,
  type RouteDeclaration,
  repliesOf,
} from "./api.ts";
import { mounter } from "./mount.ts";
import { PROBLEM_CONTENT_TYPE } from "./problem.ts";
import { ErrorSchema } from "./schemas.ts";

type JsonObject = Record<string, unknown>;

function jsonSchema(s: z.ZodType, io: "input" | "output" = "output"): JsonObject {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { io, unrepresentable: "any" }) as JsonObject;
  return rest;
}

function response(reply: Reply): JsonObject {
  const content =
    reply.kind === "json"
      ? { "application/json": { schema: jsonSchema(reply.schema) } }
      : reply.kind === "problem"
        ? { [PROBLEM_CONTENT_TYPE]: { schema: jsonSchema(reply.schema ?? ErrorSchema) } }
        : { [reply.contentType]: { schema: { type: "string" } } };
  return { description: reply.description, content };
}

function parameters(route: RouteDeclaration): JsonObject[] {
  const path = [...route.path.matchAll(/:(\w+)/g)].map(([, name = ""]) => ({
    name,
    in: "path",
    required: true,
    schema: { type: "string" },
    description: PATH_PARAMETERS[name] ?? name,
  }));
  const properties = (route.query ? (jsonSchema(route.query, "input").properties ?? {}) : {}) as Record<
    string,
    JsonObject
  >;
  const query = Object.entries(properties).map(([name, p]) => ({
    name,
    in: "query",
    required: false,
    schema: p,
    ...(typeof p.description === "string" ? { description: p.description } : {}),
  }));
  return [...path, ...query];
}

function operation(route: RouteDeclaration): JsonObject {
  const params = parameters(route);
  const guard = guardOf(route.path);
  return {
    summary: route.summary,
    ...(guard ? { security: [{ [GUARDS[guard.guard].secret]: [] }] } : {}),
    ...(params.length > 0 ? { parameters: params } : {}),
    ...(route.body
      ? {
          requestBody: {
            // Optional exactly when the schema accepts an empty body.
            required: !route.body.safeParse(undefined).success,
            content: { "application/json": { schema: jsonSchema(route.body, "input") } },
          },
        }
      : {}),
    responses: Object.fromEntries(
      Object.entries(repliesOf(route)).map(([status, reply]) => [status, response(reply)]),
    ),
  };
}

export function buildOpenApiDocument(): JsonObject {
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const route of ALL_ROUTES) {
    const path = route.path.replace(/:(\w+)/g, "{$1}");
    paths[path] ??= {};
    for (const method of route.methods) paths[path][method.toLowerCase()] = operation(route);
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "trickle",
      version: "0.1.0",
      description:
        "Online data backfills (async migrations) for libSQL/SQLite in small, time-budgeted steps.",
    },
    components: {
      securitySchemes: Object.fromEntries(
        Object.values(GUARDS).map((g) => [
          g.secret,
          { type: "http", scheme: "bearer", description: g.variable },
        ]),
      ),
    },
    paths,
  };
}

export function openApiRoutes(): Hono {
  const app = new Hono();
  let document: JsonObject | undefined;
  mounter(app)(ROUTES.openapi, (c) => {
    document ??= buildOpenApiDocument();
    return c.json(document);
  });
  return app;
}
