/**
 * Operator settings — throttling, stuck detection, the lifecycle webhook and the quarantine cap — as one slice
 * of the settings. Kept for callers of the library API; the variables are read and validated with every other
 * one in src/settings.ts (documented there), so they mean the same thing everywhere.
 */
import { loadSettings, type Settings } from "../settings.ts";
import type { ThrottleConfig } from "./throttle.ts";
import type { Tuning } from "./tuning.ts";

export { DEFAULT_STUCK_AFTER_MS } from "../progress/rate.ts";

export interface OperatorConfig {
  readonly throttle: ThrottleConfig;
  /** A running migration whose cursor has not moved for this long (and is not throttled) is reported stuck. */
  readonly stuckAfterMs: number;
  readonly webhook: Settings["webhook"];
  /** Tuning that comes from these variables (`maxQuarantined`). */
  readonly tuning: Partial<Tuning>;
}

export const DEFAULT_OPERATOR_CONFIG: OperatorConfig = Object.freeze(operatorConfigOf(loadSettings({})));

/** Parses the environment (every variable, see src/settings.ts) and returns its operator part. */
export function loadOperatorConfig(env: Readonly<Record<string, string | undefined>>): OperatorConfig {
  return operatorConfigOf(loadSettings(env));
}

function operatorConfigOf(settings: Settings): OperatorConfig {
  return {
    throttle: settings.throttle,
    stuckAfterMs: settings.stuckAfterMs,
    webhook: settings.webhook,
    tuning: { maxQuarantined: settings.tuning.maxQuarantined },
  };
}
