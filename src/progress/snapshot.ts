/**
 * Progress snapshots: the computed, cached view of all migrations that `/api/healthz`, `/api/perf`, `/metrics`
 * and the status page serve (invariant 7).
 *
 * A snapshot is built from `_async_migrations` rows plus what a runner knows in-process (why it waits, its
 * batch size, recent steps). Whoever runs the engine publishes snapshots into a `SnapshotCache`; the read routes
 * take them from there and never wait on the writer. When no fresh published snapshot is at hand, the cache
 * reads the table itself — at most once per TTL per process, one read shared by all concurrent callers, errors
 * not cached — and if that read fails it answers a fail-closed snapshot carrying the error.
 *
 * Counters (`rowsProcessed`, `rowsTotal`, `steps`, keys) are JSON numbers while they are safe integers and
 * decimal strings beyond 2^53 − 1, so no client ever sees a rounded count (invariant 8).
 */
import type { RunnerEvent } from "../engine/events.ts";
import type { RunnerMigrationState } from "../engine/runner.ts";
import { MIGRATION_STATUSES, type MigrationRow, type MigrationStatus } from "../engine/state-store.ts";
import { computeProgress } from "./rate.ts";
import { singleFlight } from "./single-flight.ts";

/** Statuses the service reports. Anything else found in the table (older versions, hand edits) is `unknown`. */
export type ReportedStatus = MigrationStatus | "unknown";
export const REPORTED_STATUSES: readonly ReportedStatus[] = [...MIGRATION_STATUSES, "unknown"];

/** An exact integer for JSON: a number while it is safe, else its decimal text. */
export type JsonInteger = number | string;

export function jsonInteger(value: bigint): JsonInteger {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}

export function jsonIntegerOrNull(value: bigint | null): JsonInteger | null {
  return value === null ? null : jsonInteger(value);
}

/** One migration as `/api/perf` (`asyncMigrations`) and `/api/healthz` (`async_migrations`) list it. */
export interface MigrationInfo {
  readonly name: string;
  readonly status: ReportedStatus;
  readonly rowsProcessed: JsonInteger;
  readonly rowsTotal: JsonInteger;
  /** Rows per second over wall time since the run started. */
  readonly rate: number;
  /** Seconds left at `rate`; null when unknown or not running. */
  readonly etaSeconds: number | null;
  readonly elapsedSeconds: number;
  /**
   * CoreScope drop-in (design.md): its pull request #1725 named the figures above `rate`, `etaSeconds`,
   * `elapsedSeconds`; its re-cut #1735, whose banner and Go server CoreScope carries, `ratePerSec`, `etaSec`,
   * `elapsedSec`. Every item carries both, so either client reads trickle unchanged.
   */
  readonly ratePerSec: number;
  readonly etaSec: number | null;
  readonly elapsedSec: number;
  /** The failure message; only set while the migration is `failed`. */
  readonly errorMessage: string | null;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  readonly lastUpdateAt: string | null;
  /** 0..100 */
  readonly percent: number;
  /** Rows per second of time spent inside steps. */
  readonly busyRate: number;
  /** Why it is not moving (waiting for a table, retrying after a transient error…), or null. */
  readonly reason: string | null;
  readonly batchSize: number | null;
  readonly leaseOwner: string | null;
  /** Verification pass of the current run (0 before the run starts). */
  readonly pass: number;
  readonly steps: JsonInteger;
  /**
   * ETA band (p10–p90) from the spread of recent effective rates, at least the point ETA's ±25 % (rate.ts); null
   * when not enough is known yet.
   */
  readonly etaLowSeconds: number | null;
  /** Null also when the slow end is unbounded. */
  readonly etaHighSeconds: number | null;
  /** Running, not throttled, and the cursor has not moved for the stuck threshold (`TRICKLE_STUCK_AFTER_MS`). */
  readonly stuck: boolean;
  /** When the cursor last moved. */
  readonly progressAt: string | null;
  /** Poison rows skipped and not resolved (see `GET /api/migrations/:name/failures`). */
  readonly quarantined: JsonInteger;
  /** When verification last ran, and how many rows it found still needing work (quarantined ones aside). */
  readonly verifiedAt: string | null;
  readonly residual: JsonInteger | null;
  /** Why and until when the migration holds back (throttling), or null. */
  readonly throttle: { readonly reason: string; readonly until: string } | null;
  /**
   * What a running migration is doing: `counting` its candidates, `backfilling` (the data walk) or `verifying`
   * (both walks go in budgeted pieces, invariant 10); null unless running.
   */
  readonly phase: "counting" | "backfilling" | "verifying" | null;
  /** How far the current walk has come: its last key and the key it ends at (null before it starts). */
  readonly phaseCursor: JsonInteger | null;
  readonly phaseEnd: JsonInteger | null;
  /**
   * False for a row of `_async_migrations` this service does not run (the application's own one-shot
   * migrations, or one no longer configured): shown read-only, never counted as running, no controls.
   */
  readonly owned: boolean;
}

