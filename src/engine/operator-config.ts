/**
 * Operator settings from environment variables: throttling, stuck detection, the lifecycle webhook and the
 * quarantine cap. Validated at start-up like the rest of the configuration; messages name the variable and never
 * repeat the webhook URL (it may carry a token) or the webhook secret. Portable: it only reads the record given.
 *
 * | Variable                        | Default      | Meaning                                                          |
 * | ------------------------------- | ------------ | ---------------------------------------------------------------- |
 * | `TRICKLE_QUIET_HOURS`           | –            | UTC windows without backfill work, e.g. `01:00-05:00,22:00-23:00` |
 * | `TRICKLE_PROBE_SQL`             | –            | read query whose latency gates the work (with `_MAX_MS`)          |
 * | `TRICKLE_PROBE_MAX_MS`          | –            | probe latency above which the run holds back                     |
 * | `TRICKLE_PROBE_EVERY_MS`        | 5000         | how often the probe runs while a migration runs                  |
 * | `TRICKLE_PROBE_POLICY`          | backoff:30s  | `backoff:<s>s` or `hold:<m>m`                                     |
 * | `TRICKLE_THROTTLE_BUSY_RATE`    | – (off)      | hold back when more than this share (0..1) of recent steps hit SQLITE_BUSY |
 * | `TRICKLE_THROTTLE_BUSY_WINDOW`  | 20           | step attempts the busy rate is taken over                        |
 * | `TRICKLE_THROTTLE_BUSY_POLICY`  | backoff:30s  | `backoff:<s>s` or `hold:<m>m`                                     |
 * | `TRICKLE_STUCK_AFTER_MS`        | 600000       | a running migration whose cursor has not moved for this long is `stuck` |
 * | `TRICKLE_WEBHOOK_URL`           | –            | POSTed a JSON event when a migration is done or failed           |
 * | `TRICKLE_WEBHOOK_SECRET`        | –            | signs webhook bodies (`X-Trickle-Signature: sha256=…`)            |
 * | `TRICKLE_MAX_QUARANTINED`       | 1000         | quarantined rows before a run fails; 0 turns quarantine off      |
 */

import { DEFAULT_STUCK_AFTER_MS } from "../progress/rate.ts";
import {
  checkProbe,
  parsePolicy,
  parseQuietHours,
  type ThrottleConfig,
  type ThrottlePolicy,
} from "./throttle.ts";
import type { Tuning } from "./tuning.ts";

export { DEFAULT_STUCK_AFTER_MS } from "../progress/rate.ts";

export interface OperatorConfig {
  readonly throttle: ThrottleConfig;
  /** A running migration whose cursor has not moved for this long (and is not throttled) is reported stuck. */
  readonly stuckAfterMs: number;
  readonly webhook: { readonly url: string; readonly secret?: string } | undefined;
  /** Tuning that comes from these variables (`maxQuarantined`). */
  readonly tuning: Partial<Tuning>;
}

export const DEFAULT_OPERATOR_CONFIG: OperatorConfig = Object.freeze({
  throttle: {},
  stuckAfterMs: DEFAULT_STUCK_AFTER_MS,
  webhook: undefined,
  tuning: {},
});

type Env = Readonly<Record<string, string | undefined>>;

function value(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function wholeNumber(env: Env, name: string, min: number, max: number): number | undefined {
  const v = value(env, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new Error(`${name} must be a whole number between ${min} and ${max}`);
  return Number(v);
}

function policy(env: Env, name: string): ThrottlePolicy | undefined {
  const v = value(env, name);
  return v === undefined ? undefined : parsePolicy(v, name);
}

/** Parses the operator variables; throws an `Error` naming the first bad one. */
export function loadOperatorConfig(env: Env): OperatorConfig {
  const throttle: { -readonly [K in keyof ThrottleConfig]: ThrottleConfig[K] } = {};
  const quiet = value(env, "TRICKLE_QUIET_HOURS");
  if (quiet !== undefined) {
    parseQuietHours(quiet, "TRICKLE_QUIET_HOURS");
    throttle.quietHours = quiet;
  }

  const probeSql = value(env, "TRICKLE_PROBE_SQL");
  const probeMax = wholeNumber(env, "TRICKLE_PROBE_MAX_MS", 1, 3_600_000);
  if ((probeSql === undefined) !== (probeMax === undefined)) {
    throw new Error("TRICKLE_PROBE_SQL and TRICKLE_PROBE_MAX_MS must be set together");
  }
  if (probeSql !== undefined && probeMax !== undefined) {
    const everyMs = wholeNumber(env, "TRICKLE_PROBE_EVERY_MS", 0, 3_600_000);
    const probePolicy = policy(env, "TRICKLE_PROBE_POLICY");
    try {
      throttle.probe = checkProbe(
        {
          sql: probeSql,
          maxMs: probeMax,
          ...(everyMs !== undefined ? { everyMs } : {}),
          ...(probePolicy ? { policy: probePolicy } : {}),
        },
        "probe",
      );
    } catch (error) {
      throw new Error(`TRICKLE_PROBE_SQL: ${(error as Error).message.replace(/^probe\.sql /, "")}`);
    }
  }

  const busyRate = value(env, "TRICKLE_THROTTLE_BUSY_RATE");
  if (busyRate !== undefined) {
    const rate = Number(busyRate);
    if (!/^(0?\.\d+|0|1)$/.test(busyRate) || !(rate > 0 && rate < 1))
      throw new Error("TRICKLE_THROTTLE_BUSY_RATE must be a number between 0 and 1, e.g. 0.5");
    const window = wholeNumber(env, "TRICKLE_THROTTLE_BUSY_WINDOW", 2, 1000);
    const busyPolicy = policy(env, "TRICKLE_THROTTLE_BUSY_POLICY");
    throttle.busy = {
      maxRate: rate,
      ...(window !== undefined ? { window } : {}),
      ...(busyPolicy ? { policy: busyPolicy } : {}),
    };
  }

  const stuckAfterMs =
    wholeNumber(env, "TRICKLE_STUCK_AFTER_MS", 1_000, 604_800_000) ?? DEFAULT_STUCK_AFTER_MS;

  let webhook: OperatorConfig["webhook"];
  const url = value(env, "TRICKLE_WEBHOOK_URL");
  if (url !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
      throw new Error("TRICKLE_WEBHOOK_URL must be an http:// or https:// URL");
    }
    const secret = value(env, "TRICKLE_WEBHOOK_SECRET");
    if (secret !== undefined && /\s/.test(secret))
      throw new Error("TRICKLE_WEBHOOK_SECRET must not contain whitespace");
    webhook = { url, ...(secret !== undefined ? { secret } : {}) };
  } else if (value(env, "TRICKLE_WEBHOOK_SECRET") !== undefined) {
    throw new Error("TRICKLE_WEBHOOK_SECRET is set but TRICKLE_WEBHOOK_URL is not");
  }

  const maxQuarantined = wholeNumber(env, "TRICKLE_MAX_QUARANTINED", 0, 10_000_000);
  return {
    throttle,
    stuckAfterMs,
    webhook,
    tuning: maxQuarantined === undefined ? {} : { maxQuarantined },
  };
}
