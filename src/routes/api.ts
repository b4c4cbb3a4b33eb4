/**
 * The HTTP API, every route declared once: method, path, who may call it, its query and body schemas and what
 * it answers. The sub-apps mount their handlers on these declarations (`mount`, in mount.ts), which adds the
 * bearer check and the validation the declaration asks for; `/api/openapi.json` is built from this list
 * (openapi.ts); the tests check every answer the routes give against it. A route is added here first.
 */
import { z } from "zod";
import { CONTROL_ACTIONS, type ControlAction } from "../engine/controls.ts";
import {
  ActionBodySchema,
  ConflictSchema,
  ControlResponseSchema,
  DetailQuerySchema,
  DryRunBodySchema,
  DryRunSchema,
  EmptyQuerySchema,
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

export type Method = "GET" | "POST" | "PATCH";

/** `admin`: Bearer `ADMIN_TOKEN` (the control API); `cron`: Bearer `CRON_SECRET` (the HTTP tick). */
export type Guard = "admin" | "cron";

/**
 * Each guard once: the configuration field holding its secret (also its OpenAPI security scheme's name), the
 * variable that sets it, and what it guards (a request meets "<what> disabled" while the secret is unset).
 */
export const GUARDS: Readonly<
  Record<Guard, { secret: "adminToken" | "cronSecret"; variable: string; what: string }>
> = {
  admin: { secret: "adminToken", variable: "ADMIN_TOKEN", what: "control API" },
  cron: { secret: "cronSecret", variable: "CRON_SECRET", what: "HTTP tick" },
};

/**
 * Who may call what, by path prefix: every request under a guarded prefix, to a declared route or not, meets the
 * guard first, so a disabled control API answers 403 to anything under it and reveals nothing else.
 */
export const GUARDED_PREFIXES: Readonly<Record<string, Guard>> = {
  "/api/migrations": "admin",
  "/api/tick": "cron",
};

/** The prefix guarding `path` and its guard, if any. */
export function guardOf(path: string): { prefix: string; guard: Guard } | undefined {
  for (const [prefix, guard] of Object.entries(GUARDED_PREFIXES))
    if (path === prefix || path.startsWith(`${prefix}/`)) return { prefix, guard };
  return undefined;
}

/** One answer a route may give: a JSON body with its schema, a problem-details error, or text. */
export type Reply =
  | { readonly kind: "json"; readonly description: string; readonly schema: z.ZodType }
  | {
      readonly kind: "problem";
      readonly description: string;
      /** The problem body with the route's own members (default: `ErrorSchema`). */
      readonly schema?: z.ZodType;
    }
  | { readonly kind: "text"; readonly description: string; readonly contentType: string };

export interface RouteDeclaration<
  Q extends z.ZodType | undefined = z.ZodType | undefined,
  B extends z.ZodType | undefined = z.ZodType | undefined,
> {
  readonly methods: readonly Method[];
  /** Hono's form: `:name` is a path parameter (described in `PATH_PARAMETERS`). */
  readonly path: string;
  readonly summary: string;
  /** The query string's schema; a route without one ignores its query string (cache-busters, cron extras). */
  readonly query?: Q;
  /** The JSON body's schema; the body is optional when the schema accepts `undefined`. */
  readonly body?: B;
  /** Answers besides the ones derived from the guard, the validation and the path parameter. */
  readonly responses: Readonly<Record<number, Reply>>;
}

export const json = (schema: z.ZodType, description: string): Reply => ({
  kind: "json",
  description,
  schema,
});
export const failure = (description: string, schema?: z.ZodType): Reply => ({
  kind: "problem",
  description,
  ...(schema ? { schema } : {}),
});
const text = (contentType: string, description: string): Reply => ({
  kind: "text",
  description,
  contentType,
});

/** Path parameters, described once. */
export const PATH_PARAMETERS: Readonly<Record<string, string>> = {
  name: "A registered migration name, e.g. tx_last_seen_backfill_v1.",
};

/** What a guard answers before the route does. */
function guardReplies(guard: Guard): Record<number, Reply> {
  const { what, variable } = GUARDS[guard];
  return {
    401: failure("Missing or wrong bearer token."),
    403: failure(`The ${what} is disabled (${variable} unset).`),
    413: failure("Request body too large."),
  };
}

/**
 * Every answer of `route`: its own, its guard's (401, 403, 413), a 400 when it validates anything, a 404 for an
 * unknown `:name`, a 503 when the database is busy or unreachable, and the 500 of an unexpected error.
 */
export function repliesOf(route: RouteDeclaration): Readonly<Record<number, Reply>> {
  const replies: Record<number, Reply> = {};
  if (route.query || route.body)
    replies[400] = failure("Malformed query or body; `problems` lists every one.");
  if (route.path.includes(":name")) replies[404] = failure("Unknown migration.");
  const guard = guardOf(route.path)?.guard;
  if (guard) Object.assign(replies, guardReplies(guard));
  replies[500] = failure("An unexpected error (logged by name and message; the answer carries no details).");
  replies[503] = failure("The database is busy or unreachable; retry shortly (`Retry-After`).");
  return Object.assign(replies, route.responses);
}

/** Keeps a declaration's schema types for `mount`. */
function declare<Q extends z.ZodType | undefined = undefined, B extends z.ZodType | undefined = undefined>(
  route: RouteDeclaration<Q, B>,
): RouteDeclaration<Q, B> {
  return route;
}

export const ROUTES = {
  statusPage: declare({
    methods: ["GET"],
    path: "/",
    summary: "Status page (HTML).",
    responses: { 200: text("text/html", "The page.") },
  }),
  banner: declare({
    methods: ["GET"],
    path: "/warmup-banner.js",
    summary: "Warm-up banner script for any page to include.",
    responses: { 200: text("text/javascript", "The script.") },
  }),
  healthz: declare({
    methods: ["GET"],
    path: "/api/healthz",
    summary: "Readiness and migration progress.",
    responses: {
      200: json(HealthzSchema, "State read."),
      503: json(HealthzSchema, "State could not be read (fails closed: async_migrations_running is true)."),
    },
  }),
  perf: declare({
    methods: ["GET"],
    path: "/api/perf",
    summary: "Request statistics, migration progress, and the recent steps and probes the status page draws.",
    responses: { 200: json(PerfSchema, "Figures.") },
  }),
  perfMigrations: declare({
    methods: ["GET"],
    path: "/api/perf/async-migrations",
    summary: "The migration items alone, as CoreScope #1735 serves them.",
    responses: { 200: json(z.array(MigrationInfoSchema), "Always an array, never null.") },
  }),
  fleet: declare({
    methods: ["GET"],
    path: "/api/fleet",
    summary:
      "Every tenant of the fleet (the fleet file TRICKLE_FLEET_DATABASES names; on Workers, TRICKLE_FLEET), from its own rows (cached).",
    responses: {
      200: json(FleetResponseSchema, "Summary and one entry per tenant, in the file's order."),
      404: failure("No fleet is configured."),
    },
  }),
  metrics: declare({
    methods: ["GET"],
    path: "/metrics",
    summary: "Prometheus metrics.",
    responses: { 200: text("text/plain", "Text exposition format 0.0.4.") },
  }),
  openapi: declare({
    methods: ["GET"],
    path: "/api/openapi.json",
    summary: "This document.",
    responses: { 200: json(z.looseObject({ openapi: z.literal("3.1.0") }), "OpenAPI 3.1.") },
  }),
  list: declare({
    methods: ["GET"],
    path: "/api/migrations",
    summary: "List the registered migrations.",
    query: EmptyQuerySchema,
    responses: { 200: json(MigrationListSchema, "Migrations.") },
  }),
  detail: declare({
    methods: ["GET"],
    path: "/api/migrations/:name",
    summary: "One migration with its cursor, tuning overrides and recent steps.",
    query: DetailQuerySchema,
    responses: { 200: json(MigrationDetailSchema, "Detail.") },
  }),
  tune: declare({
    methods: ["PATCH"],
    path: "/api/migrations/:name",
    summary: "Live tuning, applied from the runner's next lease acquisition.",
    query: EmptyQuerySchema,
    body: TuningPatchSchema,
    responses: { 200: json(TuningResponseSchema, "Overrides stored.") },
  }),
  ...actionRoutes(),
  dryRun: declare({
    methods: ["POST"],
    path: "/api/migrations/:name/dry-run",
    summary:
      "Runs one real step in a transaction that is rolled back: candidates, sample rows before and after, the " +
      "step's time and a projected duration. Changes nothing but the audit record.",
    query: EmptyQuerySchema,
    body: DryRunBodySchema.optional(),
    responses: {
      200: json(DryRunSchema, "Report (a poison row in the range is a finding, still 200)."),
      409: failure("The database cannot roll a step back (Cloudflare D1 has no interactive transactions)."),
    },
  }),
  failures: declare({
    methods: ["GET"],
    path: "/api/migrations/:name/failures",
    summary: "Quarantined (poison) rows: keys whose step failed on their own, with the error.",
    query: FailuresQuerySchema,
    responses: { 200: json(FailuresResponseSchema, "Quarantined rows.") },
  }),
  retryFailures: declare({
    methods: ["POST"],
    path: "/api/migrations/:name/failures/retry",
    summary:
      "Asks the runner to re-apply the change to quarantined rows (all, or the keys given), in fenced steps. A " +
      "done migration goes back to running to do it.",
    query: EmptyQuerySchema,
    body: FailureRetryBodySchema.optional(),
    responses: { 200: json(FailureRetryResponseSchema, "Requested.") },
  }),
  tick: declare({
    methods: ["GET", "POST"],
    path: "/api/tick",
    summary: "Run one time-budgeted slice (GET for Vercel Cron, POST for timers and CI).",
    query: TickQuerySchema,
    responses: {
      200: json(TickResponseSchema, "What the slice did."),
      400: failure("Malformed budgetMs, or above the configured slice budget (the message names the limit)."),
      503: failure("No runner reachable, shutting down, or the database is busy."),
    },
  }),
} as const;

/** `pause`, `resume`, `cancel`, `retry`: one route each, the same shape. */
function actionRoutes() {
  const route = (action: ControlAction) =>
    declare({
      methods: ["POST"],
      path: `/api/migrations/:name/${action}`,
      summary: `${action[0]?.toUpperCase()}${action.slice(1)} a migration.`,
      query: EmptyQuerySchema,
      body: ActionBodySchema.optional(),
      responses: {
        200: json(ControlResponseSchema, "The transition happened."),
        409: failure("Impossible from the current status (`migrationStatus` says which).", ConflictSchema),
      },
    });
  return Object.fromEntries(CONTROL_ACTIONS.map((action) => [action, route(action)])) as Record<
    ControlAction,
    ReturnType<typeof route>
  >;
}

/** Every declared route. */
export const ALL_ROUTES: readonly RouteDeclaration[] = Object.values(ROUTES);

const PATTERNS = new Map(
  ALL_ROUTES.map((r) => [r, new RegExp(`^${r.path.replace(/\./g, "\\.").replace(/:\w+/g, "[^/]+")}/?$`)]),
);

/** The declared routes whose path matches `path` (a `:param` is one path segment; a trailing slash is allowed). */
export function routesAt(path: string): RouteDeclaration[] {
  return ALL_ROUTES.filter((r) => PATTERNS.get(r)?.test(path));
}