/** One committed step, as the runner reported it. */
export interface StepRecord {
  /** Wall-clock time of the step's end, ISO-8601. */
  readonly at: string;
  readonly batchSize: number;
  readonly rows: JsonInteger;
  readonly rowsProcessed: JsonInteger;
  /** How long the step held the write lock. */
  readonly durationMs: number;
  /** How long it waited for the lock before (local files; 0 where the two are not told apart). */
  readonly lockWaitMs: number;
}

/**
 * Upper bounds (seconds) of the step-duration histogram buckets; `+Inf` is implied. 0.075 and 0.15 are the
 * step goals (p99 and max), so an alert can be written on them.
 */
export const STEP_DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * What this process's runner did to one migration since the process started (Prometheus counters: they
 * restart at zero with the process, which `rate()` expects).
 */
export interface RunnerCounters {
  /** Committed steps. */
  readonly steps: number;
  /** Candidate rows the committed steps processed. */
  readonly rows: number;
  /** Transient errors retried, by error code (`SQLITE_BUSY`, `NETWORK`, …). */
  readonly retries: Readonly<Record<string, number>>;
  /** Of those, the waits on another connection's lock (SQLITE_BUSY and SQLITE_LOCKED, extended codes included). */
  readonly busyWaits: number;
  /** Seconds the committed steps waited for the write lock before they began (busy handler sleeps). */
  readonly lockWaitSeconds: number;
  /** Leases lost to another runner (a slow step, a stopped process) before the work was done. */
  readonly leasesLost: number;
  /** Poison rows recorded and skipped. */
  readonly quarantined: number;
}

/** One run of the throttle's probe query (the status page draws its latency against the limit). */
export interface ProbeRecord {
  /** Wall-clock time of the run, ISO-8601. */
  readonly at: string;
  readonly durationMs: number;
  /** The latency above which the run holds back. */
  readonly limitMs: number;
  /** False when the probe query failed. */
  readonly ok: boolean;
}

/** A Prometheus-style histogram of step durations for one migration (cumulative per bucket). */
export interface StepHistogram {
  /** Count of steps with duration ≤ each `STEP_DURATION_BUCKETS` entry (same order, cumulative). */
  readonly buckets: readonly number[];
  readonly count: number;
  readonly sumSeconds: number;
}

export interface Snapshot {
  /** Wall-clock ms (`Date.now()`) when the state was read. */
  readonly takenAt: number;
  readonly migrations: readonly MigrationInfo[];
  /** Set when the state could not be read; the snapshot then fails closed (see `isMigrationRunning`). */
  readonly error?: string;
  /** What this process's runner did (only where a runner published it). */
  readonly activity?: RunnerActivity;
}

/** What this process's runner did, per migration, since the process started. */
export interface RunnerActivity {
  /** The last committed steps, newest last. */
  readonly steps: Readonly<Record<string, readonly StepRecord[]>>;
  /** The last probe runs, newest last (only where a probe is configured). */
  readonly probes: Readonly<Record<string, readonly ProbeRecord[]>>;
  readonly stepHistogram: Readonly<Record<string, StepHistogram>>;
  readonly counters: Readonly<Record<string, RunnerCounters>>;
}

const KNOWN = new Set<string>(REPORTED_STATUSES.filter((s) => s !== "unknown"));

/** Maps a stored status to a reported one; unknown values never become `running`. */
export function reportedStatus(stored: string): ReportedStatus {
  return KNOWN.has(stored) ? (stored as ReportedStatus) : "unknown";
}

