/**
 * Request and response schemas of the HTTP API. Requests are validated with them; `/api/openapi.json` is built
 * from them, so the document and the validation cannot drift apart.
 */
import { z } from "zod";
import { TUNABLE_FIELDS } from "../engine/controls.ts";
import { REPORTED_STATUSES } from "../progress/snapshot.ts";

export const JsonIntegerSchema = z
  .union([z.number().int(), z.string().regex(/^-?\d+$/)])
  .describe(
    "An exact integer: a JSON number while it is a safe integer (≤ 2^53 − 1), else its decimal text.",
  );

export const ErrorSchema = z
  .object({
    error: z.string().describe("What went wrong, for a human."),
    field: z.string().optional().describe("The request field that is wrong (validation errors)."),
  })
  .describe("Every error response.");

export const MigrationInfoSchema = z.object({
  name: z.string(),
  status: z
    .enum(REPORTED_STATUSES as [string, ...string[]])
    .describe("Stored values trickle does not know are `unknown`, never `running`."),
  rowsProcessed: JsonIntegerSchema,
  rowsTotal: JsonIntegerSchema,
  rate: z.number().describe("Rows per second over wall time since the run started."),
  etaSeconds: z.number().nullable().describe("Seconds left at `rate`; null when unknown or not running."),
  elapsedSeconds: z.number(),
  errorMessage: z.string().nullable().describe("The failure message while `failed`, else null."),
  startedAt: z.string().nullable().describe("ISO-8601 UTC."),
  endedAt: z.string().nullable(),
  lastUpdateAt: z.string().nullable(),
  percent: z.number().min(0).max(100),
  busyRate: z.number().describe("Rows per second of time spent inside steps."),
  reason: z.string().nullable().describe("Why it is not moving (waiting for a table, retrying…)."),
  batchSize: z.number().int().nullable(),
  leaseOwner: z.string().nullable(),
  pass: z.number().int(),
  steps: JsonIntegerSchema,
});

export const HealthzSchema = z.object({
  ready: z.boolean().describe("False only while the migration state cannot be read."),
  status: z.enum(["ok", "migrating", "degraded", "error"]),
  async_migrations: z.array(MigrationInfoSchema),
  async_migrations_running: z
    .boolean()
    .describe(
      "True while any migration is `running` (`failed` does not count), or when the state could not be read.",
    ),
  async_migrations_error: z
    .string()
    .optional()
    .describe("Only when the state could not be read (then HTTP 503)."),
  snapshot_age_ms: z.number().describe("Age of the progress snapshot served."),
});

export const EndpointStatsSchema = z.object({
  count: z.number().int(),
  avgMs: z.number(),
  p50Ms: z.number(),
  p95Ms: z.number(),
  maxMs: z.number(),
});

export const PerfSchema = z.object({
  uptime: z.number().describe("Seconds since the process started serving."),
  totalRequests: z.number().int(),
  avgMs: z.number(),
  endpoints: z.record(z.string(), EndpointStatsSchema).describe("Per route pattern."),
  snapshotAgeMs: z.number(),
  asyncMigrations: z.array(MigrationInfoSchema).describe("Always an array, never null."),
  asyncMigrationsError: z.string().optional().describe("Only when the state could not be read."),
});

export const StepRecordSchema = z.object({
  at: z.string(),
  batchSize: z.number().int(),
  rows: JsonIntegerSchema,
  rowsProcessed: JsonIntegerSchema,
  durationMs: z.number(),
});

export const MigrationListSchema = z.object({ migrations: z.array(MigrationInfoSchema) });

export const MigrationDetailSchema = z.object({
  migration: MigrationInfoSchema,
  description: z.string(),
  table: z.string(),
  key: z.string(),
  cursor: JsonIntegerSchema.nullable(),
  minKey: JsonIntegerSchema.nullable(),
  maxKey: JsonIntegerSchema.nullable(),
  leaseExpiresAt: z.string().nullable(),
  leaseEpoch: JsonIntegerSchema,
  verifiedAt: z.string().nullable(),
  residual: JsonIntegerSchema.nullable(),
  tuning: z.record(z.string(), z.number()).nullable().describe("Live tuning overrides."),
  recentSteps: z.array(StepRecordSchema).describe("Newest last; steps this process's runner saw."),
});

