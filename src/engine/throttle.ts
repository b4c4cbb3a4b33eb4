/**
 * Throttling: when a migration holds back although it could run, and for how long.
 *
 * Three signals, each with a policy (job-iteration's `throttle_on` backs off for seconds; GitLab's hold puts a
 * migration `on_hold_until` for minutes):
 * - `busy`: the share of recent step attempts that ended in SQLITE_BUSY / SQLITE_LOCKED climbs above `maxRate`
 *   (the application is fighting the runner for the write lock). Off unless configured: the transient-error
 *   back-off already handles short lock waits.
 * - `probe`: an operator's read query (one the application runs, say) takes longer than `maxMs` — the database
 *   is struggling. A probe that fails also throttles (fail safe; the reason shows why).
 * - `quietHours`: UTC windows such as `01:00-05:00` (backups, batch jobs) in which nothing runs; held until the
 *   window ends.
 *
 * A decision is written to the migration's row (`throttle_reason`, `throttled_until`) so every runner and every
 * reader sees it; runners skip the migration until then without taking its lease. Portable: no `node:*`.
 */

import { classifyError } from "./errors.ts";

/** `backoff`: a short pause (seconds) after which the signal is looked at again; `hold`: a long one (minutes). */
export type ThrottlePolicy =
  | { readonly kind: "backoff"; readonly seconds: number }
  | { readonly kind: "hold"; readonly minutes: number };

export const DEFAULT_BACKOFF: ThrottlePolicy = Object.freeze({ kind: "backoff", seconds: 30 });
export const DEFAULT_BUSY_WINDOW = 20;
export const DEFAULT_PROBE_EVERY_MS = 5_000;

export interface BusyThrottle {
  /** Throttle when more than this share (0..1) of the last `window` step attempts hit SQLITE_BUSY. */
  readonly maxRate: number;
  /** Attempts looked at; the signal needs this many before it can trip. Default 20. */
  readonly window?: number;
  readonly policy?: ThrottlePolicy;
}

export interface ProbeThrottle {
  /** A read-only query (SELECT or WITH), run every `everyMs` while the migration runs. */
  readonly sql: string;
  /** Throttle when the probe takes longer than this, ms. */
  readonly maxMs: number;
  /** Default 5000. */
  readonly everyMs?: number;
  readonly policy?: ThrottlePolicy;
}

/** Runner-wide throttling (configuration); a definition may add its own probe and quiet hours. */
export interface ThrottleConfig {
  readonly busy?: BusyThrottle;
  readonly probe?: ProbeThrottle;
  /** UTC windows, `HH:MM-HH:MM` (may wrap past midnight), as a list or comma-separated. */
  readonly quietHours?: string | readonly string[];
}

