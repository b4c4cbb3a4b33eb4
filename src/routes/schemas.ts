/**
 * Request and response schemas of the HTTP API. Requests are validated with them; `/api/openapi.json` is built
 * from them, so the document and the validation cannot drift apart.
 */
import { z } from "zod";
import { TUNABLE_FIELDS } from "../engine/controls.ts";
import { INT64_MAX, INT64_MIN, int64Key } from "../engine/state/row.ts";
import { TENANT_STATUSES } from "../fleet/fleet.ts";
import { REPORTED_STATUSES } from "../progress/snapshot.ts";
import type { Problem } from "./problem.ts";

export const JsonIntegerSchema = z
  .union([z.number().int(), z.string().regex(/^-?\d+$/)])
  .describe(
    "An exact integer: a JSON number while it is a safe integer (≤ 2^53 − 1), else its decimal text.",
  );

export const ErrorSchema = z
  .object({
    type: z.literal("about:blank"),
    title: z.string().describe("The HTTP status's name."),
    status: z.number().int().describe("The HTTP status code."),
    detail: z.string().describe("What went wrong, for a human."),
    error: z.string().describe("The same text as `detail` (the field earlier versions answered)."),
    field: z.string().optional().describe("The first request field that is wrong (validation errors)."),
    problems: z
      .array(z.object({ field: z.string(), message: z.string() }))
      .optional()
      .describe("Every wrong field of a request that failed validation."),
  })
  .describe("Every error response: RFC 9457 problem details (`application/problem+json`).");

export const MigrationInfoSchema = z.object({
  name: z.string(),
  status: z
    .enum(REPORTED_STATUSES as [string, ...string[]])
    .describe("Stored values trickle does not know are `unknown`, never `running`."),
  rowsProcessed: JsonIntegerSchema,
  rowsTotal: JsonIntegerSchema,
  owned: z
    .boolean()
    .describe(
      "False for a row of `_async_migrations` this service does not run: shown read-only, never running.",
    ),
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
  etaLowSeconds: z
    .number()
    .nullable()
    .describe(
      "Fast end of the ETA band: p10 of the ETA from the spread of recent effective rates, at most etaSeconds / 1.25.",
    ),
  etaHighSeconds: z
    .number()
    .nullable()
    .describe("Slow end of the ETA band (p90, at least etaSeconds / 0.75); null when unknown or unbounded."),
  stuck: z
    .boolean()
    .describe("Running, not throttled, and the cursor has not moved for TRICKLE_STUCK_AFTER_MS."),
  progressAt: z.string().nullable().describe("When the cursor last moved."),
  quarantined: JsonIntegerSchema.describe(
    "Poison rows skipped and not resolved; rowsProcessed + quarantined = rowsTotal when a quiet run ends.",
  ),
  verifiedAt: z.string().nullable().describe("When verification last ran."),
  residual: JsonIntegerSchema.nullable().describe(
    "Rows verification found still needing work (quarantined rows aside); 0 once done.",
  ),
  throttle: z
    .object({ reason: z.string(), until: z.string() })
    .nullable()
    .describe("Why and until when (ISO-8601 UTC) the migration holds back; null when it is not throttled."),
  phase: z
    .enum(["counting", "backfilling", "verifying"])
    .nullable()
    .describe("What a running migration does: counting candidates, the data walk, or verifying; else null."),
  phaseCursor: JsonIntegerSchema.nullable().describe("The last key the current walk covered."),
  phaseEnd: JsonIntegerSchema.nullable().describe("The key the current walk ends at."),
  ratePerSec: z.number().describe("`rate`, as CoreScope #1735 names it."),
  etaSec: z.number().nullable().describe("`etaSeconds`, as CoreScope #1735 names it."),
  elapsedSec: z.number().describe("`elapsedSeconds`, as CoreScope #1735 names it."),
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
  recentSteps: z
    .record(z.string(), z.array(z.lazy(() => StepRecordSchema)))
    .describe("The last steps this process committed, per migration (newest last)."),
  recentProbes: z
    .record(z.string(), z.array(z.lazy(() => ProbeRecordSchema)))
    .describe(
      "The last runs of the throttle's probe query, per migration (newest last; empty without a probe).",
    ),
  stepTargetMs: z.number().int().nullable().describe("The configured step target, ms."),
});

