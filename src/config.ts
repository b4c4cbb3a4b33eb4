/**
 * Service configuration from environment variables, validated once at start-up (portable: it only reads the
 * record it is given, so Workers can pass their `env` bindings and Node passes `process.env`).
 *
 * | Variable                  | Default                 | Meaning                                                  |
 * | ------------------------- | ----------------------- | -------------------------------------------------------- |
 * | `PORT`                    | 8787                    | HTTP port (Node, Bun, Deno)                              |
 * | `DATABASE_URL`            | runtime's default       | `file:…`, `libsql://…`, `http(s)://…`                    |
 * | `DATABASE_AUTH_TOKEN`     | –                       | token for a remote database                              |
 * | `ADMIN_TOKEN`             | – (control API off)     | Bearer token of the control API; empty = unset           |
 * | `CRON_SECRET`             | – (HTTP tick off)       | Bearer token of `/api/tick`; empty = unset               |
 * | `TRICKLE_MIGRATIONS`      | the default set         | comma-separated migration names, or `all`                |
 * | `TRICKLE_TICK_MS`         | 1000                    | pause between ticks when no work is left                 |
 * | `TRICKLE_SLICE_BUDGET_MS` | engine default (2000)   | time budget of one slice                                 |
 * | `TRICKLE_STEP_TARGET_MS`  | engine default (50)     | target duration of one step                              |
 * | `TRICKLE_YIELD_MS`        | engine default (10)     | pause between steps so waiting writers get the lock      |
 * | `TRICKLE_LEASE_TTL_MS`    | engine default (15000)  | lease lifetime without a renewing step                   |
 * | `TRICKLE_SNAPSHOT_TTL_MS` | 1000                    | how long a progress snapshot is served before a new read |
 *
 * Invalid values throw an `Error` whose message names the variable. Messages never repeat the value of a
 * secret (`DATABASE_AUTH_TOKEN`, `ADMIN_TOKEN`, `CRON_SECRET`) or of `DATABASE_URL` (it may carry a token).
 */
import { z } from "zod";
import { DEFAULT_TUNING, resolveTuning, type Tuning } from "./engine/tuning.ts";
import type { MigrationDefinition } from "./migrations/define.ts";
import { BUILTIN_MIGRATIONS, selectMigrations } from "./migrations/registry.ts";

export const DEFAULT_PORT = 8787;
export const DEFAULT_TICK_MS = 1000;
export const DEFAULT_SNAPSHOT_TTL_MS = 1000;

export interface ServiceConfig {
  readonly port: number;
  /** As given; the runtime entry validates and defaults it (Node: src/node/database.ts). */
  readonly databaseUrl: string | undefined;
  readonly databaseAuthToken: string | undefined;
  /** Undefined: the control API answers 403. */
  readonly adminToken: string | undefined;
  /** Undefined: `/api/tick` answers 403. */
  readonly cronSecret: string | undefined;
  /** The migrations this service registers and runs (`TRICKLE_MIGRATIONS`). */
  readonly migrations: readonly MigrationDefinition[];
  /** Engine tuning with the environment's overrides applied. */
  readonly tuning: Tuning;
  readonly tickMs: number;
  readonly snapshotTtlMs: number;
}

export type Env = Readonly<Record<string, string | undefined>>;

const blankToUndefined = (value: unknown) =>
  typeof value === "string" && value.trim() === "" ? undefined : value;

/**
 * An optional integer variable in `[min, max]` (blank means unset); the message names the variable and the
 * range, never a secret.
 */
function integerVar(name: string, min: number, max: number) {
  return z.preprocess(
    blankToUndefined,
    z
      .string()
      .trim()
      .regex(/^\d+$/, { error: `${name} must be a whole number of milliseconds between ${min} and ${max}` })
      .transform(Number)
      .pipe(
        z
          .number()
          .int()
          .min(min, { error: `${name} must be at least ${min}` })
          .max(max, { error: `${name} must be at most ${max}` }),
      )
      .optional(),
  );
}

/** A secret: empty or blank means unset; whitespace inside is almost surely a copy-and-paste mistake. */
function secretVar(name: string) {
  return z
    .string()
    .transform((v) => v.trim())
    .refine((v) => !/\s/.test(v), { error: `${name} must not contain whitespace` })
    .transform((v) => (v === "" ? undefined : v));
}

