/**
 * One benchmark phase: a fresh copy of the dataset, the service serving it, the same load against it (ingest
 * child + HTTP prober), and — except for the idle baseline — one backfill. Returns every sample with the
 * backfill's window, so the summary and the chart are computed afterwards from the same records.
 *
 * - `idle`: the service with no migration, the load, no backfill.
 * - `oneShot` / `fixedBatch`: the service with no migration (it only serves), the backfill in a child process
 *   (bench/backfill-child.ts), as CoreScope's ingestor ran it next to its server.
 * - `trickle`: the service as `npm start` starts it (`node dist/node.js` from the bench's own build of src/,
 *   default configuration; only PORT,
 *   DATABASE_URL and an ADMIN_TOKEN for reading step durations are set). Its engine starts the backfill on
 *   start-up; the run's window is `started_at` → `ended_at` of its `_async_migrations` row.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { copyDataset, type Dataset, removeDatabase } from "./dataset.ts";
import { freePort, JsonChild, nowMs, peakRssMb, ServiceProcess, sleep } from "./procs.ts";
import type { EtaSample, HttpSample, IngestSample, StepSample, Window } from "./stats.ts";

export const SCENARIOS = ["oneShot", "fixedBatch", "trickle"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
export type PhaseName = "idle" | ScenarioName;

export const MIGRATION = "tx_last_seen_backfill_v1";
/** `TRICKLE_MIGRATIONS` for the phases without trickle: the service then serves and runs nothing. */
export const NO_MIGRATIONS = "none";

export interface PhaseOptions {
  readonly dataset: Dataset;
  readonly workDir: string;
  /** The service's compiled entry (procs.ts `buildService`). */
  readonly serviceEntry: string;
  readonly ingestRate: number;
  readonly probeIntervalMs: number;
  /** Load before the backfill starts, and after it ends (shown on the chart). */
  readonly warmupMs: number;
  readonly cooldownMs: number;
  /** Length of the idle window. */
  readonly idleMs: number;
  /** A backfill that takes longer is an error. */
  readonly timeoutMs: number;
  /** Extra `TRICKLE_*` settings for the trickle phase's service (none: its defaults, as the goals require). */
  readonly trickleEnv?: Readonly<Record<string, string>>;
  readonly onProgress?: (progress: PhaseProgress) => void;
}

export interface PhaseProgress {
  readonly phase: PhaseName;
  /** What is happening: "starting", "load", "backfill", "cooling down", "stopping". */
  readonly stage: string;
  readonly done?: number;
  readonly total?: number;
  readonly startedAt?: number;
}

export interface PhaseRecord {
  readonly name: PhaseName;
  readonly window: Window;
  /** `/api/healthz` answers. */
  readonly http: HttpSample[];
  /** `/api/perf` answers. */
  readonly perf: HttpSample[];
  readonly ingest: IngestSample[];
  readonly steps: StepSample[];
  /** The ETAs trickle showed while it ran (the control API, every 250 ms); empty for the other phases. */
  readonly eta: EtaSample[];
  readonly rowsTotal: number;
  /** Steps the backfill ran (trickle: as its row counts them; a few records may be missing from `steps`). */
  readonly stepCount: number;
  /** Rows still needing the backfill afterwards (0 when it did its job). */
  readonly residual: number;
  readonly rssMb: number | null;
  /** Anything a reader of the figures should know (missed step records, retries, errors). */
  readonly notes: string[];
  /** What the service printed (its last 8 000 characters): state changes, retries. */
  readonly serviceLog: string;
}

const OUTCOMES = ["ok", "busy", "error"] as const;
const ROUTE_HEALTHZ = 0;

function decodeHttp(flat: readonly number[]): { healthz: HttpSample[]; perf: HttpSample[]; refused: number } {
  const healthz: HttpSample[] = [];
  const perf: HttpSample[] = [];
  let refused = 0;
  for (let i = 0; i + 3 < flat.length; i += 4) {
    const sample = { at: flat[i]!, ms: flat[i + 1]!, status: flat[i + 2]! };
    if (sample.status === 0) {
      refused++;
      continue;
    }
    (flat[i + 3] === ROUTE_HEALTHZ ? healthz : perf).push(sample);
  }
  return { healthz, perf, refused };
}

