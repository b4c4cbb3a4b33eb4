/**
 * `npm run bench -- [--transmissions N] [--observations M] [--scale seed|large] [--json FILE] [--chart FILE] …`
 *
 * trickle against CoreScope's one-shot statement and the seed PR's fixed-batch loop, side by side in one run,
 * each on its own fresh copy of the same CoreScope-shaped database and under the same load (an ingest process
 * doing CoreScope's hot path, an HTTP prober on the serving process); an idle baseline with the same load and
 * no backfill comes first. Prints a markdown table and the goals of issue 5 with PASS/FAIL, writes the figures
 * as JSON and draws an SVG chart. See bench/README text in the report for how to read it.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { freemem } from "node:os";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { formatCount, formatDuration, formatRate, ProgressRenderer, renderBar } from "../src/cli/progress.ts";
import { DEFAULT_TUNING } from "../src/engine/tuning.ts";
import { type ChartPhase, renderChart } from "./chart.ts";
import { type Dataset, ensureDataset } from "./dataset.ts";
import { loadavgNow, type MachineInfo, machineInfo } from "./machine.ts";
import { buildService, REPO } from "./procs.ts";
import { type PhaseName, type PhaseProgress, type PhaseRecord, runPhase, SCENARIOS } from "./scenarios.ts";
import {
  decileStepMs,
  type EtaFigures,
  etaFigures,
  etaTable,
  evaluateGoals,
  fmt,
  goalsTable,
  httpFigures,
  ingestFigures,
  markdownTable,
  percentile,
  percentiles,
  round,
  type ScenarioFigures,
} from "./stats.ts";

const SCALES = {
  // CoreScope's operator database of #1724: "71K" transmissions, "1.5M" observations.
  seed: { transmissions: 71_000, observations: 1_500_000 },
  // The headline: about the size of the 1M / 15M database the performance issue measured on; the one-shot
  // takes seconds, the database builds in a few minutes.
  medium: { transmissions: 1_000_000, observations: 15_000_000 },
  // efiten's production database (#2000 review): about 1M transmissions, 11M+ observations, and growing.
  large: { transmissions: 1_000_000, observations: 20_000_000 },
} as const;

const USAGE = `usage: npm run bench -- [options]

  --scale seed|medium|large dataset size: seed = 71,000 transmissions / 1,500,000 observations (default),
                            medium = 1,000,000 / 15,000,000 (the README's headline), large = 1,000,000 /
                            20,000,000
  --transmissions N         override the number of transmissions
  --observations M          override the number of observations
  --json FILE               where to write the figures (default .bench/latest.json)
  --chart FILE              where to write the SVG chart (default docs/bench-chart.svg)
  --cache-dir DIR           where built databases are kept and scenarios run (default .bench)
  --ingest-rate N           ingest messages per second during every phase (default 200; 0: no ingest,
                            an idle database)
  --probe-ms N              each HTTP route is polled every N ms (default 20)
  --idle-seconds N          length of the idle baseline window (default 10)
  --warmup-ms N             load before each backfill starts (default 1500)
  --cooldown-ms N           load after each backfill ends (default 1500)
  --legacy-fraction F       fraction of transmissions left at last_seen = 0 (default 0.9)
  --seed S                  generator seed (default 1)
  --timeout-seconds N       a backfill that takes longer is an error (default 3600)
  --repeat N                runs of each scenario, interleaved; the median run is reported
                            (default 3, at --scale large 1)
  --trickle-env NAME=VALUE  a TRICKLE_* setting for trickle's service, to measure other tuning
                            (repeatable; the goals are judged on the defaults, so the report says so)
`;

/** One round of trickle: the figures the goals judge. */
export interface TrickleRound {
  readonly vsOneShot: number;
  readonly writerP99Ms: number;
  readonly writerMaxMs: number;
  readonly writerErrors: number;
  readonly stepP99Ms: number;
  readonly stepMaxMs: number;
  /** The steps' waits for the write lock before they held it (not in their time): p99, and all of them. */
  readonly lockWaitP99Ms: number;
  readonly lockWaitTotalMs: number;
  readonly healthzP99Ms: number;
  readonly rssMb: number | null;
  /** Shares of the ETA samples from 10 % on (null without samples). */
  readonly etaPointWithin25: number | null;
  readonly etaBandContains: number | null;
}

