/**
 * The benchmark harness (`npm run bench`): a tiny end-to-end run — real database file, the real service as a
 * child process, the ingest and prober children — proving it writes the JSON of issue 5 and a chart, plus the
 * pure figures it is built from. No assertion here is about how fast anything is.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { parseBenchArgs } from "../bench/main.ts";
import { REPO } from "../bench/procs.ts";
import {
  decileStepMs,
  type EtaSample,
  etaFigures,
  evaluateGoals,
  percentile,
  percentiles,
  type ScenarioFigures,
} from "../bench/stats.ts";

const number = z.number().finite();
const nullableNumber = number.nullable();
const Scenario = z.strictObject({
  totalMs: number.positive(),
  steps: z.number().int().positive(),
  stepMs: z.strictObject({ p50: number, p95: number, p99: number, max: number }),
  ingest: z.strictObject({
    count: z.number().int(),
    p50Ms: number,
    p99Ms: number,
    maxMs: number,
    busyErrors: z.number().int().min(0),
    otherErrors: z.number().int().min(0),
  }),
  http: z.strictObject({ p50Ms: number, p99Ms: number, maxMs: number }),
  rssMb: nullableNumber,
  firstDecileStepMs: nullableNumber,
  lastDecileStepMs: nullableNumber,
});
const Report = z.object({
  dataset: z.object({
    transmissions: z.literal(1500),
    observations: z.literal(12_000),
    bytes: number.positive(),
  }),
  machine: z.object({
    cpus: z.number().int().positive(),
    model: z.string(),
    memGb: number.positive(),
    node: z.string().startsWith("v"),
    platform: z.string(),
    loadavg: z.array(number).length(3),
  }),
  idle: z.strictObject({ httpP99Ms: number, ingestP99Ms: number }),
  scenarios: z.strictObject({ oneShot: Scenario, fixedBatch: Scenario, trickle: Scenario }),
  ratios: z.strictObject({
    trickleTotalVsOneShot: number.positive(),
    fixedBatchTotalVsOneShot: number.positive(),
  }),
  goals: z
    .array(z.object({ goal: z.string(), measured: z.string(), pass: z.boolean().nullable() }))
    .length(11),
  eta: z
    .object({
      checkpoints: z.array(z.object({ progress: number, actualSeconds: number })),
      samples: z.number().int(),
      pointWithin25: number,
      bandContains: number,
    })
    .nullable(),
  notes: z.array(z.string()),
  config: z.object({
    idle: Scenario.omit({ totalMs: true, steps: true }).passthrough(),
    trickleRounds: z
      .array(
        z.strictObject({
          vsOneShot: number.positive(),
          writerP99Ms: number,
          writerMaxMs: number,
          writerErrors: z.number().int(),
          stepP99Ms: number.positive(),
          stepMaxMs: number.positive(),
          lockWaitP99Ms: number.nonnegative(),
          lockWaitTotalMs: number.nonnegative(),
          healthzP99Ms: number.positive(),
          rssMb: number.positive().nullable(),
          etaPointWithin25: number.nullable(),
          etaBandContains: number.nullable(),
        }),
      )
      .length(1),
  }),
});

describe("npm run bench (tiny end-to-end run)", () => {
  const dir = mkdtempSync(join(tmpdir(), "trickle-bench-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("measures idle, oneShot, fixedBatch and trickle on the same data and writes the JSON and the chart", () => {
    const json = join(dir, "out.json");
    const chart = join(dir, "chart.svg");
    const run = spawnSync(
      join(REPO, "node_modules", ".bin", "tsx"),
      [
        "bench/main.ts",
        ...["--transmissions", "1500", "--observations", "12000", "--cache-dir", join(dir, "cache")],
        ...["--json", json, "--chart", chart, "--idle-seconds", "1", "--warmup-ms", "300"],
        ...["--cooldown-ms", "200", "--repeat", "1", "--ingest-rate", "50"],
      ],
      // A guard against a hang, not a speed requirement: on a loaded machine the tiny run may take minutes.
      { cwd: REPO, encoding: "utf8", timeout: 270_000 },
    );
    expect(run.status, `stderr:\n${run.stderr}\nstdout:\n${run.stdout}`).toBe(0);

    const report = Report.parse(JSON.parse(readFileSync(json, "utf8")));
    const { oneShot, fixedBatch, trickle } = report.scenarios;
    // The one-shot statement is one step; the loop and trickle need several for 1,350 rows to backfill.
    expect(oneShot.steps).toBe(1);
    expect(oneShot.stepMs.max).toBeCloseTo(oneShot.totalMs, -1);
    expect(fixedBatch.steps).toBeGreaterThanOrEqual(2); // one batch and the empty one that ends the loop
    expect(trickle.steps).toBeGreaterThanOrEqual(2); // its first step is small
    // The load ran: ingest messages were written and the prober got answers from the service.
    expect(report.config.idle.ingest.count).toBeGreaterThan(0);
    expect(report.idle.httpP99Ms).toBeGreaterThan(0);
    expect(report.ratios.trickleTotalVsOneShot).toBeCloseTo(trickle.totalMs / oneShot.totalMs, 2);
    // One round: its figures are the reported run's.
    const [only] = report.config.trickleRounds;
    expect(only?.vsOneShot).toBeCloseTo(report.ratios.trickleTotalVsOneShot, 2);
    expect(only).toMatchObject({
      writerP99Ms: trickle.ingest.p99Ms,
      stepMaxMs: trickle.stepMs.max,
      rssMb: trickle.rssMb,
    });
    // Every backfill did its job (the harness reports leftovers as notes).
    expect(report.notes.filter((n) => n.includes("still need the backfill"))).toEqual([]);

    expect(run.stdout).toContain("| scenario | total s |");
    expect(run.stdout).toMatch(/\| total ≤ 1\.25 × oneShot \| .* \| (PASS|FAIL) \|/);
    expect(run.stdout).toMatch(
      /\| writer p99 ≤ 75 ms \(from each write's intended start\) \| .* \| (PASS|FAIL) \|/,
    );
    const svg = readFileSync(chart, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    for (const name of ["idle", "oneShot", "fixedBatch", "trickle"])
      expect(svg).toContain(`>${name}</tspan>`);
    expect(svg).toContain("GET /api/healthz latency");
  }, 300_000);
});

describe("bench figures", () => {
  it("takes nearest-rank percentiles", () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    expect(percentile(values, 0.5)).toBe(50);
    expect(percentile(values, 0.99)).toBe(99);
    expect(percentiles(values)).toEqual({ p50: 50, p95: 95, p99: 99, max: 100 });
    expect(percentiles([])).toEqual({ p50: 0, p95: 0, p99: 0, max: 0 });
  });

  it("compares what a step costs at both ends of the key range, not the ramp-up with full steps", () => {
    // 1 ms per row everywhere, but small steps first: the cost per step of mean size is the same at both ends.
    const sizes = [100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000, 1000, 500];
    let done = 0;
    const steps = sizes.map((rows, i) => {
      done += rows;
      return { endAt: i, ms: rows * 0.01, rows, rowsProcessed: done };
    });
    const even = decileStepMs(steps, done);
    expect(even.first).toBeCloseTo(even.last!, 2);
    expect(even.firstRaw!).toBeLessThan(even.lastRaw!);
    // Twice the cost per row at the end (an O(table) rescan would look like this) shows as 2×.
    const slower = steps.map((s) => (s.rowsProcessed > 0.9 * done ? { ...s, ms: s.ms * 2 } : s));
    const d = decileStepMs(slower, done);
    expect(d.last! / d.first!).toBeCloseTo(2, 2);
    expect(decileStepMs(steps.slice(0, 1), done).first).toBeNull();
  });

  it("judges the goals against the one-shot total, the issue's step bounds and the idle baseline", () => {
    const figures = (patch: Partial<ScenarioFigures>): ScenarioFigures => ({
      totalMs: 1000,
      steps: 20,
      stepMs: { p50: 50, p95: 60, p99: 70, max: 140 },
      ingest: { count: 100, p50Ms: 1, p99Ms: 60, maxMs: 80, busyErrors: 0, otherErrors: 0 },
      http: { p50Ms: 1, p99Ms: 6, maxMs: 9 },
      rssMb: 150,
      firstDecileStepMs: 50,
      lastDecileStepMs: 55,
      ...patch,
    });
    const idle = { httpP99Ms: 2, ingestP99Ms: 5 };
    const eta = (point: number, band: number) => ({
      checkpoints: [0.1, 0.25, 0.5, 0.75].map((progress) => ({
        progress,
        etaSeconds: 10 * point,
        lowSeconds: 8,
        highSeconds: 12,
        actualSeconds: 10,
      })),
      samples: 40,
      pointWithin25: 1,
      bandContains: band,
    });
    const base = {
      oneShot: figures({ totalMs: 900, steps: 1 }),
      idle,
      ingestRate: 200,
      eta: eta(1.2, 0.8),
    } as const;
    const passing = evaluateGoals({ ...base, trickle: figures({}), scale: "large" });
    expect(passing.map((g) => g.pass)).toEqual(Array(11).fill(true));
    const failing = evaluateGoals({
      ...base,
      trickle: figures({
        totalMs: 1200,
        stepMs: { p50: 50, p95: 60, p99: 80, max: 160 },
        ingest: { count: 100, p50Ms: 1, p99Ms: 76, maxMs: 151, busyErrors: 0, otherErrors: 1 },
        http: { p50Ms: 1, p99Ms: 7.5, maxMs: 9 },
        lastDecileStepMs: 61,
        rssMb: 201,
      }),
      scale: "large",
      eta: eta(1.3, 0.79),
    });
    expect(failing.map((g) => g.pass)).toEqual(Array(11).fill(false));
    // The RSS goal is defined at --scale large only; the seed scale's total goal is absolute (+ 0.3 s).
    const seed = evaluateGoals({ ...base, trickle: figures({ totalMs: 1150 }), scale: "seed" });
    expect(seed[8]?.pass).toBeNull();
    expect(seed[0]).toMatchObject({ goal: "total ≤ oneShot + 0.3 s (seed scale)", pass: true });
    // No ingest: the total must stay within 1.1×, and the writer goals do not apply.
    const quiet = evaluateGoals({
      ...base,
      ingestRate: 0,
      trickle: figures({ totalMs: 1000 }),
      scale: "medium",
    });
    expect(quiet[0]).toMatchObject({ goal: "total ≤ 1.1 × oneShot (no ingest)", pass: false });
    expect(quiet.slice(3, 6).map((g) => g.pass)).toEqual([null, null, null]);
  });

  it("compares the ETA shown with the time that was really left, from 10 % progress on", () => {
    // A run of 100 s at a steady rate: an exact point ETA, a band of ±10 %, except for a stretch where the
    // band sat too low.
    const end = 100_000;
    const samples: EtaSample[] = Array.from({ length: 101 }, (_, i) => {
      const left = (end - i * 1000) / 1000;
      const low = i >= 50 && i < 60 ? left * 0.5 : left * 0.9;
      return {
        at: i * 1000,
        done: i,
        total: 100,
        etaSeconds: left,
        lowSeconds: low,
        highSeconds: i >= 50 && i < 60 ? left * 0.8 : left * 1.1,
      };
    });
    const figures = etaFigures(samples, end)!;
    expect(figures.samples).toBe(90); // 10 % … 99 %; the sample at the very end is not judged
    expect(figures.pointWithin25).toBe(1);
    expect(figures.bandContains).toBeCloseTo(80 / 90, 3);
    expect(figures.checkpoints.map((c) => [c.progress, c.etaSeconds, c.actualSeconds])).toEqual([
      [0.1, 90, 90],
      [0.25, 75, 75],
      [0.5, 50, 50],
      [0.75, 25, 25],
    ]);
    expect(etaFigures(samples.slice(0, 5), end)).toBeNull();
  });

  it("rejects bad options with a message naming the option", () => {
    expect(() => parseBenchArgs(["--scale", "huge"])).toThrow(/--scale must be "seed", "medium" or "large"/);
    expect(() => parseBenchArgs(["--transmissions", "1e5"])).toThrow(
      /--transmissions must be a whole number/,
    );
    expect(() => parseBenchArgs(["--ingest-rate=-1"])).toThrow(/--ingest-rate must be at least 0/);
    expect(parseBenchArgs(["--ingest-rate", "0"])).toMatchObject({ ingestRate: 0 });
    expect(parseBenchArgs(["--scale", "medium"])).toMatchObject({
      scale: "medium",
      transmissions: 1_000_000,
      observations: 15_000_000,
    });
    expect(() => parseBenchArgs(["--legacy-fraction", "2"])).toThrow(/--legacy-fraction/);
    expect(() => parseBenchArgs(["--bogus"])).toThrow(/bogus/);
    const large = parseBenchArgs(["--scale", "large"]);
    expect(large).toMatchObject({
      scale: "large",
      transmissions: 1_000_000,
      observations: 20_000_000,
      repeat: 1,
    });
    expect(parseBenchArgs([])).toMatchObject({
      scale: "seed",
      transmissions: 71_000,
      repeat: 3,
      trickleEnv: {},
    });
    expect(() => parseBenchArgs(["--trickle-env", "PORT=1"])).toThrow(
      /--trickle-env must be TRICKLE_NAME=VALUE/,
    );
    expect(
      parseBenchArgs(["--trickle-env", "TRICKLE_YIELD_MS=5", "--trickle-env", "TRICKLE_STEP_TARGET_MS=40"]),
    ).toMatchObject({ trickleEnv: { TRICKLE_YIELD_MS: "5", TRICKLE_STEP_TARGET_MS: "40" } });
  });
});
