/**
 * The in-process tick loop: one slice per tick, ticks never overlapping.
 *
 * A self-rescheduling `setTimeout` (not `setInterval`, which fires whether or not the previous slice has
 * finished) arms the next tick only after the current slice returned: right away (after the yield) while the
 * slice reports more work, after `tickMs` when it reports none. An idle tick is one slice that finds nothing
 * runnable, which costs the runner one read of `_async_migrations`. With `sliceIntervalMs`, slices with work
 * start at most that often: a duty cycle of budget over interval (a slice of 2 s every 10 s works a fifth of the
 * time), as an external cron would tick, and as GitLab spaces its batches.
 *
 * `runOnce` is the single entry point for slices — timer ticks, HTTP ticks and wake-ups all go through it —
 * and it joins a slice that is already in flight instead of starting a second one. `stop()` aborts the slice's
 * signal (the runner finishes its in-flight step and releases its leases) and resolves once it has returned.
 * Portable: only `setTimeout`/`clearTimeout` and `AbortController`.
 */
import { moved, type SliceResult } from "./runner.ts";

export interface SchedulerOptions {
  /** Runs one slice; `Runner.runSlice` in practice. */
  readonly runSlice: (budgetMs: number, signal: AbortSignal) => Promise<SliceResult>;
  readonly sliceBudgetMs: number;
  /** Pause before the next tick when the last one left no runnable work (or made no progress), ms. */
  readonly tickMs: number;
  /** Pause before the next tick while there is work, ms (lets waiting writers in between slices). */
  readonly yieldMs: number;
  /** While there is work, the least time from one slice's start to the next one's, ms (0: back to back). */
  readonly sliceIntervalMs?: number;
  readonly onSlice?: (result: SliceResult) => void;
  /** A slice threw (the database is unreachable…); the loop goes on after `tickMs`. */
  readonly onError?: (error: unknown) => void;
  /** Let the process exit while only this timer is pending (in-process runtimes that own no other loop). */
  readonly unref?: boolean;
}

export class SchedulerStoppedError extends Error {
  constructor() {
    super("the scheduler is stopping; no new slices are started");
    this.name = "SchedulerStoppedError";
  }
}

export class Scheduler {
  readonly #options: SchedulerOptions;
  /**
   * The in-flight slice's abort controller: one per slice, because an AbortSignal created in one Workers event
   * cannot be touched from another ("Cannot perform I/O on behalf of a different request").
   */
  #abort: AbortController | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #inFlight: Promise<SliceResult> | undefined;
  #started = false;
  #stopped = false;
  #wakeRequested = false;
  #ticking = false;

  constructor(options: SchedulerOptions) {
    for (const key of ["sliceBudgetMs", "tickMs", "yieldMs", "sliceIntervalMs"] as const) {
      const value = options[key] ?? 0;
      if (!(Number.isFinite(value) && value >= 0)) throw new Error(`scheduler ${key} must be a number ≥ 0`);
    }
    this.#options = options;
  }

  /** True while a slice runs. */
  get busy(): boolean {
    return this.#inFlight !== undefined;
  }

  /** Starts ticking; the first tick runs at once. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#arm(0);
  }

  /** Runs the next tick as soon as possible (after the slice in flight, if any): something changed. */
  wake(): void {
    if (!this.#started || this.#stopped) return;
    if (this.#inFlight || this.#ticking) this.#wakeRequested = true;
    else this.#arm(0);
  }

  /**
   * Runs one slice of at most `budgetMs` now, or returns the result of the slice already in flight. Throws
   * `SchedulerStoppedError` once `stop()` was called.
   */
  runOnce(budgetMs: number = this.#options.sliceBudgetMs): Promise<SliceResult> {
    if (this.#stopped) return Promise.reject(new SchedulerStoppedError());
    if (this.#inFlight) return this.#inFlight;
    const abort = new AbortController();
    this.#abort = abort;
    const slice: Promise<SliceResult> = Promise.resolve()
      .then(() => this.#options.runSlice(budgetMs, abort.signal))
      .finally(() => {
        if (this.#inFlight === slice) {
          this.#inFlight = undefined;
          this.#abort = undefined;
        }
      });
    this.#inFlight = slice;
    return slice;
  }

  /** Stops ticking, aborts the slice in flight and resolves when it has returned. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort();
    const inFlight = this.#inFlight;
    if (inFlight) await inFlight.catch(() => undefined);
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    this.#ticking = true;
    let delay = this.#options.tickMs;
    const began = Date.now();
    try {
      const result = await this.runOnce();
      this.#options.onSlice?.(result);
      // No progress although work remains (another runner holds the lease, a back-off): do not spin.
      if (result.moreWork && moved(result)) {
        const interval = this.#options.sliceIntervalMs ?? 0;
        delay = Math.max(this.#options.yieldMs, interval - (Date.now() - began));
      }
    } catch (error) {
      if (!(error instanceof SchedulerStoppedError)) {
        try {
          this.#options.onError?.(error);
        } catch {
          // a reporting bug must not stop the loop
        }
      }
    } finally {
      this.#ticking = false;
    }
    if (this.#wakeRequested) {
      this.#wakeRequested = false;
      delay = 0;
    }
    this.#arm(delay);
  }

  #arm(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const timer = setTimeout(() => {
      if (this.#timer === timer) this.#timer = undefined;
      void this.#tick();
    }, delayMs);
    if (this.#options.unref && typeof timer === "object" && timer !== null && "unref" in timer) {
      (timer as { unref(): void }).unref();
    }
    this.#timer = timer;
  }
}
