/**
 * The benchmark's figures: percentiles, the per-scenario summary (the `S` shape of issue 5), the goals and the
 * markdown table. Pure functions over recorded samples, so they are testable without running anything.
 */

/** One HTTP request of the prober: start time (epoch ms), latency, HTTP status (0 = no answer). */
export interface HttpSample {
  readonly at: number;
  readonly ms: number;
  readonly status: number;
}

/** One ingest message (insert an observation, bump its transmission's `last_seen`). */
export interface IngestSample {
  /** The message's intended start (epoch ms). */
  readonly at: number;
  /** From the intended start to the end of its last statement. */
  readonly ms: number;
  /** `ok`, `busy` (SQLITE_BUSY after the 5 s busy timeout) or `error` (anything else). */
  readonly outcome: "ok" | "busy" | "error";
}

/** One backfill step (write transaction): when it ended (epoch ms), how long it took, where in the key range. */
export interface StepSample {
  readonly endAt: number;
  readonly ms: number;
  /** Candidate rows this step processed. */
  readonly rows: number;
  /** Rows processed by the run once this step committed. */
  readonly rowsProcessed: number;
  /** How long trickle's step waited for the write lock before it held it (local files); absent for the loop. */
  readonly lockWaitMs?: number;
}

export interface Percentiles {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

/** The per-scenario record of issue 5. */
export interface ScenarioFigures {
  readonly totalMs: number;
  readonly steps: number;
  readonly stepMs: Percentiles;
  readonly ingest: {
    readonly count: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly maxMs: number;
    readonly busyErrors: number;
    /** Messages that failed with anything but SQLITE_BUSY. */
    readonly otherErrors: number;
  };
  readonly http: { readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number };
  /** Peak RSS of the serving process, MB; null where /proc is not available. */
  readonly rssMb: number | null;
  /** Step time over the first and the last 10 % of the key range (see `decileStepMs`); null for one step. */
  readonly firstDecileStepMs: number | null;
  readonly lastDecileStepMs: number | null;
}

/** Nearest-rank percentile of `values` (q in 0..1); 0 for no values. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { p50: 0, p95: 0, p99: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1]!;
  return { p50: round(at(0.5)), p95: round(at(0.95)), p99: round(at(0.99)), max: round(sorted.at(-1)!) };
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export interface Window {
  readonly start: number;
  readonly end: number;
}

const within = (w: Window) => (s: { at: number }) => s.at >= w.start && s.at <= w.end;

export function httpFigures(samples: readonly HttpSample[], window: Window): ScenarioFigures["http"] {
  const ms = samples.filter(within(window)).map((s) => s.ms);
  const p = percentiles(ms);
  return { p50Ms: p.p50, p99Ms: p.p99, maxMs: p.max };
}

export function ingestFigures(samples: readonly IngestSample[], window: Window): ScenarioFigures["ingest"] {
  const inWindow = samples.filter(within(window));
  const p = percentiles(inWindow.map((s) => s.ms));
  return {
    count: inWindow.length,
    p50Ms: p.p50,
    p99Ms: p.p99,
    maxMs: p.max,
    busyErrors: inWindow.filter((s) => s.outcome === "busy").length,
    otherErrors: inWindow.filter((s) => s.outcome === "error").length,
  };
}

/**
 * Step time at the start and at the end of the key range: the steps that began in the first 10 % of the run's
 * rows and those that ended in the last 10 %, each expressed as the time per row there times the run's mean
 * rows per step. With a fixed batch size this is the plain mean step duration; with an adaptive one it does not
 * compare the small ramp-up steps of a run's start with full-size steps, only what a step costs at each end —
 * which is what "per-step cost is O(batch), not O(table)" is about.
 */
export function decileStepMs(
  steps: readonly StepSample[],
  rowsTotal: number,
): { first: number | null; last: number | null; firstRaw: number | null; lastRaw: number | null } {
  const none = { first: null, last: null, firstRaw: null, lastRaw: null };
  if (steps.length < 2 || rowsTotal <= 0) return none;
  const totalRows = steps.reduce((sum, s) => sum + s.rows, 0);
  const meanRows = totalRows / steps.length;
  const first = steps.filter((s) => s.rowsProcessed - s.rows < 0.1 * rowsTotal);
  const last = steps.filter((s) => s.rowsProcessed > 0.9 * rowsTotal);
  const scaled = (group: readonly StepSample[]) => {
    const rows = group.reduce((sum, s) => sum + s.rows, 0);
    const ms = group.reduce((sum, s) => sum + s.ms, 0);
    return rows > 0 ? round((ms / rows) * meanRows) : null;
  };
  const mean = (group: readonly StepSample[]) =>
    group.length > 0 ? round(group.reduce((sum, s) => sum + s.ms, 0) / group.length) : null;
  return { first: scaled(first), last: scaled(last), firstRaw: mean(first), lastRaw: mean(last) };
}

// ---------------------------------------------------------------------------------------------------------
// ETA accuracy

/** What trickle showed at one moment of its run: progress and its ETA (point and p10–p90 band). */
export interface EtaSample {
  readonly at: number;
  readonly done: number;
  readonly total: number;
  readonly etaSeconds: number | null;
  readonly lowSeconds: number | null;
  /** null: the band's slow end is unbounded. */
  readonly highSeconds: number | null;
  /** The run's read-only walk at that moment ("counting", "verifying"); null during the data walk. */
  readonly phase?: string | null;
}

export const ETA_CHECKPOINTS = [0.1, 0.25, 0.5, 0.75] as const;

export interface EtaFigures {
  /** At 10, 25, 50 and 75 % progress: the first sample at or past it, against the time that was really left. */
  readonly checkpoints: readonly {
    readonly progress: number;
    readonly etaSeconds: number | null;
    readonly lowSeconds: number | null;
    readonly highSeconds: number | null;
    readonly actualSeconds: number;
  }[];
  /** Samples from 10 % progress on (the run's end excluded). */
  readonly samples: number;
  /** Share of them whose point ETA was within ±25 % of the time left. */
  readonly pointWithin25: number;
  /** Share of them whose band contained the time left. */
  readonly bandContains: number;
}

/** How the ETAs trickle showed compare with the time that was really left until `endAt`. */
export function etaFigures(samples: readonly EtaSample[], endAt: number): EtaFigures | null {
  const judged = samples.filter((s) => s.total > 0 && s.done / s.total >= 0.1 && s.at < endAt - 1);
  if (judged.length === 0) return null;
  const left = (s: EtaSample) => (endAt - s.at) / 1000;
  const within = (s: EtaSample) =>
    s.etaSeconds !== null && Math.abs(s.etaSeconds - left(s)) <= 0.25 * left(s);
  const contains = (s: EtaSample) =>
    s.lowSeconds !== null && s.lowSeconds <= left(s) && (s.highSeconds === null || left(s) <= s.highSeconds);
  const checkpoints = ETA_CHECKPOINTS.flatMap((progress) => {
    const s = judged.find((x) => x.done / x.total >= progress);
    return s
      ? [
          {
            progress,
            etaSeconds: s.etaSeconds === null ? null : round(s.etaSeconds, 1),
            lowSeconds: s.lowSeconds === null ? null : round(s.lowSeconds, 1),
            highSeconds: s.highSeconds === null ? null : round(s.highSeconds, 1),
            actualSeconds: round(left(s), 1),
          },
        ]
      : [];
  });
  return {
    checkpoints,
    samples: judged.length,
    pointWithin25: round(judged.filter(within).length / judged.length, 3),
    bandContains: round(judged.filter(contains).length / judged.length, 3),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Goals

export interface Goal {
  readonly goal: string;
  readonly measured: string;
  /** null: not applicable to this run (shown, but it neither passes nor fails). */
  readonly pass: boolean | null;
}

export interface GoalInputs {
  readonly trickle: ScenarioFigures;
  readonly oneShot: ScenarioFigures;
  readonly idle: { readonly httpP99Ms: number; readonly ingestP99Ms: number };
  readonly scale: "seed" | "medium" | "large" | "custom";
  /** Ingest messages per second (0: an idle database). */
  readonly ingestRate: number;
  readonly eta: EtaFigures | null;
}

/** The performance issue's goals for trickle with its defaults. */
export function evaluateGoals(input: GoalInputs): Goal[] {
  const { trickle, oneShot, idle } = input;
  const ratio = oneShot.totalMs > 0 ? trickle.totalMs / oneShot.totalMs : Number.POSITIVE_INFINITY;
  const total = `${fmt(trickle.totalMs / 1000, 2)} s = ${fmt(ratio, 2)} × oneShot (${fmt(oneShot.totalMs / 1000, 2)} s)`;
  const ingest = input.ingestRate > 0;
  const writer = trickle.ingest;
  const eta = input.eta;
  const totalGoal: Goal = !ingest
    ? { goal: "total ≤ 1.1 × oneShot (no ingest)", measured: total, pass: ratio <= 1.1 }
    : input.scale === "seed"
      ? {
          goal: "total ≤ oneShot + 0.3 s (seed scale)",
          measured: total,
          pass: trickle.totalMs <= oneShot.totalMs + 300,
        }
      : { goal: "total ≤ 1.25 × oneShot", measured: total, pass: ratio <= 1.25 };
  return [
    totalGoal,
    {
      goal: "step p99 ≤ 75 ms",
      measured: `${fmt(trickle.stepMs.p99, 1)} ms`,
      pass: trickle.stepMs.p99 <= 75,
    },
    {
      goal: "step max ≤ 150 ms",
      measured: `${fmt(trickle.stepMs.max, 1)} ms`,
      pass: trickle.stepMs.max <= 150,
    },
    {
      goal: "writer p99 ≤ 75 ms (from each write's intended start)",
      measured: ingest ? `${fmt(writer.p99Ms, 1)} ms (idle ${fmt(idle.ingestP99Ms, 1)} ms)` : "no ingest",
      pass: ingest ? writer.p99Ms <= 75 : null,
    },
    {
      goal: "writer max ≤ 150 ms",
      measured: ingest ? `${fmt(writer.maxMs, 1)} ms` : "no ingest",
      pass: ingest ? writer.maxMs <= 150 : null,
    },
    {
      goal: "zero writer errors (SQLITE_BUSY or other)",
      measured: ingest
        ? `${writer.busyErrors} busy, ${writer.otherErrors} other of ${writer.count}`
        : "no ingest",
      pass: ingest ? writer.busyErrors + writer.otherErrors === 0 : null,
    },
    {
      goal: `/api/healthz p99 ≤ idle p99 + 5 ms (${fmt(idle.httpP99Ms + 5, 1)} ms)`,
      measured: `${fmt(trickle.http.p99Ms, 1)} ms (idle ${fmt(idle.httpP99Ms, 1)} ms)`,
      pass: trickle.http.p99Ms <= idle.httpP99Ms + 5,
    },
    {
      goal: "last-decile step time ≤ 1.2 × first-decile",
      measured:
        trickle.firstDecileStepMs === null || trickle.lastDecileStepMs === null
          ? "not enough steps"
          : `${fmt(trickle.lastDecileStepMs, 1)} ms vs ${fmt(trickle.firstDecileStepMs, 1)} ms (${fmt(trickle.lastDecileStepMs / trickle.firstDecileStepMs, 2)}×)`,
      pass:
        trickle.firstDecileStepMs === null || trickle.lastDecileStepMs === null
          ? false
          : trickle.lastDecileStepMs <= 1.2 * trickle.firstDecileStepMs,
    },
    {
      goal: "peak RSS ≤ 200 MB (at --scale large)",
      measured: trickle.rssMb === null ? "not measured" : `${fmt(trickle.rssMb, 0)} MB`,
      pass: trickle.rssMb === null ? false : input.scale === "large" ? trickle.rssMb <= 200 : null,
    },
    {
      goal: "ETA at 10, 25, 50, 75 %: point within ±25 % of the time left",
      measured: eta
        ? eta.checkpoints
            .map((c) => `${c.progress * 100} %: ${fmt(c.etaSeconds, 1)} s vs ${fmt(c.actualSeconds, 1)} s`)
            .join("; ")
        : "no samples",
      pass: eta
        ? eta.checkpoints.length === ETA_CHECKPOINTS.length &&
          eta.checkpoints.every(
            (c) =>
              c.etaSeconds !== null && Math.abs(c.etaSeconds - c.actualSeconds) <= 0.25 * c.actualSeconds,
          )
        : null,
    },
    {
      goal: "ETA band contains the time left in ≥ 80 % of samples",
      measured: eta ? `${fmt(eta.bandContains * 100, 0)} % of ${eta.samples} samples` : "no samples",
      pass: eta ? eta.bandContains >= 0.8 : null,
    },
  ];
}

// ---------------------------------------------------------------------------------------------------------
// Output

export function fmt(value: number | null | undefined, digits: number): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toFixed(digits);
}

export interface TableRow {
  readonly name: string;
  readonly figures: ScenarioFigures;
  /** Total time relative to oneShot; null for the idle row. */
  readonly ratio: number | null;
  readonly idle?: boolean;
}

/** One markdown row per scenario (idle first). */
export function markdownTable(rows: readonly TableRow[]): string {
  const header = [
    "scenario",
    "total s",
    "× oneShot",
    "steps",
    "step ms p50 / p95 / p99 / max",
    "ingest ms p50 / p99 / max",
    "busy",
    "healthz ms p50 / p99 / max",
    "RSS MB",
    "step ms 1st → last decile",
  ];
  const lines = [
    `| ${header.join(" | ")} |`,
    `|${header.map((_h, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
  ];
  for (const { name, figures: f, ratio, idle } of rows) {
    const steps = idle
      ? ["–", "–", "–"]
      : [fmt(f.totalMs / 1000, 2), ratio === null ? "–" : `${fmt(ratio, 2)}×`, String(f.steps)];
    lines.push(
      `| ${[
        name,
        ...steps,
        idle
          ? "–"
          : `${fmt(f.stepMs.p50, 1)} / ${fmt(f.stepMs.p95, 1)} / ${fmt(f.stepMs.p99, 1)} / ${fmt(f.stepMs.max, 1)}`,
        `${fmt(f.ingest.p50Ms, 1)} / ${fmt(f.ingest.p99Ms, 1)} / ${fmt(f.ingest.maxMs, 1)}`,
        `${f.ingest.busyErrors + f.ingest.otherErrors} / ${f.ingest.count}`,
        `${fmt(f.http.p50Ms, 1)} / ${fmt(f.http.p99Ms, 1)} / ${fmt(f.http.maxMs, 1)}`,
        fmt(f.rssMb, 0),
        f.firstDecileStepMs === null ? "–" : `${fmt(f.firstDecileStepMs, 1)} → ${fmt(f.lastDecileStepMs, 1)}`,
      ].join(" | ")} |`,
    );
  }
  return lines.join("\n");
}

export function goalsTable(goals: readonly Goal[]): string {
  const lines = ["| goal (trickle) | measured | result |", "|---|---|---|"];
  for (const g of goals) {
    lines.push(`| ${g.goal} | ${g.measured} | ${g.pass === null ? "n/a" : g.pass ? "PASS" : "FAIL"} |`);
  }
  return lines.join("\n");
}

/** The ETA trickle showed at 10, 25, 50 and 75 % progress against the time that was really left. */
export function etaTable(eta: EtaFigures): string {
  const lines = ["| progress | ETA shown (point) | band (p10–p90) | really left |", "|---:|---:|---:|---:|"];
  for (const c of eta.checkpoints) {
    const band =
      c.lowSeconds === null
        ? "–"
        : `${fmt(c.lowSeconds, 1)}–${c.highSeconds === null ? "∞" : fmt(c.highSeconds, 1)} s`;
    lines.push(
      `| ${c.progress * 100} % | ${fmt(c.etaSeconds, 1)} s | ${band} | ${fmt(c.actualSeconds, 1)} s |`,
    );
  }
  lines.push(
    "",
    `From 10 % on, ${eta.samples} samples: the point was within ±25 % of the time left in ${fmt(eta.pointWithin25 * 100, 0)} %, the band contained it in ${fmt(eta.bandContains * 100, 0)} %.`,
  );
  return lines.join("\n");
}
