/**
 * The engine connection's settings while a slice runs steps, on a local file: no checkpoint and no log sync
 * inside the step.
 *
 * Checkpoints. SQLite checkpoints automatically right after a commit that leaves the write-ahead log above
 * `wal_autocheckpoint` pages (1000 by default): inside the committing call, after the write lock is released.
 * A step writes thousands of pages, so nearly every step paid for a checkpoint inside its measured duration
 * (about a fifth of it in the benchmark). The batch sizer took that time for lock time and made steps smaller
 * than the target allows, and step durations overstated how long the lock was held. The connection therefore
 * defers automatic checkpoints and runs a PASSIVE one itself after each step, before the yield: the pause
 * between two steps is the checkpoint plus the whole yield (a yield shortened by the checkpoint's time starved
 * the benchmark's ingest writers).
 *
 * Log sync. With `synchronous = FULL`, SQLite's default, a commit in WAL mode waits for the log's fsync while
 * it still holds the write lock: 9–14 of a 35 ms step in the benchmark, a quarter of the time the application's
 * writers wait for. In WAL mode `NORMAL` syncs the log at checkpoints instead (the one after the step, so
 * only where the engine runs those; any other connection's commit at `FULL` syncs it too); a commit still
 * survives the process crashing, and a power loss or an OS crash before that sync can take back the last
 * steps, never corrupt the file (SQLite's documentation). Each step commits its range with its
 * cursor and progress (invariant 1), so such a loss takes both back and the run redoes those keys. Only in WAL
 * mode: with a rollback journal, `NORMAL` can corrupt the file on a power loss.
 *
 * The settings are read before the first step of a slice and put back when the slice ends: an embedding
 * application may share the connection and must never be left without automatic checkpoints or with a sync
 * level it did not choose. A libSQL server or D1 manages both on its own.
 */
import type { Client } from "@libsql/client";

/** `PRAGMA synchronous` levels. */
const SYNC_NORMAL = 1;

export class StepConnection {
  readonly #client: Client;
  /** "idle": not set up in this slice yet; "set": restore with `#restore`; "off": leave alone. */
  #state: "idle" | "set" | "off";
  /** The statements that put the connection's own settings back, in order. */
  #restore: string[] = [];
  #checkpointAfterStep = false;

  constructor(client: Client) {
    this.#client = client;
    this.#state = client.protocol === "file" ? "idle" : "off";
  }

  /**
   * Before a step: the first one of a slice defers automatic checkpoints and lowers the log sync (a few reads
   * and writes of settings); later ones, and slices that run no step, cost nothing.
   */
  async beforeStep(): Promise<void> {
    if (this.#state !== "idle") return;
    this.#state = "set"; // restore() undoes whatever was changed, even if a later read fails
    try {
      const autocheckpoint = await this.#read("wal_autocheckpoint");
      // 0 already means "never": someone else checkpoints this file, so leave it to them.
      if (Number.isSafeInteger(autocheckpoint) && autocheckpoint > 0) {
        await this.#client.execute("PRAGMA wal_autocheckpoint = 0");
        this.#restore.push(`PRAGMA wal_autocheckpoint = ${autocheckpoint}`);
        this.#checkpointAfterStep = true;
      }
      // The log is synced by the checkpoint after each step, so only where the engine runs those.
      if (!this.#checkpointAfterStep) return;
      const journal = (await this.#client.execute("PRAGMA journal_mode")).rows[0]?.[0];
      const sync = await this.#read("synchronous");
      if (String(journal).toLowerCase() === "wal" && Number.isSafeInteger(sync) && sync > SYNC_NORMAL) {
        await this.#client.execute(`PRAGMA synchronous = ${SYNC_NORMAL}`);
        this.#restore.push(`PRAGMA synchronous = ${sync}`);
      }
    } catch {
      // only a matter of speed: what was not changed stays as it was
    }
  }

  /** After a step: copies the log back into the database file as far as readers allow; never throws. */
  async afterStep(): Promise<void> {
    if (!this.#checkpointAfterStep) return;
    try {
      await this.#client.execute("PRAGMA wal_checkpoint(PASSIVE)");
    } catch {
      // A failed checkpoint leaves the log longer; the next one (or any connection's) catches up.
    }
  }

  /** At the end of a slice: puts the connection's settings back as they were; never throws. */
  async restore(): Promise<void> {
    if (this.#state === "off") return;
    for (const sql of this.#restore) {
      try {
        await this.#client.execute(sql);
      } catch {
        // The connection is gone (a reconnect opens a new one with SQLite's defaults); nothing to restore.
      }
    }
    this.#restore = [];
    this.#checkpointAfterStep = false;
    this.#state = "idle"; // the next slice looks again: the settings or the connection may have changed
  }

  async #read(pragma: "wal_autocheckpoint" | "synchronous"): Promise<number> {
    return Number((await this.#client.execute(`PRAGMA ${pragma}`)).rows[0]?.[0]);
  }
}
