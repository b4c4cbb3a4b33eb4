/**
 * WAL checkpoints outside the step.
 *
 * SQLite checkpoints automatically right after a commit that leaves the write-ahead log above
 * `wal_autocheckpoint` pages (1000 by default): inside the committing call, after the write lock is released.
 * A step writes thousands of pages, so nearly every step paid for a checkpoint inside its measured duration
 * (about a fifth of it in the benchmark). The batch sizer took that time for lock time and made steps smaller
 * than the target allows, and step durations overstated how long the lock was held.
 *
 * While a slice runs, the engine's connection therefore defers automatic checkpoints and runs a PASSIVE one
 * itself after each step, before the yield: the step's duration is then the write transaction alone, and the
 * pause between two steps is the checkpoint plus the whole yield (a yield shortened by the checkpoint's time
 * starved the benchmark's ingest writers). Local files only (a libSQL server checkpoints on its own). The
 * previous setting is restored when the slice ends: an embedding application may share the connection and
 * must never be left without automatic checkpoints.
 */
import type { Client } from "@libsql/client";

export class DeferredCheckpoints {
  readonly #client: Client;
  /** "idle": nothing deferred yet in this slice; "deferred": restore to `#restoreTo`; "off": leave alone. */
  #state: "idle" | "deferred" | "off";
  #restoreTo = 0;

  constructor(client: Client) {
    this.#client = client;
    this.#state = client.protocol === "file" ? "idle" : "off";
  }

  /**
   * Before a step: the first one of a slice defers automatic checkpoints on the connection (one read and one
   * write); later ones, and slices that run no step, cost nothing.
   */
  async beforeStep(): Promise<void> {
    if (this.#state !== "idle") return;
    this.#state = "off"; // unless deferring succeeds: then restore() puts it back to "idle"
    try {
      const current = Number((await this.#client.execute("PRAGMA wal_autocheckpoint")).rows[0]?.[0]);
      // 0 already means "never": someone else checkpoints this file, so leave it to them.
      if (!Number.isSafeInteger(current) || current <= 0) return;
      await this.#client.execute("PRAGMA wal_autocheckpoint = 0");
      this.#restoreTo = current;
      this.#state = "deferred";
    } catch {
      // only a matter of speed: the commit keeps checkpointing as before
    }
  }

  /** After a step: copies the log back into the database file as far as readers allow; never throws. */
  async afterStep(): Promise<void> {
    if (this.#state !== "deferred") return;
    try {
      await this.#client.execute("PRAGMA wal_checkpoint(PASSIVE)");
    } catch {
      // A failed checkpoint leaves the log longer; the next one (or any connection's) catches up.
    }
  }

  /** At the end of a slice: puts the connection's automatic checkpoints back as they were; never throws. */
  async restore(): Promise<void> {
    if (this.#client.protocol === "file") {
      if (this.#state === "deferred") {
        try {
          await this.#client.execute(`PRAGMA wal_autocheckpoint = ${this.#restoreTo}`);
        } catch {
          // The connection is gone (a reconnect opens a new one with SQLite's default); nothing to restore.
        }
      }
      this.#state = "idle"; // the next slice looks again: the setting or the connection may have changed
    }
  }
}