/** Builds the reported view of one row (and, when the runner lives in this process, its in-memory state). */
export function migrationInfo(
  row: MigrationRow,
  nowMs: number,
  runner?: Pick<RunnerMigrationState, "reason" | "batchSize"> &
    Partial<Pick<RunnerMigrationState, "throttle">>,
  options: { readonly stuckAfterMs?: number } = {},
): MigrationInfo {
  const status = reportedStatus(row.status);
  // The in-process throttle (this runner's decision) may be newer than the row the snapshot read.
  const inProcess = runner?.throttle && runner.throttle.untilMs > nowMs ? runner.throttle : null;
  const throttledUntil = inProcess ? new Date(inProcess.untilMs).toISOString() : row.throttledUntil;
  const figures = computeProgress(
    {
      status,
      rowsProcessed: row.rowsProcessed,
      rowsTotal: row.rowsTotal,
      startedAt: row.startedAt,
      endedAt: row.endedAt,
      busyMs: row.busyMs,
      quarantined: row.quarantined,
      lastUpdateAt: row.lastUpdateAt,
      progressAt: row.progressAt,
      throttledUntil,
      rateWindow: row.rateWindow,
      phase: row.phase,
      countingMs: row.countingMs,
      scanCursor: row.scanCursor,
      scanEnd: row.scanEnd,
      minKey: row.minKey,
    },
    nowMs,
    options,
  );
  return {
    name: row.name,
    status,
    rowsProcessed: jsonInteger(row.rowsProcessed),
    // While the run counts its candidates, the total is what the count has found so far.
    rowsTotal: jsonInteger(row.phase === "counting" ? row.scanCount : row.rowsTotal),
    ...figureSpellings(
      round(figures.rate, 3),
      figures.etaSeconds === null ? null : round(figures.etaSeconds, 1),
      round(figures.elapsedSeconds, 3),
    ),
    errorMessage: status === "failed" ? (row.error ?? "unknown error") : null,
    startedAt: row.startedAt,
    endedAt: row.endedAt,
    lastUpdateAt: row.lastUpdateAt,
    percent: round(figures.percent, 2),
    busyRate: round(figures.busyRate, 3),
    reason: runner?.reason ?? row.reason,
    batchSize: runner?.batchSize ?? row.batchSize,
    leaseOwner: row.leaseOwner,
    pass: row.pass,
    steps: jsonInteger(row.steps),
    etaLowSeconds: figures.etaLowSeconds === null ? null : round(figures.etaLowSeconds, 1),
    etaHighSeconds: figures.etaHighSeconds === null ? null : round(figures.etaHighSeconds, 1),
    stuck: figures.stuck,
    progressAt: row.progressAt,
    quarantined: jsonInteger(row.quarantined),
    verifiedAt: row.verifiedAt,
    residual: jsonIntegerOrNull(row.residual),
    throttle:
      figures.throttled && throttledUntil
        ? { reason: inProcess?.reason ?? row.throttleReason ?? "throttled", until: throttledUntil }
        : null,
    ...phaseOf(row, status),
    owned: true,
  };
}

/** The rate, ETA and elapsed time under both CoreScope spellings (see `MigrationInfo.ratePerSec`). */
function figureSpellings(
  rate: number,
  eta: number | null,
  elapsed: number,
): Pick<MigrationInfo, "rate" | "etaSeconds" | "elapsedSeconds" | "ratePerSec" | "etaSec" | "elapsedSec"> {
  return {
    rate,
    etaSeconds: eta,
    elapsedSeconds: elapsed,
    ratePerSec: rate,
    etaSec: eta,
    elapsedSec: elapsed,
  };
}