export const ControlResponseSchema = z.object({
  name: z.string(),
  action: z.string(),
  from: z.string(),
  to: z.string(),
  migration: MigrationInfoSchema.nullable(),
});

export const ConflictSchema = ErrorSchema.extend({ name: z.string(), status: z.string() });

export const ActionBodySchema = z
  .object({ note: z.string().max(500).optional().describe("Stored in the audit record.") })
  .strict()
  .describe("Optional; an empty body is fine.");

const tuningField = (field: keyof typeof TUNABLE_FIELDS) => {
  const { min, max } = TUNABLE_FIELDS[field];
  return z
    .number()
    .int()
    .min(min)
    .max(max)
    .nullable()
    .optional()
    .describe(`${min}..${max}; null removes the override.`);
};

export const TuningPatchSchema = z
  .object({
    stepTargetMs: tuningField("stepTargetMs"),
    yieldMs: tuningField("yieldMs"),
    sliceBudgetMs: tuningField("sliceBudgetMs"),
    initialBatch: tuningField("initialBatch"),
    maxBatch: tuningField("maxBatch"),
  })
  .strict()
  .refine((patch) => Object.keys(patch).length > 0, { error: "set at least one field" })
  .describe("Live tuning; applied from the runner's next lease acquisition.");

export const TuningResponseSchema = z.object({
  name: z.string(),
  tuning: z.record(z.string(), z.number()).describe("All overrides now stored."),
  appliesFrom: z.literal("next lease acquisition"),
});

export const DryRunSchema = z.object({
  name: z.string(),
  description: z.string(),
  table: z.string(),
  key: z.string(),
  filter: z.string(),
  status: z.string().nullable(),
  blockedBy: z.string().nullable(),
  candidates: z
    .object({
      rowsTotal: JsonIntegerSchema,
      minKey: JsonIntegerSchema.nullable(),
      maxKey: JsonIntegerSchema.nullable(),
    })
    .nullable(),
  prerequisites: z.array(z.record(z.string(), z.unknown())),
  stepSql: z.array(z.string()),
});

export const DetailQuerySchema = z
  .object({
    steps: z
      .string()
      .regex(/^\d{1,3}$/, { error: "steps must be a whole number from 0 to 50" })
      .transform(Number)
      .pipe(z.number().int().max(50, { error: "steps must be a whole number from 0 to 50" }))
      .optional()
      .describe("How many recent steps to include (default 20)."),
  })
  .strict();

export const EmptyQuerySchema = z.object({}).strict();

export const MAX_TICK_BUDGET_MS = 900_000;

export const TickQuerySchema = z.object({
  budgetMs: z
    .string()
    .regex(/^\d{1,7}$/, {
      error: `budgetMs must be a whole number of milliseconds from 1 to ${MAX_TICK_BUDGET_MS}`,
    })
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(1, { error: `budgetMs must be a whole number of milliseconds from 1 to ${MAX_TICK_BUDGET_MS}` })
        .max(MAX_TICK_BUDGET_MS, {
          error: `budgetMs must be a whole number of milliseconds from 1 to ${MAX_TICK_BUDGET_MS}`,
        }),
    )
    .optional()
    .describe("Time budget of the slice (default: the configured slice budget)."),
});

export const TickResponseSchema = z.object({
  steps: z.number().int(),
  rows: JsonIntegerSchema,
  outcomes: z.array(z.object({ name: z.string(), outcome: z.string() })),
  moreWork: z.boolean(),
  durationMs: z.number(),
});

/** The first problem of a failed parse as `{ field, message }`, naming the field (or the unknown keys). */
export function firstIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0];
  if (!issue) return { field: "body", message: "invalid request" };
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.join(", ");
    return { field: keys, message: `unknown field${issue.keys.length > 1 ? "s" : ""}: ${keys}` };
  }
  const field = issue.path.length > 0 ? issue.path.map(String).join(".") : "body";
  const message = issue.message.startsWith(field) ? issue.message : `${field}: ${issue.message}`;
  return { field, message };
}
