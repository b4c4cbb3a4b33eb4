/**
 * Adaptive batch size (invariant 5): each step should take about `stepTargetMs`.
 *
 * The sizer keeps a smoothed rate (keys per ms) from measured steps and proposes `rate × target`, bounded so a
 * step is at most `maxGrowth` times the previous one, and cut by `shrinkFactor` at once when a step overran or
 * hit SQLITE_BUSY. The first measured step of a run sets the size to `rate × target` (as pt-osc sizes its
 * chunks from the first one's time), up to 32 times the first: doubling from `initialBatch` spent a dozen small
 * steps, each with its fixed costs and its pause, before the steps reached the target. It only does arithmetic
 * on numbers it is given; time is measured by the caller.
 */
import type { Tuning } from "./tuning.ts";

export type SizerTuning = Pick<
  Tuning,
  | "stepTargetMs"
  | "initialBatch"
  | "minBatch"
  | "maxBatch"
  | "maxGrowth"
  | "shrinkFactor"
  | "overrunFactor"
  | "rateSmoothing"
>;

/** The first measured step may grow the next one by `maxGrowth` to this power (2^5 = 32× by default). */
export const FIRST_STEP_DOUBLINGS = 5;

export class BatchSizer {
  readonly #t: SizerTuning;
  #size: number;
  /** Keys per ms, smoothed; `undefined` until the first step was measured. */
  #rate: number | undefined;

  constructor(tuning: SizerTuning, resume?: { size: number; rate?: number | undefined }) {
    this.#t = tuning;
    this.#size = this.#clamp(resume?.size ?? tuning.initialBatch);
    this.#rate = resume?.rate !== undefined && resume.rate > 0 ? resume.rate : undefined;
  }

  /** Rows (keys) the next step should cover. */
  get size(): number {
    return this.#size;
  }

  /** Smoothed keys per ms, if known. */
  get rate(): number | undefined {
    return this.#rate;
  }

  /** How long a step of `size` keys is expected to take, ms; `undefined` before anything was measured. */
  expectedMs(size = this.#size): number | undefined {
    return this.#rate === undefined ? undefined : size / this.#rate;
  }

  /**
   * The largest size not above the current one that is expected to finish within `remainingMs`, or 0 when
   * not even `minBatch` is (the caller then ends the slice instead of starting a step that would overrun).
   */
  sizeWithin(remainingMs: number): number {
    if (remainingMs <= 0) return 0;
    if (this.#rate === undefined) return this.#size;
    const fits = Math.floor(this.#rate * remainingMs);
    if (fits < this.#t.minBatch) return 0;
    return Math.min(this.#size, fits);
  }

  /** Records a finished step of `keys` keys that took `ms`, and picks the next size. */
  observe(keys: number, ms: number): void {
    const t = this.#t;
    const sample = keys / Math.max(ms, 0.1);
    const previous = this.#rate;
    const rate =
      previous === undefined ? sample : t.rateSmoothing * sample + (1 - t.rateSmoothing) * previous;
    this.#rate = rate;
    let next = rate * t.stepTargetMs;
    if (ms > t.overrunFactor * t.stepTargetMs) {
      // Fast shrink: an overrun means the smoothed rate is stale; do not wait for it to catch up.
      next = Math.min(next, keys * t.shrinkFactor);
    } else {
      // The first measurement goes (nearly) straight to the target: as many doublings at once as
      // `FIRST_STEP_DOUBLINGS` allow, which bounds the guess when the first keys were sparse and fast.
      const growth = previous === undefined ? t.maxGrowth ** FIRST_STEP_DOUBLINGS : t.maxGrowth;
      next = Math.min(next, Math.max(keys, this.#size) * growth);
    }
    this.#size = this.#clamp(next);
  }

  /** A new run: start small again and forget the old rate (the table may have changed). */
  reset(size: number): void {
    this.#size = this.#clamp(size);
    this.#rate = undefined;
  }

  /** SQLITE_BUSY or a similar transient failure: shrink at once. */
  shrink(): void {
    this.#size = this.#clamp(this.#size * this.#t.shrinkFactor);
  }

  #clamp(value: number): number {
    return Math.max(this.#t.minBatch, Math.min(this.#t.maxBatch, Math.floor(value)));
  }
}