const EnvSchema = z.object({
  PORT: z.preprocess(
    blankToUndefined,
    z
      .string()
      .trim()
      .regex(/^\d+$/, { error: "PORT must be a TCP port number between 0 and 65535" })
      .transform(Number)
      .pipe(z.number().int().max(65_535, { error: "PORT must be a TCP port number between 0 and 65535" }))
      .optional(),
  ),
  DATABASE_URL: z.preprocess(blankToUndefined, z.string().trim().optional()),
  DATABASE_AUTH_TOKEN: secretVar("DATABASE_AUTH_TOKEN").optional(),
  ADMIN_TOKEN: secretVar("ADMIN_TOKEN").optional(),
  CRON_SECRET: secretVar("CRON_SECRET").optional(),
  TRICKLE_MIGRATIONS: z.string().optional(),
  TRICKLE_TICK_MS: integerVar("TRICKLE_TICK_MS", 10, 3_600_000),
  TRICKLE_SLICE_BUDGET_MS: integerVar("TRICKLE_SLICE_BUDGET_MS", 10, 900_000),
  TRICKLE_STEP_TARGET_MS: integerVar("TRICKLE_STEP_TARGET_MS", 1, 60_000),
  TRICKLE_YIELD_MS: integerVar("TRICKLE_YIELD_MS", 0, 60_000),
  TRICKLE_LEASE_TTL_MS: integerVar("TRICKLE_LEASE_TTL_MS", 100, 3_600_000),
  TRICKLE_SNAPSHOT_TTL_MS: integerVar("TRICKLE_SNAPSHOT_TTL_MS", 0, 600_000),
});

/**
 * Parses and checks the configuration. Throws an `Error` naming the first bad variable.
 *
 * `available` is the catalogue `TRICKLE_MIGRATIONS` picks from (default: the built-in migrations).
 */
export function loadConfig(
  env: Env,
  available: readonly MigrationDefinition[] = BUILTIN_MIGRATIONS,
): ServiceConfig {
  // Only our variables are looked at, so nothing else in the environment can end up in an error message.
  const ours = Object.fromEntries(Object.keys(EnvSchema.shape).map((k) => [k, env[k]]));
  const parsed = EnvSchema.safeParse(ours);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = String(issue?.path[0] ?? "environment");
    const message = issue?.message ?? "invalid value";
    throw new Error(message.startsWith(variable) ? message : `${variable}: ${message}`);
  }
  const e = parsed.data;

  let migrations: MigrationDefinition[];
  try {
    migrations = selectMigrations(e.TRICKLE_MIGRATIONS, available);
  } catch (error) {
    throw new Error(`TRICKLE_MIGRATIONS: ${(error as Error).message}`);
  }

  const overrides: Partial<Tuning> = {
    ...(e.TRICKLE_SLICE_BUDGET_MS !== undefined ? { sliceBudgetMs: e.TRICKLE_SLICE_BUDGET_MS } : {}),
    ...(e.TRICKLE_STEP_TARGET_MS !== undefined ? { stepTargetMs: e.TRICKLE_STEP_TARGET_MS } : {}),
    ...(e.TRICKLE_YIELD_MS !== undefined ? { yieldMs: e.TRICKLE_YIELD_MS } : {}),
    ...(e.TRICKLE_LEASE_TTL_MS !== undefined ? { leaseTtlMs: e.TRICKLE_LEASE_TTL_MS } : {}),
  };
  const tuning = resolveTuning(DEFAULT_TUNING, overrides);
  // A lease must outlive a slice, or a runner would lose its own lease in the middle of every slice.
  if (tuning.leaseTtlMs <= tuning.sliceBudgetMs) {
    throw new Error(
      `TRICKLE_LEASE_TTL_MS (${tuning.leaseTtlMs}) must be greater than TRICKLE_SLICE_BUDGET_MS (${tuning.sliceBudgetMs})`,
    );
  }

  return {
    port: e.PORT ?? DEFAULT_PORT,
    databaseUrl: e.DATABASE_URL,
    databaseAuthToken: e.DATABASE_AUTH_TOKEN,
    adminToken: e.ADMIN_TOKEN,
    cronSecret: e.CRON_SECRET,
    migrations,
    tuning,
    tickMs: e.TRICKLE_TICK_MS ?? DEFAULT_TICK_MS,
    snapshotTtlMs: e.TRICKLE_SNAPSHOT_TTL_MS ?? DEFAULT_SNAPSHOT_TTL_MS,
  };
}
