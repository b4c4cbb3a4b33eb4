/**
 * Every setting trickle reads from its environment, read and validated in one place (design invariant 12): the
 * Node server, its engine thread, the Worker, Deno, Bun and the CLI all call `loadSettings`, so a variable means
 * the same thing — and is accepted or refused the same way — everywhere. Portable: it only reads the record it
 * is given (Workers pass their `env` bindings, Node passes `process.env`); no `node:*` imports.
 *
 * | Variable                        | Default                 | Meaning                                                  |
 * | ------------------------------- | ----------------------- | -------------------------------------------------------- |
 * | `PORT`                          | 8787                    | HTTP port (Node, Bun, Deno)                              |
 * | `DATABASE_URL`                  | runtime's default       | `file:…`, `libsql://…`, `http(s)://…`, `ws(s)://…`       |
 * | `DATABASE_AUTH_TOKEN`           | –                       | token for a remote database                              |
 * | `DATABASE_BINDING`              | –                       | Workers only: the name of a D1 binding (`[[d1_databases]]`) used instead of `DATABASE_URL` |
 * | `TRICKLE_BUSY_TIMEOUT_MS`       | 100                     | busy timeout of local (`file:`) connections              |
 * | `ADMIN_TOKEN`                   | – (control API off)     | Bearer token of the control API; empty = unset           |
 * | `CRON_SECRET`                   | – (HTTP tick off)       | Bearer token of `/api/tick`; empty = unset               |
 * | `TRICKLE_CONFIG`                | –                       | user-defined migrations: a JSON file, a .ts/.js module, or inline JSON |
 * | `TRICKLE_MIGRATIONS`            | the default set         | comma-separated migration names, `all` or `none`         |
 * | `TRICKLE_TICK_MS`               | 1000                    | pause between ticks when no work is left                 |
 * | `TRICKLE_SLICE_BUDGET_MS`       | engine default (2000)   | time budget of one slice                                 |
 * | `TRICKLE_SLICE_INTERVAL_MS`     | 0                       | while work remains, a slice starts at most this often (0: back to back); with the budget, a duty cycle |
 * | `TRICKLE_STEP_TARGET_MS`        | engine default (35)     | target duration of one step                              |
 * | `TRICKLE_YIELD_MS`              | engine default (10)     | pause between steps so waiting writers get the lock      |
 * | `TRICKLE_YIELD_POLICY`          | writers                 | `writers`: pauses sized to the busy handler's sleeps while other connections write (engine/yield.ts); `fixed`: `TRICKLE_YIELD_MS` after every step |
 * | `TRICKLE_LEASE_TTL_MS`          | engine default (15000)  | lease lifetime without a renewing step (> slice budget)  |
 * | `TRICKLE_SNAPSHOT_TTL_MS`       | 1000                    | how long a progress snapshot is served before a new read |
 * | `TRICKLE_MAX_QUARANTINED`       | 1000                    | quarantined rows before a run fails; 0 turns quarantine off |
 * | `TRICKLE_QUIET_HOURS`           | –                       | UTC windows without backfill work, e.g. `01:00-05:00`    |
 * | `TRICKLE_PROBE_SQL`             | –                       | read query whose latency gates the work (with `_MAX_MS`) |
 * | `TRICKLE_PROBE_MAX_MS`          | –                       | probe latency above which the run holds back             |
 * | `TRICKLE_PROBE_EVERY_MS`        | 5000                    | how often the probe runs while a migration runs          |
 * | `TRICKLE_PROBE_POLICY`          | backoff:30s             | `backoff:<s>s` or `hold:<m>m`                            |
 * | `TRICKLE_THROTTLE_BUSY_RATE`    | – (off)                 | hold back when more than this share (0..1) of recent steps hit SQLITE_BUSY |
 * | `TRICKLE_THROTTLE_BUSY_WINDOW`  | 20                      | step attempts the busy rate is taken over                |
 * | `TRICKLE_THROTTLE_BUSY_POLICY`  | backoff:30s             | `backoff:<s>s` or `hold:<m>m`                            |
 * | `TRICKLE_STUCK_AFTER_MS`        | 600000                  | a running migration whose cursor has not moved for this long is `stuck` |
 * | `TRICKLE_WEBHOOK_URL`           | –                       | POSTed a JSON event when a migration is done or failed   |
 * | `TRICKLE_WEBHOOK_SECRET`        | –                       | signs webhook bodies (`X-Trickle-Signature: sha256=…`)   |
 * | `TRICKLE_DENO_CRON`             | `* * * * *`             | schedule of `Deno.cron` (Deno only)                      |
 * | `TRICKLE_FLEET_DATABASES`       | –                       | a fleet file (one database URL per line) `/api/fleet` shows (Node) |
 * | `TRICKLE_FLEET`                 | –                       | Workers only: tenant database URLs, one per line (`#` comments, the fleet file's syntax), that the cron advances instead of one database |
 * | `TRICKLE_FLEET_CONCURRENCY`     | 4                       | Workers only: tenants advanced at once in a cron invocation (1–6: a Worker keeps at most 6 connections open) |
 *
 * One error style: an `Error` whose message starts with the variable's name. Messages never repeat the value of
 * a secret (`DATABASE_AUTH_TOKEN`, `ADMIN_TOKEN`, `CRON_SECRET`, `TRICKLE_WEBHOOK_SECRET`), of `DATABASE_URL`
 * or of `TRICKLE_WEBHOOK_URL` (URLs may carry a token).
 */
