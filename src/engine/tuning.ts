/** Engine tuning knobs and their defaults (see README "Tuning" for how they were chosen). */
export interface Tuning {
  /** Target duration of one step (one write transaction), ms. */
  readonly stepTargetMs: number;
  /** Rows in the first step of a run. */
  readonly initialBatch: number;
  readonly minBatch: number;
  readonly maxBatch: number;
  /** Largest growth factor from one step to the next. */
  readonly maxGrowth: number;
  /** Factor applied on overrun or SQLITE_BUSY. */
  readonly shrinkFactor: number;
  /** A step counts as an overrun above `overrunFactor × stepTargetMs`. */
  readonly overrunFactor: number;
  /** Weight of the newest rate sample in the smoothed rate (0..1]. */
  readonly rateSmoothing: number;
  /** Pause between steps so writers waiting on the lock get it, ms. */
  readonly yieldMs: number;
  /** How long a lease lives without a step renewing it, ms. */
  readonly leaseTtlMs: number;
  /** Time budget of one slice, ms. */
  readonly sliceBudgetMs: number;
  /** Back-off after a transient error: first delay, cap (ms) and multiplier. */
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
  /** Verification re-sweeps before a run with rows still needing work is failed. */
  readonly maxPasses: number;
  /**
   * Poison-row quarantine: rows whose step fails deterministically are bisected down to single keys, recorded in
   * `_async_migration_failures` and skipped. More than this many quarantined rows fails the run; 0 turns
   * quarantine off (the first deterministic step error fails the run, as without it).
   */
  readonly maxQuarantined: number;
  /** GitLab's rule: a run fails once more than `failRatio` of at least `failRatioMinSteps` step attempts failed. */
  readonly failRatio: number;
  readonly failRatioMinSteps: number;
}

export const DEFAULT_TUNING: Tuning = Object.freeze({
  // 35 ms: an application writer that began waiting as a step began tries again 53 ms later in SQLite's
  // standard busy handler (after sleeping 1 + 2 + 5 + 10 + 15 + 20 ms), and the next try is at 78 ms. A step
  // aimed at 50 ms held the lock past 53 ms in a sixth of the steps (the same keys take ±20 %), and each of
  // those cost such a writer 78 ms: the writers' p99 sat at 75–80 ms. Aimed at 35 ms the holds' tail stays
  // below 53 ms (README "Benchmark": the step targets side by side).
  stepTargetMs: 35,
  initialBatch: 100,
  minBatch: 1,
  maxBatch: 200_000,
  maxGrowth: 2,
  shrinkFactor: 0.5,
  overrunFactor: 1.5,
  rateSmoothing: 0.3,
  yieldMs: 10,
  leaseTtlMs: 15_000,
  sliceBudgetMs: 2_000,
  retryMinMs: 25,
  retryMaxMs: 5_000,
  maxPasses: 3,
  maxQuarantined: 1_000,
  failRatio: 0.5,
  failRatioMinSteps: 50,
});

/** Knobs that may be 0 (everything else must be positive). */
const MAY_BE_ZERO: ReadonlySet<keyof Tuning> = new Set(["yieldMs", "maxQuarantined"]);

/** Merges overrides onto defaults and checks the result; throws a plain `Error` naming the bad knob. */
export function resolveTuning(...layers: ReadonlyArray<Partial<Tuning> | undefined>): Tuning {
  const merged: Record<string, number> = { ...DEFAULT_TUNING };
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer ?? {})) if (v !== undefined) merged[k] = v;
  }
  const t = merged as unknown as Tuning;
  const positive = (k: keyof Tuning) => {
    if (!(Number.isFinite(t[k]) && t[k] > 0))
      throw new Error(`tuning ${k} must be a positive number, got ${t[k]}`);
  };
  for (const k of Object.keys(DEFAULT_TUNING) as (keyof Tuning)[]) if (!MAY_BE_ZERO.has(k)) positive(k);
  for (const k of MAY_BE_ZERO)
    if (!(Number.isFinite(t[k]) && t[k] >= 0)) throw new Error(`tuning ${k} must be ≥ 0, got ${t[k]}`);
  if (!Number.isInteger(t.maxQuarantined)) throw new Error("tuning maxQuarantined must be a whole number");
  if (t.failRatio >= 1) throw new Error("tuning failRatio must be < 1");
  if (t.minBatch > t.maxBatch) throw new Error("tuning minBatch must not exceed maxBatch");
  if (t.maxGrowth < 1) throw new Error("tuning maxGrowth must be ≥ 1");
  if (t.shrinkFactor >= 1) throw new Error("tuning shrinkFactor must be < 1");
  if (t.rateSmoothing > 1) throw new Error("tuning rateSmoothing must be ≤ 1");
  return Object.freeze({ ...t });
}

/**
 * `base` with an operator's live overrides (`PATCH /api/migrations/:name`, stored in the row) applied. Overrides
 * that do not validate are ignored rather than stopping the run: they were checked when they were set, and a
 * hand-edited row must not halt a backfill.
 */
export function withLiveOverrides(base: Tuning, overrides: Readonly<Record<string, number>> | null): Tuning {
  if (!overrides) return base;
  try {
    return resolveTuning(base, overrides as Partial<Tuning>);
  } catch {
    return base;
  }
}