function phaseOf(
  row: MigrationRow,
  status: ReportedStatus,
): Pick<MigrationInfo, "phase" | "phaseCursor" | "phaseEnd"> {
  if (status !== "running") return { phase: null, phaseCursor: null, phaseEnd: null };
  if (row.phase === null) {
    return {
      phase: "backfilling",
      phaseCursor: jsonIntegerOrNull(row.cursor),
      phaseEnd: jsonIntegerOrNull(row.maxKey),
    };
  }
  return {
    phase: row.phase,
    phaseCursor: jsonIntegerOrNull(row.scanCursor),
    phaseEnd: jsonIntegerOrNull(row.scanEnd),
  };
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * Builds a snapshot from rows: the migrations this service registered, in registration order, then every other
 * row of the table (`owned: false`), so an operator sees the application's own migrations too — a failure among
 * them included. Rows this service does not run never count as running, so a row left behind by a migration
 * that is no longer configured cannot pin the warm-up banner.
 */
export function buildSnapshot(
  rows: readonly MigrationRow[],
  options: {
    readonly names: readonly string[];
    readonly takenAt: number;
    readonly runnerState?: readonly RunnerMigrationState[];
    readonly activity?: RunnerActivity | undefined;
    /** See `TRICKLE_STUCK_AFTER_MS`. */
    readonly stuckAfterMs?: number;
  },
): Snapshot {
  const byName = new Map(rows.map((r) => [r.name, r]));
  const state = new Map((options.runnerState ?? []).map((s) => [s.name, s]));
  const info = { ...(options.stuckAfterMs !== undefined ? { stuckAfterMs: options.stuckAfterMs } : {}) };
  const registered = new Set(options.names);
  const migrations = [
    ...options.names.flatMap((name) => {
      const row = byName.get(name);
      return row ? [migrationInfo(row, options.takenAt, state.get(name), info)] : [];
    }),
    ...rows
      .filter((row) => !registered.has(row.name))
      .map((row) => ({ ...migrationInfo(row, options.takenAt, undefined, info), owned: false })),
  ];
  return {
    takenAt: options.takenAt,
    migrations,
    ...(options.activity ? { activity: options.activity } : {}),
  };
}

/**
 * True when some migration is running or about to (pending with nothing holding it back), or when the state
 * could not be read (fail closed). A pending migration that waits for its tables has a reason and does not
 * count, so `npm start` on an empty database is healthy; `failed` never counts.
 */
export function isMigrationRunning(snapshot: Snapshot): boolean {
  return (
    snapshot.error !== undefined ||
    snapshot.migrations.some(
      (m) => m.owned && (m.status === "running" || (m.status === "pending" && !m.reason)),
    )
  );
}

/**
 * Keeps what a runner did from its events: the last steps and probe runs, a step-duration histogram and the
 * counters `/metrics` serves, per migration. Memory is bounded: `historySize` steps and probe runs per migration,
 * one histogram and one set of counters per migration.
 */
export class ActivityRecorder {
  readonly #historySize: number;
  readonly #steps = new Map<string, StepRecord[]>();
  readonly #probes = new Map<string, ProbeRecord[]>();
  readonly #histograms = new Map<string, { buckets: number[]; count: number; sumSeconds: number }>();
  readonly #counters = new Map<string, Mutable<RunnerCounters> & { retries: Record<string, number> }>();

  constructor(historySize = 50) {
    this.#historySize = historySize;
  }

  /** Takes any runner event; the ones that matter here are counted or recorded. */
  record(event: RunnerEvent): void {
    if (event.type === "step") this.#step(event);
    else if (event.type === "probe") {
      const { durationMs, limitMs, ok } = event;
      this.#remember(this.#probes, event.name, {
        at: new Date().toISOString(),
        durationMs: round(durationMs, 3),
        limitMs,
        ok,
      });
    } else if (event.type === "retrying") {
      const counters = this.#countersOf(event.name);
      counters.retries[event.code] = (counters.retries[event.code] ?? 0) + 1;
      if (/^SQLITE_(BUSY|LOCKED)/.test(event.code)) counters.busyWaits++;
    } else if (event.type === "lease-lost") this.#countersOf(event.name).leasesLost++;
    else if (event.type === "quarantined") this.#countersOf(event.name).quarantined++;
  }

  /** A copy of everything recorded. */
  activity(): RunnerActivity {
    const lists = <T>(map: Map<string, T[]>) =>
      Object.fromEntries([...map].map(([name, list]) => [name, [...list]]));
    return {
      steps: lists(this.#steps),
      probes: lists(this.#probes),
      stepHistogram: Object.fromEntries(
        [...this.#histograms].map(([name, h]) => [
          name,
          { buckets: [...h.buckets], count: h.count, sumSeconds: h.sumSeconds },
        ]),
      ),
      counters: Object.fromEntries(
        [...this.#counters].map(([name, c]) => [name, { ...c, retries: { ...c.retries } }]),
      ),
    };
  }

  #remember<T>(map: Map<string, T[]>, name: string, record: T): void {
    const list = map.get(name) ?? [];
    list.push(record);
    if (list.length > this.#historySize) list.splice(0, list.length - this.#historySize);
    map.set(name, list);
  }

  #step(step: Extract<RunnerEvent, { type: "step" }>): void {
    this.#remember(this.#steps, step.name, {
      at: new Date().toISOString(),
      batchSize: step.batchSize,
      rows: jsonInteger(step.rows),
      rowsProcessed: jsonInteger(step.rowsProcessed),
      durationMs: round(step.durationMs, 3),
      lockWaitMs: round(step.lockWaitMs, 3),
    });

    const seconds = step.durationMs / 1000;
    const h = this.#histograms.get(step.name) ?? {
      buckets: STEP_DURATION_BUCKETS.map(() => 0),
      count: 0,
      sumSeconds: 0,
    };
    STEP_DURATION_BUCKETS.forEach((le, i) => {
      if (seconds <= le) h.buckets[i] = (h.buckets[i] ?? 0) + 1;
    });
    h.count++;
    h.sumSeconds += seconds;
    this.#histograms.set(step.name, h);

    const counters = this.#countersOf(step.name);
    counters.steps++;
    counters.rows += Number(step.rows);
    counters.lockWaitSeconds += step.lockWaitMs / 1000;
  }

  #countersOf(name: string) {
    let counters = this.#counters.get(name);
    if (!counters) {
      counters = {
        steps: 0,
        rows: 0,
        retries: {},
        busyWaits: 0,
        lockWaitSeconds: 0,
        leasesLost: 0,
        quarantined: 0,
      };
      this.#counters.set(name, counters);
    }
    return counters;
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export interface SnapshotCacheOptions {
  /** Reads the state from the database and builds a snapshot. Called at most once per TTL, single-flight. */
  readonly read: () => Promise<Snapshot>;
  readonly ttlMs: number;
  /** Wall clock in ms; injectable for tests. */
  readonly now?: () => number;
}