import { z } from "zod";
import {
  checkProbe,
  parsePolicy,
  parseQuietHours,
  type ThrottleConfig,
  type ThrottlePolicy,
} from "./engine/throttle.ts";
import { DEFAULT_TUNING, resolveTuning, type Tuning } from "./engine/tuning.ts";
import { DEFAULT_YIELD_POLICY, YIELD_POLICIES, type YieldPolicyName } from "./engine/yield.ts";
import { parseFleetFile } from "./fleet/fleet.ts";
import { DEFAULT_STUCK_AFTER_MS } from "./progress/rate.ts";

export const DEFAULT_PORT = 8787;
export const DEFAULT_TICK_MS = 1000;
export const DEFAULT_SNAPSHOT_TTL_MS = 1000;
export const DEFAULT_BUSY_TIMEOUT_MS = 100;
export const DEFAULT_DENO_CRON = "* * * * *";
export const DEFAULT_FLEET_CONCURRENCY = 4;
/** Connections a Worker invocation keeps open at once (Cloudflare's limit); more requests wait for one. */
const WORKER_MAX_CONNECTIONS = 6;

export type Env = Readonly<Record<string, string | undefined>>;

export interface WebhookSettings {
  readonly url: string;
  readonly secret?: string;
}

/** Everything the environment says, validated, with defaults applied. Plain data (crosses thread boundaries). */
export interface Settings {
  readonly port: number;
  /** As given (validated); the runtime entry applies its own default (Node: `file:data/trickle.db`). */
  readonly databaseUrl: string | undefined;
  readonly databaseAuthToken: string | undefined;
  /**
   * Workers only: the name of the D1 binding (`[[d1_databases]] binding = "…"` in wrangler.toml) the Worker
   * uses as its database instead of `DATABASE_URL`. Never set together with `DATABASE_URL`.
   */
  readonly databaseBinding: string | undefined;
  /** How long a local connection waits for a lock before SQLITE_BUSY, ms. */
  readonly busyTimeoutMs: number;
  /** Undefined: the control API answers 403. */
  readonly adminToken: string | undefined;
  /** Undefined: `/api/tick` answers 403. */
  readonly cronSecret: string | undefined;
  /** `TRICKLE_CONFIG` as given: a file path, or inline JSON text (starts with `{`). */
  readonly migrationsConfig: string | undefined;
  /** `TRICKLE_MIGRATIONS` as given; picked from the catalogue by `selectMigrations`. */
  readonly migrationNames: string | undefined;
  /** Engine tuning with the environment's overrides applied. */
  readonly tuning: Tuning;
  /** How the pause between steps is sized (src/engine/yield.ts). */
  readonly yieldPolicy: YieldPolicyName;
  readonly tickMs: number;
  /** While work remains, the least time from one slice's start to the next one's (0: back to back). */
  readonly sliceIntervalMs: number;
  readonly snapshotTtlMs: number;
  /** Runner-wide throttling (quiet hours, probe query, SQLITE_BUSY rate). */
  readonly throttle: ThrottleConfig;
  /** A running migration whose cursor has not moved for this long (and is not throttled) is reported stuck. */
  readonly stuckAfterMs: number;
  readonly webhook: WebhookSettings | undefined;
  readonly denoCron: string;
  /** A fleet file's path: the Node server serves its tenants' status at `/api/fleet`. */
  readonly fleetDatabases: string | undefined;
  /** Workers only: the tenant databases the cron advances (`TRICKLE_FLEET`), instead of one database. */
  readonly fleet: readonly string[] | undefined;
  /** Workers only: tenants advanced at once in one cron invocation. */
  readonly fleetConcurrency: number;
}

