/**
 * The pause after a step — or any piece of work that held the write lock — sized to how application writers
 * really wait.
 *
 * Most applications wait for SQLite's write lock in its standard busy handler (`sqlite3_busy_timeout`: Go's
 * `_busy_timeout`, Python's `sqlite3`, better-sqlite3, Rails, Django): a writer that finds the lock taken
 * sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, then 100 ms between tries. It does not wake when the lock is
 * freed; it tries again when its sleep ends. A writer that began waiting during a step held for `heldMs` sleeps
 * at most `busyHandlerSleep(heldMs)` past the step's end, so a shorter pause lets the runner take the lock again
 * before that writer tries, and the writer waits through another step (a fixed 10 ms after a 50 ms step missed
 * writers whose sleep had reached 20 ms).
 *
 * The `writers` policy therefore pauses, after a step held for `heldMs`:
 * - at least `busyHandlerSleep(heldMs)` + a margin while other connections have written lately, then for as
 *   long as they keep committing (a writer's backlog after a stall), up to one more such sleep;
 * - while nobody else has written for `QUIET_MS`, only the configured `yieldMs`: a writer that appears then
 *   tries every few ms at first and gets in through one of those pauses within a few steps (the benchmark's
 *   `fixed` runs show it), and from its first commit on every pause is a full one. A full pause at least every
 *   100 ms of lock time even when quiet cost the idle database a third more time in the benchmark.
 * Other writers' commits are seen through `PRAGMA data_version` on the engine's connection (it changes when
 * another connection commits). Where that cannot be read (a remote database), every pause is a full one.
 *
 * The `fixed` policy pauses `yieldMs` after every step, as trickle did before; the benchmark compares both.
 */
import type { Client } from "@libsql/client";
import type { Clock } from "./clock.ts";

export type YieldPolicyName = "writers" | "fixed";
export const YIELD_POLICIES: readonly YieldPolicyName[] = ["writers", "fixed"];
export const DEFAULT_YIELD_POLICY: YieldPolicyName = "writers";

/** SQLite's standard busy handler: the sleeps between tries, ms (then 100 ms each). */
const BUSY_SLEEPS = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100] as const;

/** The sleep a writer that has waited `waitedMs` is in (the longest it can sleep past a lock freed now). */
export function busyHandlerSleep(waitedMs: number): number {
  let total = 0;
  for (const sleep of BUSY_SLEEPS) {
    if (waitedMs < total + sleep) return sleep;
    total += sleep;
  }
  return 100;
}

/** Timer and scheduling slack added to a pause so a writer's wake-up lands inside it. */
export const PAUSE_MARGIN_MS = 3;
/**
 * The `writers` policy's pause after `heldMs` of lock time while other connections write: the longest sleep a
 * writer that began waiting then can be in, plus the margin, and never less than the configured `yieldMs`.
 */
export function writersPauseMs(heldMs: number, yieldMs: number): number {
  return Math.max(yieldMs, busyHandlerSleep(heldMs) + PAUSE_MARGIN_MS);
}

/** No other connection committed for this long: a quiet spell. */
export const QUIET_MS = 2_000;
/** How often a pause looks for other writers' commits while it may be extended. */
const POLL_MS = 2;

/** Pauses between steps. One per runner; it remembers when other writers were last seen. */
export class Yielder {
  readonly #client: Client;
  readonly #clock: Clock;
  readonly #policy: YieldPolicyName;
  /** `undefined`: not read yet; `null`: cannot be read here (a remote database). */
  #version: string | null | undefined;
  #lastForeignAt = Number.NEGATIVE_INFINITY;

  constructor(client: Client, clock: Clock, policy: YieldPolicyName = DEFAULT_YIELD_POLICY) {
    this.#client = client;
    this.#clock = clock;
    this.#policy = policy;
    this.#version = client.protocol === "file" ? undefined : null;
  }

  /**
   * Pauses after work that held the write lock for `heldMs` (its wait for the lock included: writers that queued
   * behind the same holder meanwhile have slept as long, run/write-batch.ts); resolves early when `signal`
   * aborts. `yieldMs` is the migration's configured pause (`TRICKLE_YIELD_MS`, live tuning included): the whole
   * pause of `fixed`, the shortest of `writers`.
   */
  async after(heldMs: number, yieldMs: number, signal?: AbortSignal): Promise<void> {
    if (this.#policy === "fixed") {
      await this.#clock.sleep(yieldMs, signal);
      return;
    }
    const seen = await this.#foreignCommit();
    const quiet = this.#version !== null && !seen && this.#clock.now() - this.#lastForeignAt > QUIET_MS;
    if (quiet) {
      await this.#clock.sleep(yieldMs, signal);
      return;
    }
    const full = writersPauseMs(heldMs, yieldMs);
    await this.#clock.sleep(full, signal);
    // Writers that got in may have a backlog: keep the lock free while they keep committing, bounded.
    const until = this.#clock.now() + full;
    while (!signal?.aborted && this.#clock.now() < until && (await this.#foreignCommit())) {
      await this.#clock.sleep(POLL_MS, signal);
    }
  }

  /** Whether another connection committed since the last look (and remembers when). */
  async #foreignCommit(): Promise<boolean> {
    if (this.#version === null) return false;
    let version: string;
    try {
      version = String((await this.#client.execute("PRAGMA data_version")).rows[0]?.[0]);
    } catch {
      this.#version = null; // not available here: every pause is a full one
      return false;
    }
    const changed = this.#version !== undefined && version !== this.#version;
    this.#version = version;
    if (changed) this.#lastForeignAt = this.#clock.now();
    return changed;
  }
}