export const ProbeRecordSchema = z.object({
  at: z.string(),
  durationMs: z.number(),
  limitMs: z.number().describe("The latency above which the migration holds back."),
  ok: z.boolean().describe("False when the probe query failed."),
});

export const StepRecordSchema = z.object({
  at: z.string(),
  batchSize: z.number().int(),
  rows: JsonIntegerSchema,
  rowsProcessed: JsonIntegerSchema,
  durationMs: z.number().describe("How long the step held the write lock."),
  lockWaitMs: z.number().describe("How long it waited for the lock first (local files; 0 elsewhere)."),
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
  dependsOn: z.array(z.string()).describe("Migrations that must be done before this one starts."),
  failedSteps: JsonIntegerSchema.describe("Step attempts of this run that failed deterministically."),
  recentSteps: z.array(StepRecordSchema).describe("Newest last; steps this process's runner saw."),
});

export const ControlResponseSchema = z.object({
  name: z.string(),
  action: z.string(),
  from: z.string(),
  to: z.string(),
  migration: MigrationInfoSchema.nullable(),
});

export const ConflictSchema = ErrorSchema.extend({
  name: z.string(),
  migrationStatus: z.string().describe("The migration's status, from which the action is impossible."),
});

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

const JsonScalarSchema = z.union([z.string(), z.number(), z.boolean(), z.null()]);

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
  rolledBack: z.boolean().describe("A real step ran inside a transaction that was rolled back."),
  step: z
    .object({
      batchSize: z.number().int(),
      fromKey: JsonIntegerSchema,
      toKey: JsonIntegerSchema,
      keys: JsonIntegerSchema,
      rows: JsonIntegerSchema.describe("Candidate rows the step changed."),
      durationMs: z.number(),
    })
    .nullable(),
  failure: z
    .object({
      phase: z
        .enum(["prepare", "bounds", "read", "step"])
        .describe(
          "`step`: the step's data change failed (a poison row in its range); else what failed before it.",
        ),
      fromKey: JsonIntegerSchema.nullable().describe(
        "First key of the step's range (null before it was known).",
      ),
      toKey: JsonIntegerSchema.nullable().describe("Last key of the step's range (inclusive)."),
      code: z.string().describe("SQLite's error code, e.g. SQLITE_CONSTRAINT_CHECK."),
      message: z.string().describe("SQLite's message."),
    })
    .nullable()
    .describe(
      "Set when a deterministic error (a CHECK constraint, a `set` that raises) stopped the dry-run: the answer " +
        "is still 200, `step` and `projection` are null, nothing was changed, and a note says what a run would do.",
    ),
  samples: z
    .array(
      z.object({
        key: z.string(),
        before: z.record(z.string(), JsonScalarSchema),
        after: z.record(z.string(), JsonScalarSchema).nullable(),
        changed: z.array(z.string()),
      }),
    )
    .describe("A few candidate rows of the first range, read in the transaction before and after the step."),
  projection: z
    .object({
      keysInRange: JsonIntegerSchema,
      rowsTotal: JsonIntegerSchema,
      keysPerSecond: z.number(),
      batchAtTarget: z.number().int(),
      steps: z.number().int(),
      slices: z.number().int(),
      busySeconds: z.number(),
      wallSeconds: z.number().describe("Projected duration of the whole run for this schedule."),
      wallSecondsWhileWriting: z
        .number()
        .describe(
          "The same while the application writes throughout (the `writers` pause after every step); a lower bound.",
        ),
      dutyCycle: z.number(),
      schedule: z.object({
        sliceBudgetMs: z.number(),
        tickIntervalMs: z.number(),
        yieldMs: z.number(),
        pauseWhileWritingMs: z.number(),
        stepTargetMs: z.number(),
      }),
    })
    .nullable(),
  notes: z.array(z.string()),
});

export const DryRunBodySchema = z
  .object({
    note: z.string().max(500).optional().describe("Stored in the audit record."),
    batchSize: z.number().int().min(1).max(1_000_000).optional().describe("Keys the step covers."),
    tickIntervalMs: z
      .number()
      .int()
      .min(1)
      .max(86_400_000)
      .optional()
      .describe("Interval between slices to project for (e.g. 60000 for a cron every minute)."),
    sampleSize: z
      .number()
      .int()
      .min(0)
      .max(20)
      .optional()
      .describe("Rows shown before and after (default 3)."),
  })
  .strict()
  .describe("Optional; an empty body is fine.");