export interface BenchOptions {
  readonly scale: "seed" | "medium" | "large" | "custom";
  readonly transmissions: number;
  readonly observations: number;
  readonly legacyFraction: number;
  readonly seed: number;
  readonly json: string;
  readonly chart: string;
  readonly cacheDir: string;
  readonly ingestRate: number;
  readonly probeMs: number;
  readonly idleMs: number;
  readonly warmupMs: number;
  readonly cooldownMs: number;
  readonly timeoutMs: number;
  readonly repeat: number;
  /** `TRICKLE_*` overrides for the trickle phase (empty: the defaults). */
  readonly trickleEnv: Readonly<Record<string, string>>;
}

/** Parses the command line; throws an `Error` naming the bad option. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions | "help" {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      help: { type: "boolean", short: "h" },
      scale: { type: "string" },
      transmissions: { type: "string" },
      observations: { type: "string" },
      json: { type: "string" },
      chart: { type: "string" },
      "cache-dir": { type: "string" },
      "ingest-rate": { type: "string" },
      "probe-ms": { type: "string" },
      "idle-seconds": { type: "string" },
      "warmup-ms": { type: "string" },
      "cooldown-ms": { type: "string" },
      "legacy-fraction": { type: "string" },
      seed: { type: "string" },
      "timeout-seconds": { type: "string" },
      repeat: { type: "string" },
      "trickle-env": { type: "string", multiple: true },
    },
  });
  if (values.help) return "help";
  const integer = (name: keyof typeof values, fallback: number, min: number): number => {
    const raw = values[name];
    if (raw === undefined) return fallback;
    if (typeof raw !== "string" || !/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(Number(raw))) {
      throw new Error(`--${name} must be a whole number, got ${JSON.stringify(raw)}`);
    }
    const n = Number(raw);
    if (n < min) throw new Error(`--${name} must be at least ${min}, got ${n}`);
    return n;
  };
  const scaleName = values.scale ?? "seed";
  if (scaleName !== "seed" && scaleName !== "medium" && scaleName !== "large") {
    throw new Error(`--scale must be "seed", "medium" or "large", got ${JSON.stringify(scaleName)}`);
  }
  const base = SCALES[scaleName];
  const transmissions = integer("transmissions", base.transmissions, 1);
  const observations = integer("observations", base.observations, 0);
  const custom = transmissions !== base.transmissions || observations !== base.observations;
  const legacyRaw = values["legacy-fraction"];
  const legacyFraction = legacyRaw === undefined ? 0.9 : Number(legacyRaw);
  if (!(legacyFraction > 0 && legacyFraction <= 1)) {
    throw new Error(`--legacy-fraction must be a number in (0, 1], got ${JSON.stringify(legacyRaw)}`);
  }
  const trickleEnv: Record<string, string> = {};
  for (const setting of values["trickle-env"] ?? []) {
    const match = /^(TRICKLE_[A-Z0-9_]+)=(.*)$/s.exec(setting);
    if (!match) throw new Error(`--trickle-env must be TRICKLE_NAME=VALUE, got ${JSON.stringify(setting)}`);
    trickleEnv[match[1]!] = match[2]!;
  }
  const ingestRate = integer("ingest-rate", 200, 0);
  if (ingestRate > 5000) throw new Error(`--ingest-rate must be at most 5000, got ${ingestRate}`);
  return {
    scale: custom ? "custom" : scaleName,
    transmissions,
    observations,
    legacyFraction,
    seed: integer("seed", 1, Number.MIN_SAFE_INTEGER),
    json: resolve(values.json ?? ".bench/latest.json"),
    chart: resolve(values.chart ?? "docs/bench-chart.svg"),
    cacheDir: resolve(values["cache-dir"] ?? ".bench"),
    ingestRate,
    probeMs: integer("probe-ms", 20, 2),
    idleMs: integer("idle-seconds", 10, 1) * 1000,
    warmupMs: integer("warmup-ms", 1500, 0),
    cooldownMs: integer("cooldown-ms", 1500, 0),
    timeoutMs: integer("timeout-seconds", 3600, 1) * 1000,
    // Phases at the seed scale last seconds, so a few runs each are cheap; at the large scale one is plenty.
    repeat: integer("repeat", scaleName === "large" ? 1 : 3, 1),
    trickleEnv,
  };
}

export interface BenchReport {
  readonly dataset: { readonly transmissions: number; readonly observations: number; readonly bytes: number };
  /** `loadavg` when the run started, `loadavgEnd` when it ended. */
  readonly machine: MachineInfo & { readonly loadavgEnd: readonly number[] };
  readonly idle: { readonly httpP99Ms: number; readonly ingestP99Ms: number };
  readonly scenarios: Readonly<Record<(typeof SCENARIOS)[number], ScenarioFigures>>;
  readonly ratios: { readonly trickleTotalVsOneShot: number; readonly fixedBatchTotalVsOneShot: number };
  readonly goals: ReturnType<typeof evaluateGoals>;
  /** How trickle's ETA compared with the time that was really left (its median run); null without samples. */
  readonly eta: EtaFigures | null;
  readonly config: {
    readonly scale: BenchOptions["scale"];
    readonly legacyFraction: number;
    readonly seed: number;
    readonly ingestRate: number;
    readonly probeMs: number;
    readonly stepTargetMs: number;
    /** `TRICKLE_*` overrides of trickle's defaults in this run (empty when the defaults were measured). */
    readonly trickleEnv: Readonly<Record<string, string>>;
    /** Runs per scenario; the figures are from the run with the median total. */
    readonly repeat: number;
    /** Every run's total, in run order. */
    readonly totalsMs: Readonly<Record<string, readonly number[]>>;
    /** trickle's total over the one-shot's in each round (the two ran back to back), in run order. */
    readonly trickleVsOneShotByRound: readonly number[];
    /** trickle's other judged figures in each round, in run order: the spread behind the median run. */
    readonly trickleRounds: readonly TrickleRound[];
    readonly rowsTotal: Readonly<Record<string, number>>;
    /** Mean step durations per decile without the per-row scaling (see bench/stats.ts `decileStepMs`). */
    readonly rawDecileStepMs: Readonly<Record<string, { first: number | null; last: number | null }>>;
    /** `/api/perf` latency per phase, next to `/api/healthz` in `http`. */
    readonly perfHttp: Readonly<Record<string, { p50Ms: number; p99Ms: number; maxMs: number }>>;
    readonly idle: ScenarioFigures;
  };
  readonly notes: readonly string[];
  readonly generatedAt: string;
}