/** ingest-child.ts's flat samples (intended start, latency, outcome code). */
export function decodeIngest(flat: readonly number[]): IngestSample[] {
  const out: IngestSample[] = [];
  for (let i = 0; i + 2 < flat.length; i += 3) {
    out.push({ at: flat[i]!, ms: flat[i + 1]!, outcome: OUTCOMES[flat[i + 2]!] ?? "error" });
  }
  return out;
}

/**
 * The load: an ingest child on the file (none at rate 0: the idle-database scenario) and a prober on the
 * service's port (it keeps asking while nothing listens there yet; unanswered requests are not samples).
 */
class Load {
  readonly ingest: JsonChild | undefined;
  readonly prober: JsonChild;

  constructor(url: string, rate: number, baseUrl: string, probeIntervalMs: number) {
    this.ingest =
      rate > 0 ? new JsonChild("ingest-child", "ingest-child.ts", [url, String(rate)]) : undefined;
    this.prober = new JsonChild("prober", "prober.ts", [baseUrl, String(probeIntervalMs)]);
  }

  async ready(): Promise<void> {
    await Promise.all([this.ingest?.waitFor("ready"), this.prober.waitFor("ready")]);
  }

  async stop(): Promise<{ ingest: IngestSample[]; http: ReturnType<typeof decodeHttp>; errors: string[] }> {
    this.ingest?.send("stop");
    this.prober.send("stop");
    const ingest = this.ingest ? await this.ingest.waitFor("result", 60_000) : { samples: [], errors: [] };
    const probe = await this.prober.waitFor("result", 60_000);
    await Promise.all([this.ingest?.exited, this.prober.exited]);
    return {
      ingest: decodeIngest(ingest.samples as number[]),
      http: decodeHttp(probe.samples as number[]),
      errors: (ingest.errors as string[] | undefined) ?? [],
    };
  }

  kill(): void {
    this.ingest?.kill();
    this.prober.kill();
  }
}

interface RecentStep {
  readonly at: string;
  readonly rows: number | string;
  readonly rowsProcessed: number | string;
  readonly durationMs: number;
  readonly lockWaitMs: number;
}

interface MigrationDetail {
  readonly migration: {
    readonly status: string;
    readonly startedAt: string | null;
    readonly endedAt: string | null;
    readonly rowsProcessed: number | string;
    readonly rowsTotal: number | string;
    readonly etaSeconds: number | null;
    readonly etaLowSeconds: number | null;
    readonly etaHighSeconds: number | null;
    readonly phase: string | null;
    readonly steps: number | string;
    readonly errorMessage: string | null;
  };
  readonly recentSteps: RecentStep[];
}

/**
 * Reads the control API the way an operator's dashboard would, every 250 ms in every phase, so all phases
 * carry the same extra reads. In the trickle phase it collects the engine's step records (the service keeps
 * the last 50; at ≥ 10 ms per step that is ≥ 0.5 s of history, twice the polling interval) and the ETA the
 * operator would have read at that moment.
 */
class ControlPoller {
  readonly #service: ServiceProcess;
  readonly #token: string;
  readonly #detail: boolean;
  readonly #steps = new Map<string, StepSample>();
  readonly eta: EtaSample[] = [];
  #stopped = false;
  #loop: Promise<void> | undefined;
  latest: MigrationDetail | undefined;

  constructor(service: ServiceProcess, token: string, detail: boolean) {
    this.#service = service;
    this.#token = token;
    this.#detail = detail;
  }

