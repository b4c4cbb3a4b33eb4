/**
 * The runner: one tick = one slice = steps of one or more migrations until the time budget is spent.
 *
 * Follow one step from tick to commit:
 * - `runSlice` (here) reads every migration's row and hands the slice to the slice loop, src/engine/run/slice.ts,
 *   which gives each runnable migration its fair share of the budget, oldest progress first.
 * - src/engine/run/migration-run.ts runs one migration's share: takes its lease, starts its run if needed
 *   (dependencies, tables, key, prerequisites, frozen bound), then loops — count (src/engine/run/walk.ts), step,
 *   verify, finish — until the share is spent or something stops it, and gives the lease back.
 * - A step is one fenced write batch composed by `MigrationPlan.stepBatch` (src/engine/plan.ts: the SQL on the
 *   user's table) with the state writes it carries (src/engine/state/statements.ts: cursor, progress), run with
 *   one `client.batch(..., "write")` and decoded into the new cursor and count (invariant 1).
 * - Every step emits a `step` event; the snapshot publisher (src/progress/snapshot.ts) listens and publishes what
 *   the read routes serve.
 *
 * Errors: transient ones back off and retry; a deterministic step error that rows may cause is bisected down to
 * the failing key, which is quarantined (src/engine/run/quarantine.ts) — up to a cap, and unless more than half
 * of at least 50 step attempts failed (GitLab's rule); any other deterministic error fails the migration; a lost
 * lease ends its part of the slice. Throttle signals (SQLITE_BUSY rate, a slow probe query, quiet hours) hold a
 * migration back with the reason recorded in its row (src/engine/run/throttling.ts).
 */
import type { Client } from "@libsql/client";
import {
  checkDependencies,
  type MigrationDefinition,
  type ResolvedMigration,
  resolveMigration,
} from "../migrations/define.ts";
import { reopenAfterBusy } from "./busy-recovery.ts";
import { type Clock, systemClock } from "./clock.ts";
import { classifyError } from "./errors.ts";
import type { RunnerEvent, RunnerEventListener } from "./events.ts";
import { MigrationPlan } from "./plan.ts";
import { InProcessStates, type RunContext, type RunnerMigrationState } from "./run/context.ts";
import { pauseAfter, runSliceOver, type SliceResult, unreadableSlice } from "./run/slice.ts";
import type { MigrationRow } from "./state/row.ts";
import { StateStore } from "./state/store.ts";
import { StepConnection } from "./step-connection.ts";
import { Throttle, type ThrottleConfig } from "./throttle.ts";
import { resolveTuning, type Tuning } from "./tuning.ts";
import { Yielder, type YieldPolicyName } from "./yield.ts";

export type { MigrationOutcome, RunnerMigrationState, RunnerThrottleState } from "./run/context.ts";
export { moved, type SliceResult } from "./run/slice.ts";

export interface RunnerOptions {
  readonly client: Client;
  readonly migrations: readonly MigrationDefinition[];
  /** Lease owner id; default a random one per runner. */
  readonly owner?: string;
  readonly tuning?: Partial<Tuning>;
  /** How the pause between steps is sized (./yield.ts); default `writers`. */
  readonly yieldPolicy?: YieldPolicyName;
  readonly clock?: Clock;
  readonly onEvent?: RunnerEventListener;
  /** Runner-wide throttling (busy rate, probe query, quiet hours); definitions may add their own. */
  readonly throttle?: ThrottleConfig;
  /** Wall clock in ms (quiet hours, throttle deadlines, ETA points). Default `Date.now`. */
  readonly wallClock?: () => number;
}

export class Runner {
  readonly owner: string;
  readonly tuning: Tuning;
  readonly store: StateStore;
  readonly #client: Client;
  readonly #plans: ReadonlyMap<string, MigrationPlan>;
  readonly #clock: Clock;
  readonly #listeners = new Set<RunnerEventListener>();
  readonly #states = new InProcessStates();
  /** No checkpoint and no log sync inside a step, on a local file (step-connection.ts). */
  readonly #stepConnection: StepConnection;
  /** The parts every piece of a run uses (src/engine/run/context.ts). */
  readonly #ctx: RunContext;
  #initialized: Promise<void> | undefined;