/** One quiet-hours window in minutes of the UTC day; `end` may be smaller than `start` (wraps). */
export interface QuietWindow {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

export type ThrottleSignal = "busy" | "probe" | "quiet-hours";

/** One run of a probe query: how long it took against its limit, and whether it answered. */
export interface ProbeSample {
  readonly name: string;
  readonly durationMs: number;
  readonly limitMs: number;
  readonly ok: boolean;
}

export interface ThrottleDecision {
  readonly signal: ThrottleSignal;
  readonly policy: "backoff" | "hold";
  /** Human text for the snapshot: what tripped, and the threshold. */
  readonly reason: string;
  /** Wall-clock ms until which the migration holds back. */
  readonly untilMs: number;
}

export function policyMs(policy: ThrottlePolicy): number {
  return policy.kind === "backoff" ? policy.seconds * 1000 : policy.minutes * 60_000;
}

export function describePolicy(policy: ThrottlePolicy): string {
  return policy.kind === "backoff" ? `back off ${policy.seconds} s` : `hold ${policy.minutes} min`;
}

/** `backoff:30s`, `backoff:30`, `hold:10m`, `hold:10`. Throws naming `what`. */
export function parsePolicy(text: string, what: string): ThrottlePolicy {
  const backoff = /^\s*backoff:(\d{1,5})s?\s*$/i.exec(text);
  if (backoff && Number(backoff[1]) > 0) return { kind: "backoff", seconds: Number(backoff[1]) };
  const hold = /^\s*hold:(\d{1,5})m?\s*$/i.exec(text);
  if (hold && Number(hold[1]) > 0) return { kind: "hold", minutes: Number(hold[1]) };
  throw new Error(`${what} must be "backoff:<seconds>s" or "hold:<minutes>m" (e.g. backoff:30s, hold:10m)`);
}

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** Parses `01:00-05:00` windows (a list, or comma-separated). Throws naming `what`. */
export function parseQuietHours(value: string | readonly string[], what: string): QuietWindow[] {
  const parts = (typeof value === "string" ? value.split(",") : [...value]).map((p) => p.trim());
  return parts
    .filter((p) => p !== "")
    .map((part) => {
      const [from, to, extra] = part.split("-").map((s) => s.trim());
      const a = from === undefined ? null : HHMM.exec(from);
      const b = to === undefined ? null : HHMM.exec(to);
      if (!a || !b || extra !== undefined) {
        throw new Error(`${what}: "${part}" must be a UTC window HH:MM-HH:MM, e.g. 01:00-05:00`);
      }
      const start = Number(a[1]) * 60 + Number(a[2]);
      const end = Number(b[1]) * 60 + Number(b[2]);
      if (start === end) throw new Error(`${what}: "${part}" is empty (start equals end)`);
      return { start, end, text: `${from}-${to}` };
    });
}

/** The window `wallMs` falls in and when it ends (wall-clock ms), if any. */
export function quietWindowAt(
  windows: readonly QuietWindow[],
  wallMs: number,
): { window: QuietWindow; endsAtMs: number } | undefined {
  const dayStart = Math.floor(wallMs / 86_400_000) * 86_400_000;
  const minute = (wallMs - dayStart) / 60_000;
  for (const window of windows) {
    const wraps = window.end < window.start;
    const inside = wraps
      ? minute >= window.start || minute < window.end
      : minute >= window.start && minute < window.end;
    if (!inside) continue;
    // Ends today, or (a wrapping window entered before midnight) tomorrow.
    const endsToday = dayStart + window.end * 60_000;
    const endsAtMs = wraps && minute >= window.start ? endsToday + 86_400_000 : endsToday;
    return { window, endsAtMs };
  }
  return undefined;
}

/** Checks a probe; throws naming `what`. */
export function checkProbe(probe: ProbeThrottle, what: string): ProbeThrottle {
  if (typeof probe?.sql !== "string" || !/^\s*(SELECT|WITH)\b/i.test(probe.sql)) {
    throw new Error(`${what}.sql must be a read-only query starting with SELECT or WITH`);
  }
  if (probe.sql.replace(/;\s*$/, "").includes(";")) throw new Error(`${what}.sql must be a single statement`);
  if (!(Number.isFinite(probe.maxMs) && probe.maxMs > 0))
    throw new Error(`${what}.maxMs must be a number > 0`);
  if (probe.everyMs !== undefined && !(Number.isFinite(probe.everyMs) && probe.everyMs >= 0)) {
    throw new Error(`${what}.everyMs must be a number ≥ 0`);
  }
  if (probe.policy !== undefined) checkPolicy(probe.policy, `${what}.policy`);
  return { ...probe, sql: probe.sql.replace(/;\s*$/, "") };
}

function checkPolicy(policy: ThrottlePolicy, what: string): void {
  const ok =
    (policy?.kind === "backoff" && Number.isFinite(policy.seconds) && policy.seconds > 0) ||
    (policy?.kind === "hold" && Number.isFinite(policy.minutes) && policy.minutes > 0);
  if (!ok)
    throw new Error(`${what} must be { kind: "backoff", seconds > 0 } or { kind: "hold", minutes > 0 }`);
}

/** Checks a whole configuration; throws naming `what` and the field. */
export function checkThrottleConfig(config: ThrottleConfig, what: string): ThrottleConfig {
  if (config.busy !== undefined) {
    const { maxRate, window, policy } = config.busy;
    if (!(Number.isFinite(maxRate) && maxRate > 0 && maxRate < 1))
      throw new Error(`${what}.busy.maxRate must be between 0 and 1 (exclusive)`);
    if (window !== undefined && !(Number.isInteger(window) && window >= 2 && window <= 1000))
      throw new Error(`${what}.busy.window must be a whole number from 2 to 1000`);
    if (policy !== undefined) checkPolicy(policy, `${what}.busy.policy`);
  }
  const probe = config.probe === undefined ? undefined : checkProbe(config.probe, `${what}.probe`);
  if (config.quietHours !== undefined) parseQuietHours(config.quietHours, `${what}.quietHours`);
  return { ...config, ...(probe ? { probe } : {}) };
}

/** Outcomes of the last `size` step attempts (true = SQLITE_BUSY/LOCKED), in-process. */
export class BusyWindow {
  readonly #size: number;
  readonly #outcomes: boolean[] = [];

  constructor(size: number) {
    this.#size = size;
  }