/** What the read routes get: a snapshot and how old it is. */
export interface ServedSnapshot {
  readonly snapshot: Snapshot;
  readonly ageMs: number;
}

/**
 * The read path's cache. `publish` takes snapshots from a runner in this process (or from the Node worker by
 * message); `get` serves the freshest one while it is younger than the TTL, and otherwise reads.
 *
 * Reads are single-flight: concurrent callers share one in-flight read, and nothing is locked while it runs
 * (JavaScript has no lock to hold; the in-flight promise is the only shared state). A failed read is not
 * cached: the next caller after it tries again. Meanwhile the failure is served as a fail-closed snapshot
 * that keeps the last known migrations and carries the error.
 */
export class SnapshotCache {
  readonly #readOnce: () => Promise<Snapshot>;
  readonly #ttlMs: number;
  readonly #now: () => number;
  #current: Snapshot | undefined;
  #reads = 0;

  constructor(options: SnapshotCacheOptions) {
    this.#readOnce = singleFlight(async () => {
      this.#reads++;
      const snapshot = await options.read();
      this.publish(snapshot);
      return snapshot;
    });
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
  }

  /** Database reads started so far (for tests and `/metrics`). */
  get reads(): number {
    return this.#reads;
  }

  /** Offers a snapshot built elsewhere; kept if it is newer than the one held. */
  publish(snapshot: Snapshot): void {
    if (snapshot.error !== undefined) return; // failures are reported by `get`, never cached
    if (!this.#current || snapshot.takenAt >= this.#current.takenAt) this.#current = snapshot;
  }

  /** Forgets the held snapshot so the next `get` reads (after a control action changed the state). */
  invalidate(): void {
    this.#current = undefined;
  }

  async get(): Promise<ServedSnapshot> {
    const now = this.#now();
    const current = this.#current;
    if (current && now - current.takenAt < this.#ttlMs)
      return { snapshot: current, ageMs: now - current.takenAt };
    try {
      const snapshot = await this.#readOnce();
      return { snapshot, ageMs: Math.max(0, this.#now() - snapshot.takenAt) };
    } catch (error) {
      const last = this.#current;
      const failed: Snapshot = {
        takenAt: last?.takenAt ?? this.#now(),
        migrations: last?.migrations ?? [],
        error: `could not read migration state: ${errorMessage(error)}`,
      };
      return { snapshot: failed, ageMs: last ? Math.max(0, this.#now() - last.takenAt) : 0 };
    }
  }
}

function errorMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  // Keep messages short: they end up in every healthz response while the problem lasts.
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

/** The parts of a `Runner` a publisher needs. */
export interface PublishingRunner {
  on(listener: (event: RunnerEvent) => void): () => void;
  state(): RunnerMigrationState[];
  readonly store: { list(): Promise<MigrationRow[]> };
}

/**
 * Reads `_async_migrations` once (on the runner's own connection) and builds the snapshot with the runner's
 * in-process state and, given a recorder, its step history. The one way a snapshot is made from a runner: the
 * publisher publishes it, and the cache reads it through on a miss.
 */
export async function readSnapshot(
  runner: PublishingRunner,
  options: {
    readonly names: readonly string[];
    readonly now: () => number;
    readonly stuckAfterMs?: number | undefined;
    readonly recorder?: ActivityRecorder | undefined;
  },
): Promise<Snapshot> {
  const rows = await runner.store.list();
  const { recorder, stuckAfterMs } = options;
  return buildSnapshot(rows, {
    names: options.names,
    takenAt: options.now(),
    runnerState: runner.state(),
    ...(recorder ? { activity: recorder.activity() } : {}),
    ...(stuckAfterMs !== undefined ? { stuckAfterMs } : {}),
  });
}

/** Events after which a snapshot goes out at once instead of waiting for the throttle. */
const STATUS_EVENTS: ReadonlySet<RunnerEvent["type"]> = new Set([
  "run-started",
  "done",
  "failed",
  "sweep",
  "waiting",
  "blocked",
  "throttled",
  "quarantined",
  "lease-lost",
  "retrying",
]);

/**
 * Publishes snapshots from a runner's events: after steps at most once per `minIntervalMs`, after a status
 * change at once. Each publication reads `_async_migrations` once (on the runner's own connection) and adds
 * the runner's in-process state and step history. Nothing is published while the runner is idle: readers then
 * fall back to their cache's own reads, once per TTL at most.
 */
export class SnapshotPublisher {
  readonly recorder: ActivityRecorder;
  readonly #runner: PublishingRunner;
  readonly #names: readonly string[];
  readonly #publish: (snapshot: Snapshot) => void;
  readonly #minIntervalMs: number;
  readonly #now: () => number;
  readonly #unsubscribe: () => void;
  readonly #stuckAfterMs: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastAt = Number.NEGATIVE_INFINITY;
  #reading: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(options: {
    runner: PublishingRunner;
    names: readonly string[];
    publish: (snapshot: Snapshot) => void;
    minIntervalMs?: number;
    now?: () => number;
    recorder?: ActivityRecorder;
    stuckAfterMs?: number;
  }) {
    this.#stuckAfterMs = options.stuckAfterMs;
    this.#runner = options.runner;
    this.#names = options.names;
    this.#publish = options.publish;
    this.#minIntervalMs = options.minIntervalMs ?? 200;
    this.#now = options.now ?? Date.now;
    this.recorder = options.recorder ?? new ActivityRecorder();
    this.#unsubscribe = this.#runner.on((event) => this.#onEvent(event));
  }

  /** Reads and publishes now (after a control action, or after a slice). Never throws. */
  refresh(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#reading) {
      this.#again = true;
      return this.#reading;
    }
    const reading: Promise<void> = this.#readAndPublish().finally(() => {
      if (this.#reading === reading) this.#reading = undefined;
      if (this.#again) {
        this.#again = false;
        void this.refresh();
      }
    });
    this.#reading = reading;
    return reading;
  }

  stop(): void {
    this.#stopped = true;
    this.#unsubscribe();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #onEvent(event: RunnerEvent): void {
    this.recorder.record(event);
    if (this.#stopped) return;
    if (STATUS_EVENTS.has(event.type)) {
      void this.refresh();
      return;
    }
    if (this.#timer !== undefined || this.#reading) return;
    const wait = Math.max(0, this.#lastAt + this.#minIntervalMs - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.refresh();
    }, wait);
  }

  async #readAndPublish(): Promise<void> {
    try {
      const snapshot = await readSnapshot(this.#runner, {
        names: this.#names,
        now: this.#now,
        stuckAfterMs: this.#stuckAfterMs,
        recorder: this.recorder,
      });
      this.#lastAt = snapshot.takenAt;
      this.#publish(snapshot);
    } catch {
      // Readers fall back to their own read and report the error from there.
    }
  }
}
