/** Time source for the engine. Tests inject a fake one; nothing in the engine reads the wall clock directly. */
export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  /**
   * Wall-clock ms that SQLite's own clock can be compared with. Absent where time is simulated: a batch's wait for
   * the write lock is then not told apart from its hold (run/write-batch.ts).
   */
  wall?(): number;
  /** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
  sleep(ms, signal) {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      // Even a zero pause is a turn of the event loop: local libSQL calls answer without one, and it is where
      // the binding frees finished statements (a slice that never yields keeps ~40 KB per step) and where
      // messages to the engine's thread are handled.
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    });
  },
};