function duration(record: PhaseRecord): number {
  return record.window.end - record.window.start;
}

export function summarize(record: PhaseRecord): ScenarioFigures {
  const deciles = decileStepMs(record.steps, record.rowsTotal);
  return {
    totalMs: round(record.window.end - record.window.start),
    steps: record.stepCount,
    stepMs: percentiles(record.steps.map((s) => s.ms)),
    ingest: ingestFigures(record.ingest, record.window),
    http: httpFigures(record.http, record.window),
    rssMb: record.rssMb,
    firstDecileStepMs: deciles.first,
    lastDecileStepMs: deciles.last,
  };
}

function writeFile(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** Lines of the progress block: finished phases, then the one running. */
class BenchProgress {
  readonly #renderer = new ProgressRenderer(process.stderr);
  readonly #done: string[] = [];
  #current = "";

  build(done: number, total: number, startedAt: number): void {
    const seconds = (performance.now() - startedAt) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    this.#current = `build database ${renderBar(done / total)} ${formatCount(done)} / ${formatCount(total)} rows  ${formatRate(rate)}  ETA ${formatDuration(rate > 0 ? (total - done) / rate : null)}`;
    this.#draw();
  }

  phase(p: PhaseProgress, label: string): void {
    const elapsed = p.startedAt === undefined ? undefined : (Date.now() - p.startedAt) / 1000;
    let line = `${label.padEnd(13)} ${p.stage}`;
    if (p.done !== undefined && p.total !== undefined && p.total > 0) {
      const unit = p.phase === "idle" ? "" : " rows";
      const shown = p.phase === "idle" ? (n: number) => `${(n / 1000).toFixed(1)} s` : formatCount;
      line += ` ${renderBar(p.done / p.total)} ${shown(p.done)} / ${shown(p.total)}${unit}`;
    }
    if (elapsed !== undefined) line += `  ${elapsed.toFixed(1)} s`;
    this.#current = line;
    this.#draw();
  }

  /** A finished line stays: on a terminal above the live line, in a log printed once. */
  finishLine(line: string): void {
    this.#current = "";
    if (this.#renderer.tty) {
      this.#done.push(line);
      this.#draw();
    } else {
      this.#renderer.update([]); // drops a progress line still waiting to be printed
      process.stderr.write(`${line}\n`);
    }
  }

  finish(): void {
    this.#renderer.finish();
  }

  #draw(): void {
    const lines = this.#current ? [...this.#done, this.#current] : this.#done;
    if (lines.length > 0) this.#renderer.update(lines);
  }
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const progress = new BenchProgress();
  const startMachine = machineInfo();
  const notes: string[] = [];
  const overrides = Object.entries(options.trickleEnv);
  if (overrides.length > 0) {
    notes.push(
      `trickle ran with ${overrides.map(([k, v]) => `${k}=${v}`).join(" ")}, not its defaults: the goals are for the defaults`,
    );
  }
  const buildStart = performance.now();
  const dataset: Dataset = await ensureDataset(
    options.cacheDir,
    {
      transmissions: options.transmissions,
      observations: options.observations,
      legacyFraction: options.legacyFraction,
      seed: options.seed,
    },
    (done, total) => progress.build(done, total, buildStart),
  );
  progress.finishLine(
    dataset.built
      ? `build database: ${formatCount(dataset.transmissions)} transmissions, ${formatCount(dataset.observations)} observations, ${(dataset.bytes / 1024 ** 2).toFixed(0)} MB in ${(dataset.buildMs / 1000).toFixed(1)} s`
      : `database from the cache: ${dataset.path} (${(dataset.bytes / 1024 ** 2).toFixed(0)} MB)`,
  );
  const workDir = resolve(options.cacheDir, "run");
  mkdirSync(workDir, { recursive: true });
  const serviceEntry = buildService();

  // Idle first, then the scenarios in rounds (oneShot, fixedBatch, trickle, oneShot, …) so that a noisy
  // minute on a shared machine hits every scenario alike; each scenario is represented by its median run.
  const runs = new Map<PhaseName, PhaseRecord[]>();
  const order: PhaseName[] = ["idle"];
  for (let round = 0; round < options.repeat; round++) order.push(...SCENARIOS);
  for (const [index, name] of order.entries()) {
    const round = Math.floor((index - 1) / SCENARIOS.length) + 1;
    const label = name === "idle" || options.repeat === 1 ? name : `${name} #${round}`;
    const record = await runPhase(name, {
      dataset,
      workDir,
      serviceEntry,
      ingestRate: options.ingestRate,
      probeIntervalMs: options.probeMs,
      warmupMs: options.warmupMs,
      cooldownMs: options.cooldownMs,
      idleMs: options.idleMs,
      timeoutMs: options.timeoutMs,
      trickleEnv: options.trickleEnv,
      onProgress: (p) => progress.phase(p, label),
    });
    runs.set(name, [...(runs.get(name) ?? []), record]);
    // Every run's raw samples and service log stay next to the scenario copies, for a closer look.
    const base = resolve(workDir, label.replace(/[^A-Za-z0-9]+/g, "-"));
    writeFile(`${base}.log`, record.serviceLog);
    writeFile(`${base}.samples.json`, JSON.stringify({ ...record, serviceLog: undefined }));
    notes.push(...record.notes);
    if (name !== "idle" && record.residual !== 0) {
      notes.push(`${label}: ${record.residual} transmissions still need the backfill after it finished`);
    }
    const f = summarize(record);
    progress.finishLine(
      name === "idle"
        ? `idle          healthz p99 ${fmt(f.http.p99Ms, 1)} ms, ingest p99 ${fmt(f.ingest.p99Ms, 1)} ms`
        : `${label.padEnd(13)} ${fmt(f.totalMs / 1000, 2)} s, ${f.steps} steps, ingest p99 ${fmt(f.ingest.p99Ms, 1)} ms, healthz p99 ${fmt(f.http.p99Ms, 1)} ms`,
    );
  }
  const records = new Map<PhaseName, PhaseRecord>();
  const totals: Record<string, number[]> = {};
  for (const [name, list] of runs) {
    const byTotal = [...list].sort((a, b) => duration(a) - duration(b));
    records.set(name, byTotal[Math.floor((byTotal.length - 1) / 2)]!);
    totals[name] = list.map((r) => round(duration(r)));
  }
  if (options.repeat > 1) {
    notes.push(
      `each scenario ran ${options.repeat} times; figures are from its run with the median total (totals in ms: ${SCENARIOS.map((n) => `${n} ${totals[n]!.join(", ")}`).join("; ")})`,
    );
  }
  progress.finish();

  const idleRecord = records.get("idle")!;
  const idle = summarize(idleRecord);
  const scenarios = Object.fromEntries(
    SCENARIOS.map((name) => [name, summarize(records.get(name)!)]),
  ) as Record<(typeof SCENARIOS)[number], ScenarioFigures>;
  const targetOverride = options.trickleEnv.TRICKLE_STEP_TARGET_MS;
  const stepTargetMs = targetOverride === undefined ? DEFAULT_TUNING.stepTargetMs : Number(targetOverride);
  const idleFigures = { httpP99Ms: idle.http.p99Ms, ingestP99Ms: idle.ingest.p99Ms };
  const trickleRecord = records.get("trickle")!;
  const eta = etaFigures(trickleRecord.eta, trickleRecord.window.end);
  const byRound = (runs.get("trickle") ?? []).map((t, i) => {
    const one = runs.get("oneShot")?.[i];
    return one ? round(duration(t) / duration(one), 3) : Number.NaN;
  });
  const trickleRounds = (runs.get("trickle") ?? []).map((t, i): TrickleRound => {
    const f = summarize(t);
    const e = etaFigures(t.eta, t.window.end);
    const waits = t.steps.map((s) => s.lockWaitMs ?? 0);
    return {
      vsOneShot: byRound[i]!,
      writerP99Ms: f.ingest.p99Ms,
      writerMaxMs: f.ingest.maxMs,
      writerErrors: f.ingest.busyErrors + f.ingest.otherErrors,
      stepP99Ms: f.stepMs.p99,
      stepMaxMs: f.stepMs.max,
      lockWaitP99Ms: percentile(waits, 0.99),
      lockWaitTotalMs: round(waits.reduce((sum, w) => sum + w, 0)),
      healthzP99Ms: f.http.p99Ms,
      rssMb: f.rssMb,
      etaPointWithin25: e?.pointWithin25 ?? null,
      etaBandContains: e?.bandContains ?? null,
    };
  });
  const report: BenchReport = {
    dataset: {
      transmissions: dataset.transmissions,
      observations: dataset.observations,
      bytes: dataset.bytes,
    },
    machine: { ...startMachine, loadavgEnd: loadavgNow() },
    idle: idleFigures,
    scenarios,
    ratios: {
      trickleTotalVsOneShot: round(scenarios.trickle.totalMs / scenarios.oneShot.totalMs, 3),
      fixedBatchTotalVsOneShot: round(scenarios.fixedBatch.totalMs / scenarios.oneShot.totalMs, 3),
    },
    goals: evaluateGoals({
      trickle: scenarios.trickle,
      oneShot: scenarios.oneShot,
      idle: idleFigures,
      scale: options.scale,
      ingestRate: options.ingestRate,
      eta,
    }),
    eta,
    config: {
      scale: options.scale,
      legacyFraction: options.legacyFraction,
      seed: options.seed,
      ingestRate: options.ingestRate,
      probeMs: options.probeMs,
      stepTargetMs,
      trickleEnv: options.trickleEnv,
      repeat: options.repeat,
      totalsMs: Object.fromEntries(SCENARIOS.map((n) => [n, totals[n] ?? []])),
      trickleVsOneShotByRound: byRound,
      trickleRounds,
      rowsTotal: Object.fromEntries(SCENARIOS.map((n) => [n, records.get(n)!.rowsTotal])),
      rawDecileStepMs: Object.fromEntries(
        SCENARIOS.map((n) => {
          const r = records.get(n)!;
          const d = decileStepMs(r.steps, r.rowsTotal);
          return [n, { first: d.firstRaw, last: d.lastRaw }];
        }),
      ),
      perfHttp: Object.fromEntries(
        (["idle", ...SCENARIOS] as const).map((n) => {
          const r = records.get(n)!;
          return [n, httpFigures(r.perf, r.window)];
        }),
      ),
      idle,
    },
    notes,
    generatedAt: new Date().toISOString(),
  };

  writeFile(options.json, `${JSON.stringify(report, null, 2)}\n`);
  const chartPhases: ChartPhase[] = (["idle", ...SCENARIOS] as const).map((name) => {
    const r = records.get(name)!;
    const f = name === "idle" ? idle : scenarios[name];
    const caption =
      name === "idle"
        ? `no backfill, ${fmt(f.totalMs / 1000, 0)} s window (clipped to the axis) — healthz p99 ${fmt(f.http.p99Ms, 1)} ms · ingest p99 ${fmt(f.ingest.p99Ms, 1)} ms`
        : `total ${fmt(f.totalMs / 1000, 2)} s (${fmt(f.totalMs / scenarios.oneShot.totalMs, 2)}× oneShot) · ${f.steps} steps, p99 ${fmt(f.stepMs.p99, 1)} ms · ingest p99 ${fmt(f.ingest.p99Ms, 1)} ms, ${f.ingest.busyErrors} busy · healthz p99 ${fmt(f.http.p99Ms, 1)} ms`;
    return {
      name,
      caption,
      window: r.window,
      backfill: name !== "idle",
      http: r.http,
      ingest: r.ingest,
      steps: r.steps,
    };
  });
  const m = report.machine;
  writeFile(
    options.chart,
    renderChart({
      title: `trickle vs one-shot vs fixed batches — ${formatCount(dataset.transmissions)} transmissions / ${formatCount(dataset.observations)} observations`,
      subtitle: `${m.cpus} × ${m.model}, ${m.memGb} GB, Node ${m.node}, load avg ${m.loadavg.join(" / ")} · ingest ${options.ingestRate}/s, each route polled every ${options.probeMs} ms · ${report.generatedAt.slice(0, 16)}Z`,
      phases: chartPhases,
      guide: { ms: stepTargetMs, label: `${stepTargetMs} ms step target` },
    }),
  );
  return report;
}