const blankToUndefined = (value: unknown) =>
  typeof value === "string" && value.trim() === "" ? undefined : value;

/** An optional whole number in `[min, max]`; blank means unset. */
function integerVar(
  name: string,
  min: number,
  max: number,
  unit = " of milliseconds",
  range = `${name} must be a whole number${unit} between ${min} and ${max}`,
) {
  return z.preprocess(
    blankToUndefined,
    z
      .string()
      .trim()
      .regex(/^\d+$/, { error: range })
      .transform(Number)
      .pipe(
        z
          .number()
          .int()
          .min(min, { error: min === 0 ? range : `${name} must be at least ${min}` })
          .max(max, { error: min === 0 ? range : `${name} must be at most ${max}` }),
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
    .transform((v) => (v === "" ? undefined : v))
    .optional();
}

/** An optional trimmed text; blank means unset. */
const textVar = () => z.preprocess(blankToUndefined, z.string().trim().optional());

/**
 * A text parsed by `parse`, which throws an `Error` whose message already names the variable; the message is
 * passed on as it is.
 */
function parsedVar<T>(parse: (text: string) => T) {
  return textVar().transform((value, ctx) => {
    if (value === undefined) return undefined;
    try {
      return parse(value);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  });
}

const policyVar = (name: string) => parsedVar<ThrottlePolicy>((v) => parsePolicy(v, name));

const EnvSchema = z.object({
  PORT: integerVar("PORT", 0, 65_535, "", "PORT must be a TCP port number between 0 and 65535").transform(
    (v) => v ?? DEFAULT_PORT,
  ),
  DATABASE_URL: parsedVar((url) => {
    checkDatabaseUrl(url);
    return url;
  }),
  DATABASE_AUTH_TOKEN: secretVar("DATABASE_AUTH_TOKEN"),
  DATABASE_BINDING: parsedVar((name) => {
    // wrangler refuses binding names that are not JavaScript identifiers; a URL here is a mix-up with DATABASE_URL.
    if (!/^[A-Za-z_$][A-Za-z0-9_$]{0,62}$/.test(name))
      throw new Error(
        'DATABASE_BINDING must be the name of a D1 binding ([[d1_databases]] binding = "DB" in wrangler.toml), e.g. DB',
      );
    return name;
  }),
  TRICKLE_BUSY_TIMEOUT_MS: integerVar("TRICKLE_BUSY_TIMEOUT_MS", 0, 600_000),
  ADMIN_TOKEN: secretVar("ADMIN_TOKEN"),
  CRON_SECRET: secretVar("CRON_SECRET"),
  TRICKLE_CONFIG: textVar(),
  TRICKLE_MIGRATIONS: parsedVar((names) => {
    if (!/^[A-Za-z0-9_,\s]+$/.test(names))
      throw new Error("TRICKLE_MIGRATIONS must be comma-separated migration names, `all` or `none`");
    return names;
  }),
  TRICKLE_TICK_MS: integerVar("TRICKLE_TICK_MS", 10, 3_600_000),
  TRICKLE_SLICE_BUDGET_MS: integerVar("TRICKLE_SLICE_BUDGET_MS", 10, 900_000),
  TRICKLE_SLICE_INTERVAL_MS: integerVar("TRICKLE_SLICE_INTERVAL_MS", 0, 3_600_000),
  TRICKLE_STEP_TARGET_MS: integerVar("TRICKLE_STEP_TARGET_MS", 1, 60_000),
  TRICKLE_YIELD_MS: integerVar("TRICKLE_YIELD_MS", 0, 60_000),
  TRICKLE_YIELD_POLICY: parsedVar((v) => {
    const policy = YIELD_POLICIES.find((p) => p === v.trim());
    if (!policy) throw new Error(`TRICKLE_YIELD_POLICY must be ${YIELD_POLICIES.join(" or ")}`);
    return policy;
  }),
  TRICKLE_LEASE_TTL_MS: integerVar("TRICKLE_LEASE_TTL_MS", 100, 3_600_000),
  TRICKLE_SNAPSHOT_TTL_MS: integerVar("TRICKLE_SNAPSHOT_TTL_MS", 0, 600_000),
  TRICKLE_MAX_QUARANTINED: integerVar("TRICKLE_MAX_QUARANTINED", 0, 10_000_000, ""),
  TRICKLE_QUIET_HOURS: parsedVar((v) => {
    parseQuietHours(v, "TRICKLE_QUIET_HOURS");
    return v;
  }),
  TRICKLE_PROBE_SQL: textVar(),
  TRICKLE_PROBE_MAX_MS: integerVar("TRICKLE_PROBE_MAX_MS", 1, 3_600_000),
  TRICKLE_PROBE_EVERY_MS: integerVar("TRICKLE_PROBE_EVERY_MS", 0, 3_600_000),
  TRICKLE_PROBE_POLICY: policyVar("TRICKLE_PROBE_POLICY"),
  TRICKLE_THROTTLE_BUSY_RATE: parsedVar((v) => {
    const rate = Number(v);
    if (!/^(0?\.\d+|0|1)$/.test(v) || !(rate > 0 && rate < 1))
      throw new Error("TRICKLE_THROTTLE_BUSY_RATE must be a number between 0 and 1, e.g. 0.5");
    return rate;
  }),
  TRICKLE_THROTTLE_BUSY_WINDOW: integerVar("TRICKLE_THROTTLE_BUSY_WINDOW", 2, 1000, " of steps"),
  TRICKLE_THROTTLE_BUSY_POLICY: policyVar("TRICKLE_THROTTLE_BUSY_POLICY"),
  TRICKLE_STUCK_AFTER_MS: integerVar("TRICKLE_STUCK_AFTER_MS", 1_000, 604_800_000),
  TRICKLE_WEBHOOK_URL: parsedVar((url) => {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:"))
      throw new Error("TRICKLE_WEBHOOK_URL must be an http:// or https:// URL");
    return url;
  }),
  TRICKLE_WEBHOOK_SECRET: secretVar("TRICKLE_WEBHOOK_SECRET"),
  TRICKLE_FLEET_DATABASES: parsedVar((path) => {
    // A file that lists URLs, not a URL itself (a one-letter "scheme" is a Windows drive).
    if (/^[a-z][a-z0-9+.-]+:/i.test(path))
      throw new Error(
        "TRICKLE_FLEET_DATABASES must be the path of a fleet file (one database URL per line), not a URL",
      );
    return path;
  }),
  TRICKLE_FLEET: parsedVar((text) => parseFleetFile(text, checkTenantUrl)),
  TRICKLE_FLEET_CONCURRENCY: integerVar(
    "TRICKLE_FLEET_CONCURRENCY",
    1,
    WORKER_MAX_CONNECTIONS,
    "",
    `TRICKLE_FLEET_CONCURRENCY must be a whole number between 1 and ${WORKER_MAX_CONNECTIONS} (a Worker keeps at most ${WORKER_MAX_CONNECTIONS} connections open)`,
  ),
  TRICKLE_DENO_CRON: parsedVar((v) => {
    if (v.split(/\s+/).length < 5)
      throw new Error(`TRICKLE_DENO_CRON: "${v}" must be a cron schedule of five fields, e.g. "* * * * *"`);
    return v;
  }),
});

/** The names of every variable `loadSettings` reads (what an engine thread needs to load the same settings). */
export const SETTINGS_VARIABLES: readonly string[] = Object.keys(EnvSchema.shape);

/**
 * Variables only a Cloudflare Worker can use, with why: Node, Deno, Bun and the CLI refuse them whatever their
 * value (`loadSettings(env, { workers: false })`), so a Workers setup copied to a server fails at start-up
 * instead of quietly opening the default local file.
 */
const WORKERS_ONLY: Readonly<Record<string, string>> = {
  DATABASE_BINDING:
    "DATABASE_BINDING names a Cloudflare D1 binding, which only a Worker has; on Node, Deno and Bun set DATABASE_URL",
  TRICKLE_FLEET:
    "TRICKLE_FLEET lists the tenants a Worker's cron advances; elsewhere run `trickle fleet run --databases FILE` (TRICKLE_FLEET_DATABASES shows a fleet file at /api/fleet)",
  TRICKLE_FLEET_CONCURRENCY:
    "TRICKLE_FLEET_CONCURRENCY goes with TRICKLE_FLEET, which only a Worker reads; the CLI takes `trickle fleet run --concurrency N`",
};
export const WORKERS_ONLY_VARIABLES: readonly string[] = Object.keys(WORKERS_ONLY);

export interface LoadSettingsOptions {
  /** Whether this runtime is a Cloudflare Worker, which alone reads `WORKERS_ONLY_VARIABLES`. Default true. */
  readonly workers?: boolean;
}

/** Parses and checks every setting. Throws an `Error` whose message starts with the first bad variable's name. */
export function loadSettings(env: Env, options: LoadSettingsOptions = {}): Settings {
  if (options.workers === false) {
    for (const [variable, why] of Object.entries(WORKERS_ONLY)) {
      if ((env[variable] ?? "").trim() !== "") throw new Error(why);
    }
  }
  // Only our variables are looked at, so nothing else in the environment can end up in an error message.
  const ours = Object.fromEntries(SETTINGS_VARIABLES.map((k) => [k, env[k]]));
  const parsed = EnvSchema.safeParse(ours);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = String(issue?.path[0] ?? "environment");
    const message = issue?.message ?? "invalid value";
    throw new Error(message.startsWith(variable) ? message : `${variable}: ${message}`);
  }
  const e = parsed.data;

  const overrides: Partial<Tuning> = {
    ...(e.TRICKLE_SLICE_BUDGET_MS !== undefined ? { sliceBudgetMs: e.TRICKLE_SLICE_BUDGET_MS } : {}),
    ...(e.TRICKLE_STEP_TARGET_MS !== undefined ? { stepTargetMs: e.TRICKLE_STEP_TARGET_MS } : {}),
    ...(e.TRICKLE_YIELD_MS !== undefined ? { yieldMs: e.TRICKLE_YIELD_MS } : {}),
    ...(e.TRICKLE_LEASE_TTL_MS !== undefined ? { leaseTtlMs: e.TRICKLE_LEASE_TTL_MS } : {}),
    ...(e.TRICKLE_MAX_QUARANTINED !== undefined ? { maxQuarantined: e.TRICKLE_MAX_QUARANTINED } : {}),
  };
  const tuning = resolveTuning(DEFAULT_TUNING, overrides);
  if (e.DATABASE_BINDING !== undefined && e.DATABASE_URL !== undefined) {
    throw new Error(
      "DATABASE_BINDING and DATABASE_URL are both set; set one: DATABASE_BINDING for a D1 binding, DATABASE_URL for libSQL",
    );
  }
  if (e.TRICKLE_FLEET !== undefined) {
    const single =
      e.DATABASE_BINDING !== undefined
        ? "DATABASE_BINDING"
        : e.DATABASE_URL !== undefined
          ? "DATABASE_URL"
          : undefined;
    if (single !== undefined) {
      throw new Error(
        `TRICKLE_FLEET and ${single} are both set; a Worker advances one database (DATABASE_URL or DATABASE_BINDING) or a fleet (TRICKLE_FLEET)`,
      );
    }
  } else if (e.TRICKLE_FLEET_CONCURRENCY !== undefined) {
    throw new Error("TRICKLE_FLEET_CONCURRENCY is set but TRICKLE_FLEET is not");
  }
  // A lease must outlive a slice, or a runner would lose its own lease in the middle of every slice.
  if (tuning.leaseTtlMs <= tuning.sliceBudgetMs) {
    throw new Error(
      `TRICKLE_LEASE_TTL_MS (${tuning.leaseTtlMs}) must be greater than TRICKLE_SLICE_BUDGET_MS (${tuning.sliceBudgetMs})`,
    );
  }

  return {
    port: e.PORT,
    databaseUrl: e.DATABASE_URL,
    databaseAuthToken: e.DATABASE_AUTH_TOKEN,
    databaseBinding: e.DATABASE_BINDING,
    busyTimeoutMs: e.TRICKLE_BUSY_TIMEOUT_MS ?? DEFAULT_BUSY_TIMEOUT_MS,
    adminToken: e.ADMIN_TOKEN,
    cronSecret: e.CRON_SECRET,
    migrationsConfig: e.TRICKLE_CONFIG,
    migrationNames: e.TRICKLE_MIGRATIONS,
    tuning,
    yieldPolicy: e.TRICKLE_YIELD_POLICY ?? DEFAULT_YIELD_POLICY,
    tickMs: e.TRICKLE_TICK_MS ?? DEFAULT_TICK_MS,
    sliceIntervalMs: e.TRICKLE_SLICE_INTERVAL_MS ?? 0,
    snapshotTtlMs: e.TRICKLE_SNAPSHOT_TTL_MS ?? DEFAULT_SNAPSHOT_TTL_MS,
    throttle: throttleOf(e),
    stuckAfterMs: e.TRICKLE_STUCK_AFTER_MS ?? DEFAULT_STUCK_AFTER_MS,
    webhook: webhookOf(e),
    denoCron: e.TRICKLE_DENO_CRON ?? DEFAULT_DENO_CRON,
    fleetDatabases: e.TRICKLE_FLEET_DATABASES,
    fleet: e.TRICKLE_FLEET,
    fleetConcurrency: e.TRICKLE_FLEET_CONCURRENCY ?? DEFAULT_FLEET_CONCURRENCY,
  };
}

type Parsed = z.infer<typeof EnvSchema>;

function throttleOf(e: Parsed): ThrottleConfig {
  const throttle: { -readonly [K in keyof ThrottleConfig]: ThrottleConfig[K] } = {};
  if (e.TRICKLE_QUIET_HOURS !== undefined) throttle.quietHours = e.TRICKLE_QUIET_HOURS;
  if ((e.TRICKLE_PROBE_SQL === undefined) !== (e.TRICKLE_PROBE_MAX_MS === undefined)) {
    throw new Error("TRICKLE_PROBE_SQL and TRICKLE_PROBE_MAX_MS must be set together");
  }
  if (e.TRICKLE_PROBE_SQL !== undefined && e.TRICKLE_PROBE_MAX_MS !== undefined) {
    try {
      throttle.probe = checkProbe(
        {
          sql: e.TRICKLE_PROBE_SQL,
          maxMs: e.TRICKLE_PROBE_MAX_MS,
          ...(e.TRICKLE_PROBE_EVERY_MS !== undefined ? { everyMs: e.TRICKLE_PROBE_EVERY_MS } : {}),
          ...(e.TRICKLE_PROBE_POLICY ? { policy: e.TRICKLE_PROBE_POLICY } : {}),
        },
        "probe",
      );
    } catch (error) {
      throw new Error(`TRICKLE_PROBE_SQL: ${(error as Error).message.replace(/^probe\.sql /, "")}`);
    }
  }
  if (e.TRICKLE_THROTTLE_BUSY_RATE !== undefined) {
    throttle.busy = {
      maxRate: e.TRICKLE_THROTTLE_BUSY_RATE,
      ...(e.TRICKLE_THROTTLE_BUSY_WINDOW !== undefined ? { window: e.TRICKLE_THROTTLE_BUSY_WINDOW } : {}),
      ...(e.TRICKLE_THROTTLE_BUSY_POLICY ? { policy: e.TRICKLE_THROTTLE_BUSY_POLICY } : {}),
    };
  }
  return throttle;
}

function webhookOf(e: Parsed): WebhookSettings | undefined {
  if (e.TRICKLE_WEBHOOK_URL === undefined) {
    if (e.TRICKLE_WEBHOOK_SECRET !== undefined)
      throw new Error("TRICKLE_WEBHOOK_SECRET is set but TRICKLE_WEBHOOK_URL is not");
    return undefined;
  }
  return {
    url: e.TRICKLE_WEBHOOK_URL,
    ...(e.TRICKLE_WEBHOOK_SECRET !== undefined ? { secret: e.TRICKLE_WEBHOOK_SECRET } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------
// DATABASE_URL

export const DATABASE_SCHEMES = ["file", "libsql", "http", "https", "ws", "wss"] as const;

/** Throws an `Error` naming `DATABASE_URL` unless `url` is one trickle can open. Never repeats the URL. */
export function checkDatabaseUrl(url: string): void {
  const scheme = /^([A-Za-z][A-Za-z0-9.+-]*):/.exec(url)?.[1]?.toLowerCase();
  const schemes = DATABASE_SCHEMES.map((s) => `${s}:`).join(", ");
  if (scheme === undefined) throw new Error(`DATABASE_URL must start with one of ${schemes}`);
  if (!(DATABASE_SCHEMES as readonly string[]).includes(scheme)) {
    throw new Error(`DATABASE_URL has unsupported scheme "${scheme}:"; use one of ${schemes}`);
  }
  if (scheme === "file") {
    fileUrlPath(url); // throws on a malformed file URL
    return;
  }
  let host = "";
  try {
    host = new URL(url).hostname;
  } catch {
    throw new Error(`DATABASE_URL is not a valid ${scheme}: URL`);
  }
  if (host === "")
    throw new Error(`DATABASE_URL (${scheme}:) must name a host, e.g. ${scheme}://db.example.com`);
}

/**
 * A tenant of `TRICKLE_FLEET`: a URL a Worker can open (`checkDatabaseUrl`'s rules, without `file:`). Messages
 * name the URL's line (see `parseFleetFile`), never the URL.
 */
function checkTenantUrl(url: string): void {
  if (/^file:/i.test(url)) {
    throw new Error(
      "the URL is a file: database, which a Worker cannot open; list libsql://, https:// or http:// URLs",
    );
  }
  try {
    checkDatabaseUrl(url);
  } catch (error) {
    throw new Error((error as Error).message.replace(/^DATABASE_URL:? ?/, "the URL "));
  }
}

/**
 * The file path of a `file:` URL as libSQL opens it (relative paths stay relative to the working directory),
 * or `undefined` for an in-memory database. Throws an `Error` naming `DATABASE_URL` for a malformed one.
 */
export function fileUrlPath(url: string): string | undefined {
  let rest = url.slice("file:".length).replace(/[?#].*$/s, "");
  if (rest.startsWith("//")) {
    // file://host/path: libSQL accepts only an empty host or localhost.
    const slash = rest.indexOf("/", 2);
    const host = rest.slice(2, slash === -1 ? undefined : slash).toLowerCase();
    if (host !== "" && host !== "localhost") {
      throw new Error(
        'DATABASE_URL: a file: URL with an absolute path starts with one slash ("file:/abs/path.db") or three ("file:///abs/path.db")',
      );
    }
    rest = slash === -1 ? "" : rest.slice(slash);
  }
  let path: string;
  try {
    path = decodeURIComponent(rest);
  } catch {
    throw new Error("DATABASE_URL: the file path has an invalid percent-escape");
  }
  if (path === "") throw new Error("DATABASE_URL: the file: URL has no path, e.g. file:data/trickle.db");
  if (path === ":memory:") return undefined;
  return path;
}
