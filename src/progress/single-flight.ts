/**
 * Single-flight reads: concurrent callers share the one call in flight, and the next call after it settled
 * (fulfilled or failed) starts a new one. Nothing is locked while it runs: the in-flight promise is the only
 * shared state. The read path's caches (snapshots, the fleet view) read through it.
 */
export function singleFlight<T>(read: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  return () => {
    if (inFlight) return inFlight;
    // `.finally` callbacks always run asynchronously, so the slot is cleared only after it was set, even if
    // `read` fails synchronously.
    const call: Promise<T> = Promise.resolve()
      .then(read)
      .finally(() => {
        if (inFlight === call) inFlight = undefined;
      });
    inFlight = call;
    return call;
  };
}