  start(): void {
    this.#loop = (async () => {
      while (!this.#stopped) {
        await this.poll();
        await sleep(250);
      }
    })();
  }

  async poll(): Promise<void> {
    const path = this.#detail ? `/api/migrations/${MIGRATION}?steps=50` : "/api/migrations";
    try {
      const res = await fetch(this.#service.url(path), {
        headers: { authorization: `Bearer ${this.#token}` },
      });
      const body = (await res.json()) as MigrationDetail;
      if (!this.#detail || res.status !== 200) return;
      this.latest = body;
      const m = body.migration;
      if (m.status === "running") {
        this.eta.push({
          at: Date.now(),
          done: Number(m.rowsProcessed),
          total: Number(m.rowsTotal),
          etaSeconds: m.etaSeconds,
          lowSeconds: m.etaLowSeconds,
          highSeconds: m.etaHighSeconds,
          phase: m.phase,
        });
      }
      for (const s of body.recentSteps) {
        const key = `${s.at}|${s.rowsProcessed}`;
        if (!this.#steps.has(key)) {
          this.#steps.set(key, {
            endAt: Date.parse(s.at),
            ms: s.durationMs,
            rows: Number(s.rows),
            rowsProcessed: Number(s.rowsProcessed),
            lockWaitMs: s.lockWaitMs,
          });
        }
      }
    } catch {
      // not listening yet, or stopping
    }
  }

  steps(): StepSample[] {
    return [...this.#steps.values()].sort((a, b) => a.endAt - b.endAt);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}

/** Runs one phase on a fresh copy of the dataset. */
export async function runPhase(name: PhaseName, options: PhaseOptions): Promise<PhaseRecord> {
  const report = (p: Omit<PhaseProgress, "phase">) => options.onProgress?.({ phase: name, ...p });
  report({ stage: "copying the database" });
  const file = join(options.workDir, `${name}.db`);
  copyDataset(options.dataset, file);
  const url = `file:${file}`;
  const token = randomBytes(16).toString("hex");
  const port = await freePort();
  const notes: string[] = [];
  const env: Record<string, string> = { DATABASE_URL: url, ADMIN_TOKEN: token };
  if (name !== "trickle") env.TRICKLE_MIGRATIONS = NO_MIGRATIONS;
  else Object.assign(env, options.trickleEnv);

  const baseUrl = `http://127.0.0.1:${port}`;
  let load: Load | undefined;
  let service: ServiceProcess | undefined;
  let backfill: JsonChild | undefined;
  let poller: ControlPoller | undefined;
  try {
    report({ stage: "starting" });
    let window: Window;
    let steps: StepSample[] = [];
    let rowsTotal = 0;
    let stepCount = 0;

    if (name === "trickle") {
      // The backfill starts with the service; the load runs before it so the run starts under load.
      load = new Load(url, options.ingestRate, baseUrl, options.probeIntervalMs);
      await load.ready();
      report({ stage: "load" });
      await sleep(options.warmupMs);
      for (let attempt = 1; ; attempt++) {
        service = new ServiceProcess(options.serviceEntry, port, env);
        // Polled from the start: the engine's first steps run while HTTP is still coming up.
        poller = new ControlPoller(service, token, true);
        poller.start();
        try {
          await service.waitReady();
          break;
        } catch (error) {
          await poller.stop();
          // Start-up writes (state schema, registration) use the service's short busy timeout; under a busy
          // ingest they can fail. A supervisor (systemd Restart=on-failure) would start it again.
          if (attempt >= 10 || !/cannot start: SQLITE_BUSY/.test(service.output())) throw error;
          notes.push(
            `trickle: start attempt ${attempt} failed with SQLITE_BUSY during start-up; started again`,
          );
        }
      }
      const began = nowMs();
      let serviceExited = false;
      void service.exited.then(() => {
        serviceExited = true;
      });
      for (;;) {
        if (serviceExited)
          throw new Error(`the service exited during the backfill; output:\n${service.output()}`);
        const m = poller.latest?.migration;
        if (m?.status === "done") break;
        if (m?.status === "failed") throw new Error(`trickle's migration failed: ${m.errorMessage}`);
        if (nowMs() - began > options.timeoutMs) {
          throw new Error(
            `trickle did not finish within ${options.timeoutMs} ms; output:\n${service.output()}`,
          );
        }
        report({
          stage: "backfill",
          done: poller.steps().at(-1)?.rowsProcessed ?? 0,
          total: Number(m?.rowsTotal ?? 0),
          startedAt: m?.startedAt ? Date.parse(m.startedAt) : began,
        });
        await sleep(100);
      }
      await poller.poll(); // the last steps
      const m = poller.latest!.migration;
      window = { start: Date.parse(m.startedAt!), end: Date.parse(m.endedAt!) };
      steps = poller.steps().filter((s) => s.endAt >= window.start - 5 && s.endAt <= window.end + 5);
      rowsTotal = Number(m.rowsTotal);
      const recorded = Number(m.steps);
      stepCount = recorded;
      if (steps.length !== recorded) {
        notes.push(
          `trickle: ${steps.length} step records collected of ${recorded} steps the run counted (the service keeps the last 50)`,
        );
      }
    } else {
      // The service first: with no migration it only serves; then the load against both.
      service = new ServiceProcess(options.serviceEntry, port, env);
      await service.waitReady();
      poller = new ControlPoller(service, token, false);
      poller.start();
      load = new Load(url, options.ingestRate, baseUrl, options.probeIntervalMs);
      await load.ready();
      report({ stage: "load" });
      await sleep(options.warmupMs);
      if (name === "idle") {
        const start = nowMs();
        while (nowMs() - start < options.idleMs) {
          report({ stage: "idle load", done: nowMs() - start, total: options.idleMs, startedAt: start });
          await sleep(200);
        }
        window = { start, end: nowMs() };
      } else {
        let latest: { done: number; total: number } | undefined;
        backfill = new JsonChild("backfill-child", "backfill-child.ts", [url, name], (message) => {
          if (message.type === "progress")
            latest = { done: Number(message.done), total: Number(message.total) };
        });
        const began = nowMs();
        const result = backfill.waitFor("result", options.timeoutMs);
        let finished = false;
        void result.then(
          () => {
            finished = true;
          },
          () => {
            finished = true;
          },
        );
        while (!finished) {
          report({ stage: "backfill", ...(latest ?? {}), startedAt: began });
          await sleep(100);
        }
        const r = await result;
        window = { start: Number(r.startedAt), end: Number(r.endedAt) };
        steps = (r.steps as [number, number, number, number][]).map(([endAt, ms, rows, rowsProcessed]) => ({
          endAt,
          ms,
          rows,
          rowsProcessed,
        }));
        rowsTotal = Number(r.rowsTotal);
        stepCount = steps.length;
        if (Number(r.busyRetries) > 0) {
          notes.push(`${name}: ${r.busyRetries} statements hit SQLITE_BUSY after 5 s and were retried`);
        }
        await backfill.exited;
      }
    }

    report({ stage: "cooling down" });
    await sleep(options.cooldownMs);
    report({ stage: "stopping" });
    await poller.stop();
    const collected = await load.stop();
    const rssMb = peakRssMb(service.child.pid);
    await service.stop();
    const residual = await countResidual(url);
    removeDatabase(file);
    if (collected.http.refused > 0 && name !== "trickle") {
      notes.push(`${name}: ${collected.http.refused} HTTP requests got no answer`);
    }
    for (const e of collected.errors) notes.push(`${name}: ingest error: ${e}`);
    const firstAnswer = collected.http.healthz[0]?.at;
    if (name === "trickle" && firstAnswer !== undefined && firstAnswer > window.start) {
      notes.push(
        `trickle: the service answered its first /api/healthz ${Math.round(firstAnswer - window.start)} ms after the run started (the engine starts before HTTP listens)`,
      );
    }
    return {
      name,
      window,
      http: collected.http.healthz,
      perf: collected.http.perf,
      ingest: collected.ingest,
      steps,
      eta: poller.eta,
      rowsTotal,
      stepCount,
      residual,
      rssMb: rssMb === null ? null : Math.round(rssMb * 10) / 10,
      notes,
      serviceLog: service.output(),
    };
  } catch (error) {
    load?.kill();
    backfill?.kill();
    await poller?.stop();
    await service?.stop(5000);
    throw error;
  }
}

/** Transmissions still at 0 although they have an observation with a non-zero timestamp. */
async function countResidual(url: string): Promise<number> {
  const client = createClient({ url, timeout: 5000 });
  try {
    const row = (
      await client.execute(
        "SELECT COUNT(*) AS n FROM transmissions WHERE last_seen = 0 AND COALESCE((SELECT MAX(timestamp) FROM observations WHERE transmission_id = transmissions.id), 0) <> 0",
      )
    ).rows[0];
    return Number(row?.n ?? 0);
  } finally {
    client.close();
  }
}
