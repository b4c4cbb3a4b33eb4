/**
 * The fleet benchmark (`npm run bench:fleet`, bench/fleet.ts): a tiny end-to-end run — real tenant files, the real
 * `trickle fleet run` CLI as a child process, application writers on sampled tenants — proving it writes the
 * throughput and writer figures, checks every tenant against the one-shot and draws the chart; plus the pieces it
 * is built from, the correctness check first (it must be able to fail). No assertion is about how fast anything is.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { checkTenant, oneShotColumn, parseFleetBenchArgs, sampleTenants } from "../bench/fleet.ts";
import { REPO } from "../bench/procs.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  ONE_SHOT_SQL,
  prng,
  sparseTransmissions,
  tempDb,
} from "./helpers/db.ts";

const number = z.number().finite();
const Writer = z.strictObject({
  count: z.number().int(),
  p50Ms: number,
  p99Ms: number,
  maxMs: number,
  busyErrors: z.number().int().min(0),
  otherErrors: z.number().int().min(0),
});
const Run = z.object({
  concurrency: z.number().int().positive(),
  wallMs: number.positive(),
  startupMs: number.min(0),
  tenantsPerSecond: number.positive(),
  rowsProcessed: z.number().int().positive(),
  rowsPerSecond: number.positive(),
  exitCode: z.literal(0),
  summary: z.object({ total: z.literal(6), done: z.literal(6) }).passthrough(),
  tenantBackfillMs: z.strictObject({ p50: number, p95: number, p99: number, max: number }),
  writer: Writer,
  writerStartup: Writer,
  writerIdle: Writer,
  sampled: z.array(
    z.object({
      tenant: z.number().int().positive(),
      baseline: Writer,
      startup: Writer,
      run: Writer,
      ownBackfill: Writer.extend({ windowMs: number.nullable() }),
      pass: z.boolean(),
    }),
  ),
  writerGoal: z.boolean(),
  mismatched: z.literal(0),
});
const Report = z.object({
  fleet: z.object({
    tenants: z.literal(6),
    distinct: z.literal(3),
    transmissions: z.literal(60),
    observations: z.literal(300),
    bytesPerTenant: number.positive(),
  }),
  machine: z.object({
    cpus: z.number().int().positive(),
    model: z.string(),
    loadavg: z.array(number).length(3),
    loadavgEnd: z.array(number).length(3),
  }),
  config: z.object({ concurrency: z.array(z.number()), writers: z.literal(2), ingestRate: z.literal(50) }),
  goal: z.strictObject({ p99Ms: z.literal(75), maxMs: z.literal(150), errors: z.literal(0) }),
  results: z
    .array(
      z.object({
        concurrency: z.number().int(),
        median: Run,
        tenantsPerSecond: z.strictObject({ median: number, min: number, max: number }),
        rowsPerSecond: z.strictObject({ median: number, min: number, max: number }),
        writerGoalRuns: z.number().int().min(0),
        runs: z.array(Run).length(1),
      }),
    )
    .length(2),
  correct: z.literal(true),
  writerGoal: z.boolean(),
  notes: z.array(z.string()),
});

describe("npm run bench:fleet (tiny end-to-end run)", () => {
  const dir = mkdtempSync(join(tmpdir(), "trickle-bench-fleet-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs the fleet CLI at each concurrency, measures throughput and the writers, and checks every tenant", () => {
    const json = join(dir, "out.json");
    const chart = join(dir, "chart.svg");
    const run = spawnSync(
      join(REPO, "node_modules", ".bin", "tsx"),
      [
        "bench/fleet.ts",
        ...["--tenants", "6", "--concurrency", "1,2", "--distinct", "3", "--transmissions", "60"],
        ...["--observations", "300", "--writers", "2", "--ingest-rate", "50", "--baseline-ms", "200"],
        ...["--cooldown-ms", "100", "--cache-dir", join(dir, "cache"), "--json", json, "--chart", chart],
      ],
      // A guard against a hang, not a speed requirement: on a loaded machine the tiny run may take minutes.
      { cwd: REPO, encoding: "utf8", timeout: 270_000 },
    );
    expect(run.status, `stderr:\n${run.stderr}\nstdout:\n${run.stdout}`).toBe(0);

    const report = Report.parse(JSON.parse(readFileSync(json, "utf8")));
    expect(report.results.map((r) => r.concurrency)).toEqual([1, 2]);
    for (const { median } of report.results) {
      // Every tenant's rows were counted, and the writers — on the first and the last tenant — wrote while the
      // fleet ran, and while their own tenant was backfilled.
      expect(median.rowsProcessed).toBeGreaterThanOrEqual(6);
      expect(median.sampled.map((s) => s.tenant)).toEqual([1, 6]);
      for (const s of median.sampled) {
        expect(s.run.count).toBeGreaterThan(0);
        expect(s.ownBackfill.windowMs).not.toBeNull();
      }
      expect(median.writer.count).toBe(median.sampled.reduce((n, s) => n + s.run.count, 0));
      expect(median.writerGoal).toBe(median.sampled.every((s) => s.pass));
    }
    expect(
      report.notes.filter((n) => /differs from the one-shot|exited|is (failed|unreachable)/.test(n)),
    ).toEqual([]);

    expect(run.stdout).toContain("| concurrency | wall s (start-up) | tenants/s | rows/s |");
    expect(run.stdout).toMatch(/\| 1 \| [\d.]+ \([\d.]+\) \| [\d.]+ \| \d+ \|.*\| (PASS|FAIL) \| yes \|/);
    expect(run.stdout).toContain("Correctness: every tenant of every run equals the one-shot statement");
    // Progress on stderr: a bar with rate and ETA while building and running (throttled to one a second outside a
    // terminal), and a line for each finished run.
    expect(run.stderr).toMatch(/\[[#-]{24}\] \d+ \/ \d+ (databases|tenants) {2}\S+\/s {2}ETA /);
    expect(run.stderr).toMatch(
      /^concurrency 2: [\d.]+ s, [\d.]+ tenants\/s, .* every tenant equals the one-shot$/m,
    );
    const svg = readFileSync(chart, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    for (const c of [1, 2]) expect(svg).toContain(`>concurrency ${c}</tspan>`);
    expect(svg).toContain("75 ms writer p99 goal");
    expect(svg).not.toContain("GET /api/healthz latency"); // no HTTP series in this benchmark
  }, 300_000);
});

describe("bench:fleet pieces", () => {
  it("finds a tenant that differs from the one-shot, and accepts the writer's newer rows", async () => {
    const db = tempDb();
    try {
      const client = db.open();
      await createCoreScopeSchema(client);
      await insertCoreScopeRows(client, sparseTransmissions(prng(3), 30));
      await client.execute("PRAGMA wal_checkpoint(TRUNCATE)"); // the copy below takes the main file only
      const expected = await oneShotColumn(db.path, join(db.dir, "scratch.db"));
      expect(expected.ids.length).toBe(30);
      // Not backfilled yet: the first row still at 0 that the one-shot sets.
      const before = await checkTenant(db.url, expected);
      expect(before.mismatch).toMatch(/^transmission \d+: last_seen 0, expected \d+$/);
      expect(before.window).toBeNull(); // no `_async_migrations` row: never run
      await client.execute(ONE_SHOT_SQL);
      expect((await checkTenant(db.url, expected)).mismatch).toBeNull();
      // A writer's observation and its bump of last_seen: newer than the one-shot's value, and expected.
      const id = expected.ids[0]!;
      await client.batch(
        [
          {
            sql: `INSERT INTO observations (transmission_id, timestamp, path_json) VALUES (?, 9000000000, '["bench","1"]')`,
            args: [id],
          },
          { sql: "UPDATE transmissions SET last_seen = 9000000000 WHERE id = ?", args: [id] },
        ],
        "write",
      );
      expect((await checkTenant(db.url, expected)).mismatch).toBeNull();
      // The same value without the writer's observation behind it is wrong.
      await client.execute({
        sql: "UPDATE transmissions SET last_seen = 9000000001 WHERE id = ?",
        args: [id],
      });
      expect((await checkTenant(db.url, expected)).mismatch).toMatch(
        /last_seen 9000000001, expected 9000000000/,
      );
      await client.execute({ sql: "DELETE FROM observations WHERE transmission_id = ?", args: [id] });
      await client.execute({ sql: "DELETE FROM transmissions WHERE id = ?", args: [id] });
      expect((await checkTenant(db.url, expected)).mismatch).toBe("29 transmissions, expected 30");
    } finally {
      db.cleanup();
    }
  });

  it("samples tenants evenly from the first to the last", () => {
    expect(sampleTenants(1000, 3)).toEqual([0, 500, 999]);
    expect(sampleTenants(6, 2)).toEqual([0, 5]);
    expect(sampleTenants(5, 1)).toEqual([0]);
    expect(sampleTenants(2, 5)).toEqual([0, 1]);
    expect(sampleTenants(10, 0)).toEqual([]);
  });

  it("rejects bad options with a message naming the option", () => {
    expect(parseFleetBenchArgs([])).toMatchObject({
      tenants: 1000,
      concurrency: [1, 4, 16],
      repeat: 1,
      transmissions: 200,
      observations: 1000,
      distinct: 100,
      writers: 3,
      ingestRate: 200,
    });
    expect(parseFleetBenchArgs(["--tenants", "6", "--concurrency", "2, 1,2"])).toMatchObject({
      tenants: 6,
      concurrency: [2, 1],
      distinct: 6, // never more databases than tenants
      writers: 3,
    });
    expect(() => parseFleetBenchArgs(["--concurrency", "1,x"])).toThrow(
      /--concurrency must be comma-separated/,
    );
    expect(() => parseFleetBenchArgs(["--concurrency", "0"])).toThrow(
      /--concurrency values must be between 1/,
    );
    expect(() => parseFleetBenchArgs(["--tenants", "1e3"])).toThrow(/--tenants must be a whole number/);
    expect(() => parseFleetBenchArgs(["--repeat", "0"])).toThrow(/--repeat must be between 1 and 100/);
    expect(() => parseFleetBenchArgs(["--legacy-fraction", "2"])).toThrow(/--legacy-fraction/);
    expect(() => parseFleetBenchArgs(["--bogus"])).toThrow(/bogus/);
  });
});