export function printReport(report: BenchReport, options: BenchOptions): string {
  const s = report.scenarios;
  const rows = [
    { name: "idle (no backfill)", figures: report.config.idle, ratio: null, idle: true },
    { name: "oneShot", figures: s.oneShot, ratio: 1 },
    { name: "fixedBatch", figures: s.fixedBatch, ratio: report.ratios.fixedBatchTotalVsOneShot },
    { name: "trickle", figures: s.trickle, ratio: report.ratios.trickleTotalVsOneShot },
  ];
  const m = report.machine;
  const lines = [
    "",
    `## Benchmark: ${formatCount(report.dataset.transmissions)} transmissions, ${formatCount(report.dataset.observations)} observations (${(report.dataset.bytes / 1024 ** 2).toFixed(0)} MB, ${formatCount(report.config.rowsTotal.trickle ?? 0)} rows to backfill)`,
    "",
    `Machine: ${m.cpus} × ${m.model}, ${m.memGb} GB RAM, Node ${m.node}, ${m.platform}; load average ${m.loadavg.join(" / ")} at the start, ${m.loadavgEnd.join(" / ")} at the end (free memory ${(freemem() / 1024 ** 3).toFixed(1)} GB). Load in every phase: ingest ${report.config.ingestRate} messages/s, /api/healthz and /api/perf each polled every ${report.config.probeMs} ms.`,
    "",
    markdownTable(rows),
    "",
    goalsTable(report.goals),
    "",
  ];
  const byRound = report.config.trickleVsOneShotByRound;
  if (byRound.length > 1) {
    const sorted = [...byRound].sort((a, b) => a - b);
    lines.push(
      `trickle / oneShot per round: ${byRound.map((r) => fmt(r, 2)).join(", ")} (median ${fmt(sorted[Math.floor((sorted.length - 1) / 2)], 2)}, spread ${fmt(sorted[0], 2)}–${fmt(sorted.at(-1), 2)})`,
      ...report.config.trickleRounds.map(
        (r, i) =>
          `  round ${i + 1}: writer p99 ${fmt(r.writerP99Ms, 1)} / max ${fmt(r.writerMaxMs, 1)} ms, ${r.writerErrors} errors · step p99 ${fmt(r.stepP99Ms, 1)} / max ${fmt(r.stepMaxMs, 1)} ms · lock wait p99 ${fmt(r.lockWaitP99Ms, 1)} ms, ${fmt(r.lockWaitTotalMs / 1000, 2)} s in all · healthz p99 ${fmt(r.healthzP99Ms, 1)} ms · RSS ${fmt(r.rssMb, 0)} MB · ETA point ±25 % ${r.etaPointWithin25 === null ? "–" : `${fmt(r.etaPointWithin25 * 100, 0)} %`}, band ${r.etaBandContains === null ? "–" : `${fmt(r.etaBandContains * 100, 0)} %`}`,
      ),
      "",
    );
  }
  if (report.eta) lines.push(etaTable(report.eta), "");
  if (report.notes.length > 0) lines.push("Notes:", ...report.notes.map((n) => `- ${n}`), "");
  lines.push(`JSON: ${relativeToRepo(options.json)}  chart: ${relativeToRepo(options.chart)}`, "");
  return lines.join("\n");
}

function relativeToRepo(path: string): string {
  return path.startsWith(`${REPO}/`) ? path.slice(REPO.length + 1) : path;
}

async function main(): Promise<void> {
  let options: BenchOptions | "help";
  try {
    options = parseBenchArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (options === "help") {
    process.stdout.write(USAGE);
    return;
  }
  const report = await runBench(options);
  process.stdout.write(printReport(report, options));
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(REPO, "bench", "main.ts")) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