export const FailureSchema = z.object({
  key: JsonIntegerSchema,
  error: z.string(),
  at: z.string().describe("When the row last failed."),
  attempts: z.number().int(),
  pass: z.number().int().nullable(),
  resolvedAt: z.string().nullable(),
  resolution: z.string().nullable().describe("`retried` or `new run`."),
  retryRequestedAt: z.string().nullable(),
});

export const FailuresResponseSchema = z.object({
  name: z.string(),
  quarantined: JsonIntegerSchema,
  failures: z.array(FailureSchema).describe("By key; unresolved only unless ?resolved=include."),
});

export const FleetResponseSchema = z.object({
  takenAt: z
    .string()
    .describe("When the tenants were read (ISO-8601 UTC); reads are cached for a few seconds."),
  summary: z.object({
    total: z.number().int(),
    done: z.number().int(),
    running: z.number().int(),
    pending: z.number().int(),
    failed: z.number().int(),
    unreachable: z.number().int(),
    skipped: z.number().int(),
  }),
  tenants: z.array(
    z.object({
      database: z.string().describe("The URL as listed, credentials removed."),
      status: z.enum(TENANT_STATUSES),
      detail: z.string().nullable().describe("Why it is failed, unreachable or waiting."),
      migrations: z.array(
        z.object({
          name: z.string(),
          status: z.string(),
          rowsProcessed: JsonIntegerSchema,
          rowsTotal: JsonIntegerSchema,
          error: z.string().nullable(),
          reason: z.string().nullable(),
        }),
      ),
    }),
  ),
});

export const FailuresQuerySchema = z
  .object({
    resolved: z
      .enum(["include", "exclude"])
      .optional()
      .describe("`include` also lists resolved rows (default `exclude`)."),
  })
  .strict();

const KEY_ERROR = `keys must be integers from ${INT64_MIN} to ${INT64_MAX}`;

const KeySchema = z
  .union([z.number(), z.string()], { error: KEY_ERROR })
  .transform((value, ctx) => {
    const key = int64Key(value);
    if (key !== undefined) return key;
    ctx.addIssue({ code: "custom", message: KEY_ERROR });
    return z.NEVER;
  })
  .describe(
    "An integer key in [-2^63, 2^63 - 1]: a JSON number while it is a safe integer, else its decimal text.",
  );

export const FailureRetryBodySchema = z
  .object({
    keys: z
      .array(KeySchema)
      .min(1)
      .max(1000)
      .optional()
      .describe("Only these keys (default: every unresolved row)."),
    note: z.string().max(500).optional().describe("Stored in the audit record."),
  })
  .strict()
  .describe("Optional; an empty body retries every unresolved quarantined row.");

export const FailureRetryResponseSchema = z.object({
  name: z.string(),
  requested: z.number().int().describe("Quarantined rows marked for retry."),
  from: z.string(),
  to: z.string(),
  appliesWhen: z.string(),
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

/** The largest slice budget the settings accept; `/api/tick` refuses anything above the configured one. */
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
    .describe(
      "Time budget of the slice, ms: from 1 to the configured slice budget (TRICKLE_SLICE_BUDGET_MS, which " +
        "is kept below the lease TTL); larger is a 400 naming the limit. Default: the configured slice budget.",
    ),
});

export const TickResponseSchema = z.object({
  budgetMs: z
    .number()
    .int()
    .describe(
      "The budget this request gave the slice, ms (a request arriving while a slice is in flight joins it).",
    ),
  steps: z.number().int(),
  rows: JsonIntegerSchema,
  pieces: z
    .number()
    .int()
    .describe("Pieces of the read-only walks (counting, verification) run: progress, though no row changed."),
  outcomes: z.array(z.object({ name: z.string(), outcome: z.string() })),
  moreWork: z.boolean(),
  durationMs: z.number(),
});

/** Every problem of a failed parse as `{ field, message }`, naming the field (or the unknown keys). */
export function issuesOf(error: z.ZodError): Problem[] {
  return error.issues.map((issue) => {
    if (issue.code === "unrecognized_keys") {
      const keys = issue.keys.join(", ");
      return { field: keys, message: `unknown field${issue.keys.length > 1 ? "s" : ""}: ${keys}` };
    }
    const field = issue.path.length > 0 ? issue.path.map(String).join(".") : "body";
    const message = issue.message.startsWith(field) ? issue.message : `${field}: ${issue.message}`;
    return { field, message };
  });
}