  push(busy: boolean): void {
    this.#outcomes.push(busy);
    if (this.#outcomes.length > this.#size) this.#outcomes.shift();
  }

  /** Busy attempts and attempts seen (at most the window). */
  counts(): { busy: number; total: number } {
    return { busy: this.#outcomes.filter(Boolean).length, total: this.#outcomes.length };
  }

  clear(): void {
    this.#outcomes.length = 0;
  }
}

/**
 * The throttle signals of one runner: which migration should hold back now, and why. It keeps the busy
 * windows and the probe timing in process; writing the decision down and announcing it is the runner's job.
 */
export class Throttle {
  readonly #config: ThrottleConfig;
  readonly #quietHours: ReadonlyMap<string, readonly QuietWindow[]>;
  readonly #probes: ReadonlyMap<string, readonly ProbeThrottle[]>;
  readonly #now: () => number;
  readonly #wallNow: () => number;
  readonly #busy = new Map<string, BusyWindow>();
  readonly #probedAt = new Map<string, number>();
  readonly #onProbe: ((sample: ProbeSample) => void) | undefined;

  constructor(options: {
    readonly config: ThrottleConfig;
    /** Per migration: its own quiet hours and probe, added to the config's. */
    readonly migrations: ReadonlyArray<{
      name: string;
      quietHours: readonly QuietWindow[];
      probe?: ProbeThrottle;
    }>;
    /** Monotonic ms (probe timing) and wall-clock ms (windows, until). */
    readonly now: () => number;
    readonly wallNow: () => number;
    /** Told of every probe run (the status page draws the probe's latency). */
    readonly onProbe?: (sample: ProbeSample) => void;
  }) {
    this.#config = checkThrottleConfig(options.config, "throttle");
    const global =
      this.#config.quietHours === undefined ? [] : parseQuietHours(this.#config.quietHours, "quietHours");
    this.#quietHours = new Map(options.migrations.map((m) => [m.name, [...global, ...m.quietHours]]));
    this.#probes = new Map(
      options.migrations.map((m) => [
        m.name,
        [this.#config.probe, m.probe].filter((p): p is ProbeThrottle => p !== undefined),
      ]),
    );
    this.#now = options.now;
    this.#wallNow = options.wallNow;
    this.#onProbe = options.onProbe;
  }

  /** Records one step attempt (or lease attempt) of `name`; `errorCode` when it failed. */
  recordAttempt(name: string, errorCode?: string): void {
    if (!this.#config.busy) return;
    if (errorCode !== undefined && !/^SQLITE_(BUSY|LOCKED)/.test(errorCode)) return;
    this.#busyWindow(name).push(errorCode !== undefined);
  }

  /** Forgets the busy history of `name` (after it held back, the window starts over). */
  reset(name: string): void {
    this.#busy.get(name)?.clear();
  }

  /** The busy-rate signal alone: more than `maxRate` of the last `window` step attempts hit SQLITE_BUSY. */
  busyDecision(name: string): ThrottleDecision | undefined {
    const busy = this.#config.busy;
    if (!busy) return undefined;
    const size = busy.window ?? DEFAULT_BUSY_WINDOW;
    const counts = this.#busyWindow(name).counts();
    if (counts.total < size || counts.busy / counts.total <= busy.maxRate) return undefined;
    const policy = busy.policy ?? DEFAULT_BACKOFF;
    return {
      signal: "busy",
      policy: policy.kind,
      reason: `SQLITE_BUSY on ${counts.busy} of the last ${counts.total} step attempts (limit ${Math.round(busy.maxRate * 100)}%): ${describePolicy(policy)}`,
      untilMs: this.#wallNow() + policyMs(policy),
    };
  }

  /**
   * Every signal for `name`: quiet hours, busy rate, then the probes (run through `execute`, at most once per
   * `everyMs`). No database I/O unless a probe is due.
   */
  async decide(
    name: string,
    execute: (sql: string) => Promise<unknown>,
  ): Promise<ThrottleDecision | undefined> {
    const quiet = quietWindowAt(this.#quietHours.get(name) ?? [], this.#wallNow());
    if (quiet) {
      return {
        signal: "quiet-hours",
        policy: "hold",
        reason: `quiet hours ${quiet.window.text} UTC: holding until the window ends`,
        untilMs: quiet.endsAtMs,
      };
    }
    const busy = this.busyDecision(name);
    if (busy) return busy;
    const probes = this.#probes.get(name) ?? [];
    if (probes.length === 0) return undefined;
    const last = this.#probedAt.get(name);
    const every = Math.min(...probes.map((p) => p.everyMs ?? DEFAULT_PROBE_EVERY_MS));
    if (last !== undefined && this.#now() - last < every) return undefined;
    this.#probedAt.set(name, this.#now());
    for (const probe of probes) {
      const policy = probe.policy ?? DEFAULT_BACKOFF;
      const began = this.#now();
      let problem: string | undefined;
      let ok = true;
      try {
        await execute(probe.sql);
        const ms = this.#now() - began;
        if (ms > probe.maxMs) problem = `probe query took ${Math.round(ms)} ms (limit ${probe.maxMs} ms)`;
      } catch (thrown) {
        ok = false;
        const error = classifyError(thrown);
        // A busy or unreachable database shows up in the steps themselves; a broken probe holds back (fail safe).
        if (error.kind === "deterministic") problem = `probe query failed: ${error.message}`;
      }
      this.#onProbe?.({ name, durationMs: this.#now() - began, limitMs: probe.maxMs, ok });
      if (problem) {
        return {
          signal: "probe",
          policy: policy.kind,
          reason: `${problem}: ${describePolicy(policy)}`,
          untilMs: this.#wallNow() + policyMs(policy),
        };
      }
    }
    return undefined;
  }

  #busyWindow(name: string): BusyWindow {
    let window = this.#busy.get(name);
    if (!window) {
      window = new BusyWindow(this.#config.busy?.window ?? DEFAULT_BUSY_WINDOW);
      this.#busy.set(name, window);
    }
    return window;
  }
}