  constructor(options: RunnerOptions) {
    this.#client = reopenAfterBusy(options.client);
    this.store = new StateStore(this.#client);
    this.#stepConnection = new StepConnection(this.#client);
    this.owner = options.owner ?? `runner-${crypto.randomUUID()}`;
    this.tuning = resolveTuning(options.tuning);
    this.#clock = options.clock ?? systemClock;
    const wallClock = options.wallClock ?? Date.now;
    const plans = new Map<string, MigrationPlan>();
    for (const definition of options.migrations) {
      const resolved = resolveMigration(definition);
      if (plans.has(resolved.name)) throw new Error(`migration ${resolved.name} is registered twice`);
      plans.set(resolved.name, new MigrationPlan(resolved));
    }
    checkDependencies([...plans.values()].map((p) => p.migration));
    this.#plans = plans;
    const tunings = new Map(
      [...plans].map(([name, plan]) => [name, resolveTuning(this.tuning, plan.migration.tuning)]),
    );
    const throttle = new Throttle({
      config: options.throttle ?? {},
      migrations: [...plans.values()].map(({ migration: m }) => ({
        name: m.name,
        quietHours: m.quietHours,
        ...(m.probe ? { probe: m.probe } : {}),
      })),
      now: () => this.#clock.now(),
      wallNow: wallClock,
      onProbe: (sample) => this.#emit({ type: "probe", ...sample }),
    });
    if (options.onEvent) this.#listeners.add(options.onEvent);
    this.#ctx = {
      client: this.#client,
      store: this.store,
      owner: this.owner,
      tuning: this.tuning,
      clock: this.#clock,
      wallClock,
      throttle,
      stepConnection: this.#stepConnection,
      yielder: new Yielder(this.#client, this.#clock, options.yieldPolicy),
      states: this.#states,
      tuningOf: (name) => tunings.get(name) ?? this.tuning,
      emit: (event) => this.#emit(event),
    };
  }

  get migrations(): readonly ResolvedMigration[] {
    return [...this.#plans.values()].map((p) => p.migration);
  }

  on(listener: RunnerEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** In-process state per migration (reasons not yet, or not possibly, written to the database). */
  state(): RunnerMigrationState[] {
    return [...this.#plans.keys()].map((name) => ({ name, ...this.#states.get(name) }));
  }

  /**
   * Checks every definition against the database (a non-integer key is an error here, before anything is
   * written), then creates or upgrades `_async_migrations` and registers the migrations. Idempotent.
   */
  init(): Promise<void> {
    this.#initialized ??= this.#init().catch((error) => {
      this.#initialized = undefined;
      throw error;
    });
    return this.#initialized;
  }

  /** Runs one slice of at most `budgetMs` (default: the tuning's slice budget). */
  async runSlice(budgetMs: number = this.tuning.sliceBudgetMs, signal?: AbortSignal): Promise<SliceResult> {
    const began = this.#clock.now();
    let rows: MigrationRow[];
    try {
      await this.init();
      rows = await this.store.list();
    } catch (thrown) {
      // A locked or unreachable database is a reason to try again next tick, not an error of the tick.
      const error = classifyError(thrown);
      if (error.kind !== "transient") throw thrown;
      return unreadableSlice(this.#ctx, [...this.#plans.keys()], error);
    }
    try {
      return await runSliceOver(this.#ctx, this.#plans, rows, { began, deadline: began + budgetMs, signal });
    } finally {
      await this.#stepConnection.restore();
    }
  }

  /** Runs slices back to back until no runnable work is left (waiting or paused migrations are not runnable). */
  async runUntilDone(
    options: {
      budgetMs?: number;
      signal?: AbortSignal;
      onSlice?: (result: SliceResult) => void;
      idleWaitMs?: number;
    } = {},
  ): Promise<SliceResult[]> {
    const results: SliceResult[] = [];
    while (!options.signal?.aborted) {
      const result = await this.runSlice(options.budgetMs, options.signal);
      results.push(result);
      options.onSlice?.(result);
      if (!result.moreWork) break;
      const pause = pauseAfter(result, options.idleWaitMs ?? 100);
      if (pause !== undefined) await this.#clock.sleep(pause, options.signal);
    }
    return results;
  }

  async #init(): Promise<void> {
    const tables = await this.store.existingTables([...this.#plans.values()].map((p) => p.migration.table));
    for (const plan of this.#plans.values()) {
      if (!tables.has(plan.migration.table)) continue; // it waits for its table; checked again at start
      const problem = await plan.keyProblem(this.#client);
      if (problem) throw new Error(`migration ${plan.migration.name}: ${problem}`);
    }
    await this.store.ensureSchema();
    await this.store.register([...this.#plans.keys()]);
  }

  #emit(event: RunnerEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // a listener's bug must not stop a backfill
      }
    }
  }
}
