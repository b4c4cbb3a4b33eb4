/**
 * `npm run bench:fleet -- [--tenants N] [--concurrency 1,4,16] [--repeat R] [--writers K] [--json FILE] …`
 *
 * One backfill across a fleet of small CoreScope tenant databases, run the way an operator runs it: the real CLI,
 * `trickle fleet run --databases FILE --until-done --concurrency C`, as a child process with trickle's defaults
 * (no TRICKLE_* setting), once per concurrency and round, each time on fresh copies of the same tenants. Measures:
 *
 * - throughput: the command's wall time (process start to exit, as the operator waits for it) → tenants/s, and
 *   rows/s over every tenant's `rows_processed`; also each tenant's own backfill time (`started_at` → `ended_at`);
 * - the writer-latency goal of the performance issue (p99 ≤ 75 ms, max ≤ 150 ms, no error) for an application
 *   writer on the tenants: bench/ingest-child.ts (CoreScope's hot path, SQLite's standard busy handler, latency
 *   from each write's intended start), one per sampled tenant;
 * - correctness: every tenant's `last_seen` column equals the seed's one-shot statement applied to a copy of its
 *   original database (on a sampled tenant, rows the writer bumped later keep the newer value).
 *
 * Writers: K writers (default 3) pinned on K tenants spread evenly over the fleet's order — the canary (the first
 * tenant, which runs alone), one in the middle, the last — from before the fleet run starts until after it ends.
 * A writer that follows the backfill from tenant to tenant cannot be measured honestly: a tenant's backfill takes
 * about a tenth of a second, a writer on a file it has not touched yet needs a warm-up of a second or more before
 * its latencies mean anything (see ingest-child.ts), and the fleet runner does not announce when it starts a
 * tenant. Pinned writers feel both things a tenant's application feels during a fleet run: the lock of its own
 * tenant's backfill (the samples within that tenant's `started_at` … `ended_at`, ± 250 ms, shown on their own)
 * and the machine-wide load of every other tenant's backfill. The goal is judged on all samples from the fleet's
 * first wave to its exit, the stricter of the two. Two windows are reported on their own: before the command
 * starts (the writer alone: the machine's noise floor) and the command's start-up before its first wave (Node
 * loading the CLI through tsx's TypeScript loader, as `npm run trickle` does: seconds of CPU on a small machine,
 * which compiled JavaScript — how production runs it — mostly does not spend; it is not backfill work).
 *
 * Tenants: `--distinct D` databases (default 100, different generator seeds) are built once into the cache
 * (`.bench/fleet-t<T>-o<O>-l<L>/`, by bench/dataset.ts, so a later run reuses them) and tenant i is a copy of
 * database i mod D: a 1,000-tenant fleet then builds in well under a minute. The one-shot's result of each
 * database is computed once per bench run on a scratch copy.
 */
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { type Client, createClient } from "@libsql/client";
import { formatCount, formatDuration, formatRate, ProgressRenderer, renderBar } from "../src/cli/progress.ts";
import { StateStore } from "../src/engine/state-store.ts";
import { txLastSeenBackfillV1 } from "../src/migrations/builtin/tx-last-seen-backfill.ts";
import { ONE_SHOT_SQL } from "../src/seed/corescope.ts";
import { type ChartPhase, renderChart } from "./chart.ts";
import { copyDataset, type Dataset, ensureDataset, removeDatabase } from "./dataset.ts";
import { loadavgNow, type MachineInfo, machineInfo } from "./machine.ts";
import { JsonChild, nowMs, REPO, sleep } from "./procs.ts";
import { decodeIngest } from "./scenarios.ts";
import {
  fmt,
  type IngestSample,
  ingestFigures,
  type Percentiles,
  percentiles,
  round,
  type ScenarioFigures,
  type Window,
} from "./stats.ts";

/** The writer goal of the performance issue (bench/stats.ts `evaluateGoals` judges the same numbers). */
export const WRITER_GOAL = { p99Ms: 75, maxMs: 150, errors: 0 } as const;
/** Around a tenant's `started_at` … `ended_at`: its runner also opens it, prepares it and reads its status. */
const OWN_WINDOW_MARGIN_MS = 250;
/** Marks the writer's observations (ingest-child.ts writes paths `["bench","<sequence>"]`). */
const WRITER_PATH_PREFIX = '["bench",';

const USAGE = `usage: npm run bench:fleet -- [options]

  --tenants N            tenant databases in the fleet (default 1000)
  --concurrency LIST     comma-separated --concurrency values of trickle fleet run (default 1,4,16)
  --repeat R             runs per concurrency, interleaved; the median run is reported with the
                         spread (default 1)
  --transmissions T      transmissions per tenant (default 200)
  --observations O       observations per tenant (default 1000)
  --legacy-fraction F    fraction of transmissions left at last_seen = 0 (default 0.9)
  --distinct D           distinct tenant databases built (different seeds); tenant i is a copy of
                         database i mod D (default 100)
  --seed S               seed of the first database (default 1)
  --writers K            tenants with an application writer, spread evenly over the fleet (default 3;
                         0: no writer)
  --ingest-rate N        writer messages per second, each an insert and an update (default 200)
  --baseline-ms N        writer samples before the fleet run starts: the idle baseline (default 2000)
  --cooldown-ms N        writer samples after it ends (default 500)
  --timeout-seconds N    a fleet run that takes longer is an error (default 3600)
  --json FILE            where to write the figures (default docs/bench-fleet.json)
  --chart FILE           where to draw the SVG chart (default docs/bench-chart-fleet.svg)
  --cache-dir DIR        where tenant databases are built and copied (default .bench)
`;

export interface FleetBenchOptions {
  readonly tenants: number;
  readonly concurrency: readonly number[];
  readonly repeat: number;
  readonly transmissions: number;
  readonly observations: number;
  readonly legacyFraction: number;
  readonly distinct: number;
  readonly seed: number;
  readonly writers: number;
  readonly ingestRate: number;
  readonly baselineMs: number;
  readonly cooldownMs: number;
  readonly timeoutMs: number;
  readonly json: string;
  readonly chart: string;
  readonly cacheDir: string;
}

/** Parses the command line; throws an `Error` naming the bad option. */
export function parseFleetBenchArgs(argv: readonly string[]): FleetBenchOptions | "help" {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      help: { type: "boolean", short: "h" },
      tenants: { type: "string" },
      concurrency: { type: "string" },
      repeat: { type: "string" },
      transmissions: { type: "string" },
      observations: { type: "string" },
      "legacy-fraction": { type: "string" },
      distinct: { type: "string" },
      seed: { type: "string" },
      writers: { type: "string" },
      "ingest-rate": { type: "string" },
      "baseline-ms": { type: "string" },
      "cooldown-ms": { type: "string" },
      "timeout-seconds": { type: "string" },
      json: { type: "string" },
      chart: { type: "string" },
      "cache-dir": { type: "string" },
    },
  });
  if (values.help) return "help";
  const whole = (name: keyof typeof values, fallback: number, min: number, max = 1_000_000_000): number => {
    const raw = values[name];
    if (raw === undefined) return fallback;
    if (typeof raw !== "string" || !/^\d+$/.test(raw.trim()))
      throw new Error(`--${name} must be a whole number, got ${JSON.stringify(raw)}`);
    const n = Number(raw);
    if (n < min || n > max) throw new Error(`--${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
  const list = values.concurrency ?? "1,4,16";
  if (!/^\s*\d+(\s*,\s*\d+)*\s*$/.test(list))
    throw new Error(`--concurrency must be comma-separated whole numbers, got ${JSON.stringify(list)}`);
  const concurrency = [...new Set(list.split(",").map((c) => Number(c.trim())))];
  if (concurrency.some((c) => c < 1 || c > 1000))
    throw new Error(`--concurrency values must be between 1 and 1000, got ${list}`);
  const legacyRaw = values["legacy-fraction"];
  const legacyFraction = legacyRaw === undefined ? 0.9 : Number(legacyRaw);
  if (!(legacyFraction > 0 && legacyFraction <= 1))
    throw new Error(`--legacy-fraction must be a number in (0, 1], got ${JSON.stringify(legacyRaw)}`);
  const tenants = whole("tenants", 1000, 1, 100_000);
  return {
    tenants,
    concurrency,
    repeat: whole("repeat", 1, 1, 100),
    transmissions: whole("transmissions", 200, 1),
    observations: whole("observations", 1000, 0),
    legacyFraction,
    distinct: Math.min(tenants, whole("distinct", 100, 1)),
    seed: whole("seed", 1, 0),
    writers: Math.min(tenants, whole("writers", 3, 0, 64)),
    ingestRate: whole("ingest-rate", 200, 1, 5000),
    baselineMs: whole("baseline-ms", 2000, 0),
    cooldownMs: whole("cooldown-ms", 500, 0),
    timeoutMs: whole("timeout-seconds", 3600, 1) * 1000,
    json: resolve(values.json ?? "docs/bench-fleet.json"),
    chart: resolve(values.chart ?? "docs/bench-chart-fleet.svg"),
    cacheDir: resolve(values["cache-dir"] ?? ".bench"),
  };
}

type WriterFigures = ScenarioFigures["ingest"];

/** One sampled tenant's writer in one run. */
export interface SampledTenant {
  /** 1-based position in the fleet file. */
  readonly tenant: number;
  /** Before the fleet command started: the writer alone on a busy machine. */
  readonly baseline: WriterFigures;
  /** While the command loaded its code, before its first wave. */
  readonly startup: WriterFigures;
  /** From the command's first wave to its exit: what the goal is judged on. */
  readonly run: WriterFigures;
  /** Within this tenant's own backfill (± 250 ms); `windowMs` is the backfill's length. */
  readonly ownBackfill: WriterFigures & { readonly windowMs: number | null };
  readonly pass: boolean;
}

export interface FleetRun {
  readonly concurrency: number;
  readonly round: number;
  /** The fleet command's wall time, from its start to its exit. */
  readonly wallMs: number;
  /** Of which before its first wave: loading its code (tsx's loader) and the fleet file. */
  readonly startupMs: number;
  /** From the first tenant's `started_at` to the last tenant's `ended_at`. */
  readonly spanMs: number;
  readonly tenantsPerSecond: number;
  readonly rowsProcessed: number;
  readonly rowsPerSecond: number;
  readonly exitCode: number | null;
  /** The fleet command's own summary (`--json`). */
  readonly summary: Readonly<Record<string, number>>;
  /** Each tenant's backfill, `started_at` → `ended_at`. */
  readonly tenantBackfillMs: Percentiles;
  /** Every sampled tenant's writer together, from the first wave to the exit. */
  readonly writer: WriterFigures;
  /** The same while the command loaded its code, before its first wave. */
  readonly writerStartup: WriterFigures;
  /** The same before the command started: the machine's noise floor for the writers. */
  readonly writerIdle: WriterFigures;
  readonly sampled: readonly SampledTenant[];
  /** The writer goal held on every sampled tenant. */
  readonly writerGoal: boolean;
  /** Tenants whose result differs from the one-shot's (0: every tenant equals it). */
  readonly mismatched: number;
}

export interface ConcurrencyResult {
  readonly concurrency: number;
  /** The run with the median wall time: the figures the table shows. */
  readonly median: FleetRun;
  readonly tenantsPerSecond: { readonly median: number; readonly min: number; readonly max: number };
  readonly rowsPerSecond: { readonly median: number; readonly min: number; readonly max: number };
  /** Runs in which the writer goal held on every sampled tenant. */
  readonly writerGoalRuns: number;
  readonly runs: readonly FleetRun[];
}

export interface FleetBenchReport {
  readonly fleet: {
    readonly tenants: number;
    readonly distinct: number;
    readonly transmissions: number;
    readonly observations: number;
    readonly legacyFraction: number;
    readonly seed: number;
    /** Size of one tenant database (the mean of the distinct ones). */
    readonly bytesPerTenant: number;
    /** Databases this run built (0: all from the cache) and how long that took. */
    readonly built: number;
    readonly buildMs: number;
  };
  readonly machine: MachineInfo & { readonly loadavgEnd: readonly number[] };
  readonly config: {
    readonly concurrency: readonly number[];
    readonly repeat: number;
    readonly writers: number;
    readonly ingestRate: number;
    readonly baselineMs: number;
    /** The command each run ran (`FILE` and `C` filled in per run). */
    readonly command: string;
  };
  readonly goal: typeof WRITER_GOAL;
  readonly results: readonly ConcurrencyResult[];
  /** Every tenant of every run equals the one-shot, and every fleet run exited 0 with every tenant done. */
  readonly correct: boolean;
  /** The writer goal held on every sampled tenant in every run. */
  readonly writerGoal: boolean;
  readonly notes: readonly string[];
  readonly generatedAt: string;
}

// ---------------------------------------------------------------------------------------------------------
// Progress

/** One live line on stderr (redrawn on a terminal, at most once a second in a log); finished lines stay. */
class Progress {
  readonly #renderer = new ProgressRenderer(process.stderr);

  update(line: string): void {
    this.#renderer.update([line]);
  }

  /** `label [####----] done / total unit  rate  ETA`, the rate and ETA from `startedAt` (performance.now()). */
  counter(label: string, done: number, total: number, unit: string, startedAt: number): void {
    const seconds = (performance.now() - startedAt) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    this.update(
      `${label} ${renderBar(total > 0 ? done / total : 0)} ${formatCount(done)} / ${formatCount(total)} ${unit}  ${formatRate(rate)}  ETA ${formatDuration(rate > 0 ? (total - done) / rate : null)}`,
    );
  }

  done(line: string): void {
    if (this.#renderer.tty) {
      this.#renderer.update([line]);
      this.#renderer.finish();
    } else {
      this.#renderer.update([]); // drops a progress line still waiting to be printed
      process.stderr.write(`${line}\n`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Tenants and their expected results

/** `last_seen` by id, in id order. */
export interface Column {
  readonly ids: readonly bigint[];
  readonly lastSeen: readonly bigint[];
}

async function readLastSeen(client: Client): Promise<Column> {
  const rows = (await client.execute("SELECT id, last_seen FROM transmissions ORDER BY id")).rows;
  return { ids: rows.map((r) => r.id as bigint), lastSeen: rows.map((r) => r.last_seen as bigint) };
}

/**
 * The seed's one-shot statement's result on the database at `source`, applied to a copy at `scratch` (removed
 * afterwards), so that the source stays untouched.
 */
export async function oneShotColumn(source: string, scratch: string): Promise<Column> {
  removeDatabase(scratch);
  copyFileSync(source, scratch);
  const client = createClient({ url: `file:${scratch}`, intMode: "bigint" });
  try {
    await client.execute(ONE_SHOT_SQL);
    return await readLastSeen(client);
  } finally {
    client.close();
    removeDatabase(scratch);
  }
}

/** The distinct tenant databases (from the cache, built if missing) and the one-shot's result of each. */
async function prepareTenants(
  options: FleetBenchOptions,
  progress: Progress,
): Promise<{ databases: Dataset[]; oracles: Column[]; built: number; buildMs: number }> {
  const dir = join(
    options.cacheDir,
    `fleet-t${options.transmissions}-o${options.observations}-l${options.legacyFraction}`,
  );
  const databases: Dataset[] = [];
  const began = performance.now();
  let built = 0;
  for (let d = 0; d < options.distinct; d++) {
    const dataset = await ensureDataset(dir, {
      transmissions: options.transmissions,
      observations: options.observations,
      legacyFraction: options.legacyFraction,
      seed: options.seed + d,
    });
    if (dataset.built) built++;
    databases.push(dataset);
    progress.counter("build tenants", d + 1, options.distinct, "databases", began);
  }
  const buildMs = performance.now() - began;
  progress.done(
    built > 0
      ? `build tenants: ${built} of ${options.distinct} distinct databases built in ${fmt(buildMs / 1000, 1)} s (${dir})`
      : `tenants from the cache: ${options.distinct} distinct databases in ${dir}`,
  );
  // The expected result: the one-shot statement on a scratch copy of each database (the cache stays untouched).
  const scratch = join(options.cacheDir, "fleet-run", "one-shot.db");
  mkdirSync(dirname(scratch), { recursive: true });
  const oracles: Column[] = [];
  const oracleStart = performance.now();
  for (const [d, dataset] of databases.entries()) {
    oracles.push(await oneShotColumn(dataset.path, scratch));
    progress.counter("one-shot results", d + 1, databases.length, "databases", oracleStart);
  }
  progress.done(
    `one-shot results of ${databases.length} databases in ${fmt((performance.now() - oracleStart) / 1000, 1)} s`,
  );
  return { databases, oracles, built, buildMs };
}

/** `k` tenant indexes spread evenly from the first to the last. */
export function sampleTenants(tenants: number, k: number): number[] {
  if (k <= 0 || tenants <= 0) return [];
  if (k === 1) return [0];
  return [...new Set(Array.from({ length: k }, (_, j) => Math.round((j * (tenants - 1)) / (k - 1))))];
}

// ---------------------------------------------------------------------------------------------------------
// One fleet run

interface FleetCommandResult {
  /** From the command's start to its exit. */
  readonly window: Window;
  /** When it started its first wave (printed the wave's line), after loading its code and configuration. */
  readonly workStart: number;
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `trickle fleet run` as `npm run trickle` runs it (Node with tsx's loader), trickle's defaults only. */
function runFleetCommand(
  file: string,
  concurrency: number,
  timeoutMs: number,
  onTenant: (done: number) => void,
): Promise<FleetCommandResult> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("TRICKLE_") && !k.startsWith("DATABASE_")),
  );
  const args = ["fleet", "run", "--databases", file, "--until-done", "--concurrency", String(concurrency)];
  const start = nowMs();
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO, "src", "cli", "main.ts"), ...args, "--json"],
    {
      cwd: REPO,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  let pending = "";
  let workStart: number | undefined;
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000);
    // Outside a terminal the command prints a line per finished tenant, ending in "[done/total]".
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      if (workStart === undefined && /^(canary|wave \d+): /.test(line)) workStart = nowMs();
      const done = /\[(\d+)\/\d+\]\s*$/.exec(line)?.[1];
      if (done !== undefined) onTenant(Number(done));
    }
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the fleet run did not finish within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      const end = nowMs();
      resolvePromise({ window: { start, end }, workStart: workStart ?? start, code, stdout, stderr });
    });
  });
}

interface FleetJson {
  readonly summary: Record<string, number>;
  readonly stoppedBecause: string | null;
  readonly tenants: readonly {
    readonly database: string;
    readonly status: string;
    readonly detail: string | null;
    readonly migrations: readonly { readonly rowsProcessed: number | string }[];
  }[];
}

/** What one tenant holds after the run, against its expected result. */
export interface TenantCheck {
  readonly window: Window | null;
  /** Null when it equals the one-shot; otherwise the first difference. */
  readonly mismatch: string | null;
}

/**
 * Compares a tenant with the one-shot's result of its database. A row the tenant's writer observed may hold a
 * newer `last_seen` (the writer's own bump, or the backfill's MAX over the writer's observations): the newest of
 * the one-shot's value and the writer's newest observation.
 */
export async function checkTenant(url: string, expected: Column): Promise<TenantCheck> {
  const client = createClient({ url, intMode: "bigint" });
  try {
    const actual = await readLastSeen(client);
    const written = new Map<bigint, bigint>();
    const observed = await client.execute({
      sql: "SELECT transmission_id AS id, MAX(timestamp) AS ts FROM observations WHERE path_json LIKE ? GROUP BY transmission_id",
      args: [`${WRITER_PATH_PREFIX}%`],
    });
    for (const r of observed.rows) written.set(r.id as bigint, r.ts as bigint);
    let mismatch: string | null = null;
    if (actual.ids.length !== expected.ids.length) {
      mismatch = `${actual.ids.length} transmissions, expected ${expected.ids.length}`;
    } else {
      for (const [i, id] of expected.ids.entries()) {
        const oneShot = expected.lastSeen[i]!;
        const writer = written.get(id);
        const want = writer !== undefined && writer > oneShot ? writer : oneShot;
        if (actual.ids[i] !== id || actual.lastSeen[i] !== want) {
          mismatch = `transmission ${actual.ids[i]}: last_seen ${actual.lastSeen[i]}, expected ${want}`;
          break;
        }
      }
    }
    const store = new StateStore(client);
    const rows = (await store.hasState()) ? await store.list() : []; // a tenant the run never reached has none
    const state = rows.find((r) => r.name === txLastSeenBackfillV1.name);
    const window =
      state?.startedAt && state.endedAt
        ? { start: Date.parse(state.startedAt), end: Date.parse(state.endedAt) }
        : null;
    return { window, mismatch };
  } finally {
    client.close();
  }
}

interface RunRecord {
  readonly run: FleetRun;
  readonly window: Window;
  /** Every sampled tenant's writer samples together (for the chart). */
  readonly samples: readonly IngestSample[];
  readonly notes: readonly string[];
}

async function runOnce(
  options: FleetBenchOptions,
  concurrency: number,
  round: number,
  tenants: { databases: readonly Dataset[]; oracles: readonly Column[] },
  progress: Progress,
  label: string,
): Promise<RunRecord> {
  const notes: string[] = [];
  const dir = join(options.cacheDir, "fleet-run", "tenants");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const paths: string[] = [];
  const copyStart = performance.now();
  for (let i = 0; i < options.tenants; i++) {
    const path = join(dir, `tenant-${String(i + 1).padStart(String(options.tenants).length, "0")}.db`);
    copyDataset(tenants.databases[i % tenants.databases.length]!, path);
    paths.push(path);
    if (i % 50 === 49) progress.counter(`${label} copy`, i + 1, options.tenants, "tenants", copyStart);
  }
  const file = join(dir, "fleet.txt");
  writeFileSync(file, `# ${options.tenants} tenants\n${paths.map((p) => `file:${p}`).join("\n")}\n`);

  const sampled = sampleTenants(options.tenants, options.writers);
  progress.update(`${label} starting ${sampled.length} writer(s)`);
  const writers = sampled.map(
    (i) =>
      new JsonChild(`writer on tenant ${i + 1}`, "ingest-child.ts", [
        `file:${paths[i]}`,
        String(options.ingestRate),
      ]),
  );
  let fleet: FleetCommandResult;
  let baselineStart: number;
  const collected: { samples: IngestSample[]; errors: string[] }[] = [];
  try {
    await Promise.all(writers.map((w) => w.waitFor("ready")));
    baselineStart = nowMs();
    progress.update(`${label} writers' idle baseline`);
    await sleep(options.baselineMs);
    const began = performance.now();
    progress.counter(label, 0, options.tenants, "tenants", began);
    fleet = await runFleetCommand(file, concurrency, options.timeoutMs, (done) =>
      progress.counter(label, done, options.tenants, "tenants", began),
    );
    await sleep(options.cooldownMs);
    for (const w of writers) w.send("stop");
    for (const w of writers) {
      const result = await w.waitFor("result", 60_000);
      collected.push({
        samples: decodeIngest(result.samples as number[]),
        errors: (result.errors as string[] | undefined) ?? [],
      });
    }
    await Promise.all(writers.map((w) => w.exited));
  } catch (error) {
    for (const w of writers) w.kill();
    throw error;
  }

  let json: FleetJson;
  try {
    json = JSON.parse(fleet.stdout) as FleetJson;
  } catch {
    throw new Error(`trickle fleet run (exit ${fleet.code}) printed no JSON; stderr:\n${fleet.stderr}`);
  }
  if (fleet.code !== 0)
    notes.push(
      `${label}: trickle fleet run exited ${fleet.code}: ${json.stoppedBecause ?? fleet.stderr.trim().split("\n").slice(-3).join(" / ")}`,
    );
  for (const t of json.tenants.filter((x) => x.status !== "done").slice(0, 5))
    notes.push(`${label}: ${t.database} is ${t.status}: ${t.detail ?? ""}`);

  // Every tenant against the one-shot, and each tenant's backfill window from its own row.
  const windows: (Window | null)[] = [];
  let mismatched = 0;
  const checkStart = performance.now();
  for (const [i, path] of paths.entries()) {
    const check = await checkTenant(`file:${path}`, tenants.oracles[i % tenants.oracles.length]!);
    windows.push(check.window);
    if (check.mismatch !== null) {
      mismatched++;
      if (mismatched <= 5)
        notes.push(`${label}: tenant ${i + 1} differs from the one-shot: ${check.mismatch}`);
    }
    if (i % 50 === 49) progress.counter(`${label} verify`, i + 1, paths.length, "tenants", checkStart);
  }
  rmSync(dir, { recursive: true, force: true });

  const known = windows.filter((w): w is Window => w !== null);
  const rowsProcessed = json.tenants.reduce(
    (sum, t) => sum + t.migrations.reduce((n, m) => n + Number(m.rowsProcessed), 0),
    0,
  );
  const wallMs = fleet.window.end - fleet.window.start;
  // The goal's window: from the first wave to the exit. Before it the command only loads its code (with tsx's
  // loader, seconds of CPU on a small machine; compiled JavaScript, as production runs, takes a fraction of it)
  // and reads the fleet file; the writers' figures of that start-up are kept on their own.
  const work: Window = { start: fleet.workStart, end: fleet.window.end };
  const startup: Window = { start: fleet.window.start, end: fleet.workStart };
  const idle: Window = { start: baselineStart, end: fleet.window.start };
  const sampledFigures = sampled.map((index, j): SampledTenant => {
    const samples = collected[j]!.samples;
    for (const e of collected[j]!.errors) notes.push(`${label}: writer on tenant ${index + 1}: ${e}`);
    const own = windows[index] ?? null;
    const run = ingestFigures(samples, work);
    return {
      tenant: index + 1,
      baseline: ingestFigures(samples, idle),
      startup: ingestFigures(samples, startup),
      run,
      ownBackfill: {
        ...ingestFigures(
          samples,
          own
            ? { start: own.start - OWN_WINDOW_MARGIN_MS, end: own.end + OWN_WINDOW_MARGIN_MS }
            : { start: 0, end: -1 },
        ),
        windowMs: own ? own.end - own.start : null,
      },
      pass:
        run.count > 0 &&
        run.p99Ms <= WRITER_GOAL.p99Ms &&
        run.maxMs <= WRITER_GOAL.maxMs &&
        run.busyErrors + run.otherErrors <= WRITER_GOAL.errors,
    };
  });
  // The raw figures stay next to the run's copies, for a closer look (as bench/main.ts keeps its samples).
  writeFile(
    join(options.cacheDir, "fleet-run", `${label.replace(/[^A-Za-z0-9]+/g, "-")}.samples.json`),
    JSON.stringify({
      window: fleet.window,
      workStart: fleet.workStart,
      baselineStart,
      tenantWindows: windows,
      writers: sampled.map((index, j) => ({ tenant: index + 1, samples: collected[j]!.samples })),
    }),
  );
  const samples = collected.flatMap((c) => c.samples).sort((a, b) => a.at - b.at);
  const run: FleetRun = {
    concurrency,
    round,
    wallMs: round2(wallMs),
    startupMs: round2(fleet.workStart - fleet.window.start),
    spanMs: known.length
      ? round2(Math.max(...known.map((w) => w.end)) - Math.min(...known.map((w) => w.start)))
      : 0,
    tenantsPerSecond: round2(options.tenants / (wallMs / 1000)),
    rowsProcessed,
    rowsPerSecond: round2(rowsProcessed / (wallMs / 1000)),
    exitCode: fleet.code,
    summary: json.summary,
    tenantBackfillMs: percentiles(known.map((w) => w.end - w.start)),
    writer: ingestFigures(samples, work),
    writerStartup: ingestFigures(samples, startup),
    writerIdle: ingestFigures(samples, idle),
    sampled: sampledFigures,
    writerGoal: sampledFigures.every((s) => s.pass),
    mismatched,
  };
  return { run, window: work, samples, notes };
}

const round2 = (value: number) => round(value, 2);

// ---------------------------------------------------------------------------------------------------------
// The whole benchmark

function spread(values: readonly number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor((sorted.length - 1) / 2)]!, min: sorted[0]!, max: sorted.at(-1)! };
}

function writeFile(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

export async function runFleetBench(options: FleetBenchOptions): Promise<FleetBenchReport> {
  const progress = new Progress();
  const machine = machineInfo();
  const tenants = await prepareTenants(options, progress);
  const notes: string[] = [];
  // Rounds of every concurrency in turn, so a noisy minute on a shared machine hits each alike.
  const records = new Map<number, RunRecord[]>();
  for (let r = 1; r <= options.repeat; r++) {
    for (const c of options.concurrency) {
      const label = `concurrency ${c}${options.repeat > 1 ? ` #${r}` : ""}`;
      const record = await runOnce(options, c, r, tenants, progress, label);
      records.set(c, [...(records.get(c) ?? []), record]);
      notes.push(...record.notes);
      const f = record.run;
      progress.done(
        `${label}: ${fmt(f.wallMs / 1000, 1)} s, ${fmt(f.tenantsPerSecond, 1)} tenants/s, ${formatCount(f.rowsPerSecond)} rows/s; writers p99 ${fmt(f.writer.p99Ms, 1)} ms, max ${fmt(f.writer.maxMs, 1)} ms, ${f.writer.busyErrors + f.writer.otherErrors} errors; ${f.mismatched === 0 ? "every tenant equals the one-shot" : `${f.mismatched} tenants differ from the one-shot`}`,
      );
    }
  }
  const results: ConcurrencyResult[] = options.concurrency.map((c) => {
    const runs = records.get(c)!.map((r) => r.run);
    const byWall = [...runs].sort((a, b) => a.wallMs - b.wallMs);
    return {
      concurrency: c,
      median: byWall[Math.floor((byWall.length - 1) / 2)]!,
      tenantsPerSecond: spread(runs.map((r) => r.tenantsPerSecond)),
      rowsPerSecond: spread(runs.map((r) => r.rowsPerSecond)),
      writerGoalRuns: runs.filter((r) => r.writerGoal).length,
      runs,
    };
  });
  const all = results.flatMap((r) => r.runs);
  const bytes = tenants.databases.reduce((sum, d) => sum + d.bytes, 0) / tenants.databases.length;
  const report: FleetBenchReport = {
    fleet: {
      tenants: options.tenants,
      distinct: options.distinct,
      transmissions: options.transmissions,
      observations: options.observations,
      legacyFraction: options.legacyFraction,
      seed: options.seed,
      bytesPerTenant: Math.round(bytes),
      built: tenants.built,
      buildMs: round2(tenants.buildMs),
    },
    machine: { ...machine, loadavgEnd: loadavgNow() },
    config: {
      concurrency: options.concurrency,
      repeat: options.repeat,
      writers: sampleTenants(options.tenants, options.writers).length,
      ingestRate: options.ingestRate,
      baselineMs: options.baselineMs,
      command: "trickle fleet run --databases FILE --until-done --concurrency C --json",
    },
    goal: WRITER_GOAL,
    results,
    correct: all.every((r) => r.mismatched === 0 && r.exitCode === 0 && r.summary.done === options.tenants),
    writerGoal: all.every((r) => r.writerGoal),
    notes,
    generatedAt: new Date().toISOString(),
  };
  writeFile(options.json, `${JSON.stringify(report, null, 2)}\n`);
  writeFile(options.chart, fleetChart(report, records));
  return report;
}

/**
 * What the chart draws of many writers' samples: the fastest and the slowest write of every `bucketMs` (by intended
 * start) and every failed one, so the file stays small while the stalls and the floor stay visible. The figures
 * are computed from every sample.
 */
export function thinForChart(samples: readonly IngestSample[], bucketMs = 20): IngestSample[] {
  const extremes = new Map<number, [IngestSample, IngestSample]>();
  const failed: IngestSample[] = [];
  for (const s of samples) {
    if (s.outcome !== "ok") {
      failed.push(s);
      continue;
    }
    const key = Math.floor(s.at / bucketMs);
    const pair = extremes.get(key);
    if (!pair) extremes.set(key, [s, s]);
    else {
      if (s.ms < pair[0].ms) pair[0] = s;
      if (s.ms > pair[1].ms) pair[1] = s;
    }
  }
  const kept = [...extremes.values()].flatMap(([fast, slow]) => (fast === slow ? [fast] : [fast, slow]));
  return [...kept, ...failed].sort((a, b) => a.at - b.at);
}

/** One panel per concurrency (its median run): every sampled tenant's writer over the fleet run. */
export function fleetChart(
  report: FleetBenchReport,
  records: ReadonlyMap<number, readonly Pick<RunRecord, "run" | "window" | "samples">[]>,
): string {
  const phases: ChartPhase[] = report.results.map((result) => {
    const record = records.get(result.concurrency)!.find((r) => r.run === result.median)!;
    const f = result.median;
    return {
      name: `concurrency ${result.concurrency}`,
      caption: `${fmt(f.wallMs / 1000, 1)} s, ${fmt(f.tenantsPerSecond, 1)} tenants/s · writers on tenants ${f.sampled.map((s) => s.tenant).join(", ")}: p99 ${fmt(f.writer.p99Ms, 1)} ms, max ${fmt(f.writer.maxMs, 1)} ms, ${f.writer.busyErrors + f.writer.otherErrors} errors`,
      window: record.window,
      backfill: true,
      http: [],
      ingest: thinForChart(record.samples),
      steps: [],
    };
  });
  const m = report.machine;
  return renderChart({
    title: `trickle fleet run — ${formatCount(report.fleet.tenants)} tenants of ${formatCount(report.fleet.transmissions)} transmissions / ${formatCount(report.fleet.observations)} observations`,
    subtitle: `${m.cpus} × ${m.model}, Node ${m.node}, load avg ${m.loadavg.join(" / ")} · ${report.config.writers} writers × ${report.config.ingestRate}/s, busy handler · dots: fastest and slowest write per 20 ms · ${report.generatedAt.slice(0, 16)}Z`,
    phases,
    legend: ["ingest", "busy"],
    guide: { ms: WRITER_GOAL.p99Ms, label: `${WRITER_GOAL.p99Ms} ms writer p99 goal` },
  });
}

export function printFleetReport(report: FleetBenchReport, options: FleetBenchOptions): string {
  const f = report.fleet;
  const m = report.machine;
  const goal = `p99 ≤ ${WRITER_GOAL.p99Ms} ms, max ≤ ${WRITER_GOAL.maxMs} ms, 0 errors`;
  const repeat = report.config.repeat;
  const perSecond = (s: { median: number; min: number; max: number }, digits: number) =>
    repeat > 1
      ? `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`
      : fmt(s.median, digits);
  const lines = [
    "",
    `## Fleet benchmark: ${formatCount(f.tenants)} tenants × ${formatCount(f.transmissions)} transmissions / ${formatCount(f.observations)} observations (${fmt(f.bytesPerTenant / 1024, 0)} KB each, ${f.distinct} distinct)`,
    "",
    `Machine: ${m.cpus} × ${m.model}, ${m.memGb} GB RAM, Node ${m.node}, ${m.platform}; load average ${m.loadavg.join(" / ")} at the start, ${m.loadavgEnd.join(" / ")} at the end. Each run: \`${report.config.command}\` on fresh copies, trickle's defaults; an application writer (${report.config.ingestRate} messages/s, SQLite's standard busy handler, latency from each write's intended start) on each of ${report.config.writers} tenants spread over the fleet.${repeat > 1 ? ` ${repeat} runs per concurrency: the median run, the spread in brackets.` : ""}`,
    "",
    "| concurrency | wall s (start-up) | tenants/s | rows/s | tenant backfill ms p50 / p99 / max | writer ms p50 / p99 / max | writer errors | writer goal | every tenant = one-shot |",
    "|---:|---:|---:|---:|---:|---:|---:|---|---|",
  ];
  for (const r of report.results) {
    const x = r.median;
    lines.push(
      `| ${r.concurrency} | ${fmt(x.wallMs / 1000, 1)} (${fmt(x.startupMs / 1000, 1)}) | ${perSecond(r.tenantsPerSecond, 1)} | ${perSecond(r.rowsPerSecond, 0)} | ${fmt(x.tenantBackfillMs.p50, 0)} / ${fmt(x.tenantBackfillMs.p99, 0)} / ${fmt(x.tenantBackfillMs.max, 0)} | ${fmt(x.writer.p50Ms, 1)} / ${fmt(x.writer.p99Ms, 1)} / ${fmt(x.writer.maxMs, 1)} | ${x.writer.busyErrors + x.writer.otherErrors} / ${formatCount(x.writer.count)} | ${x.writerGoal ? "PASS" : "FAIL"}${repeat > 1 ? ` (${r.writerGoalRuns}/${r.runs.length} runs)` : ""} | ${r.runs.every((run) => run.mismatched === 0 && run.exitCode === 0) ? "yes" : "NO"} |`,
    );
  }
  lines.push(
    "",
    `Writer on each sampled tenant (goal: ${goal} from the fleet's first wave to its exit):`,
    "",
    "| concurrency | tenant | idle p99 / max ms | command start-up p99 / max ms | fleet run ms p50 / p99 / max | errors | during its own backfill: writes, ms p99 / max (backfill ms) | goal |",
    "|---:|---:|---:|---:|---:|---:|---:|---|",
  );
  for (const r of report.results) {
    for (const s of r.median.sampled) {
      lines.push(
        `| ${r.concurrency} | ${s.tenant} | ${fmt(s.baseline.p99Ms, 1)} / ${fmt(s.baseline.maxMs, 1)} | ${fmt(s.startup.p99Ms, 1)} / ${fmt(s.startup.maxMs, 1)} | ${fmt(s.run.p50Ms, 1)} / ${fmt(s.run.p99Ms, 1)} / ${fmt(s.run.maxMs, 1)} | ${s.run.busyErrors + s.run.otherErrors} | ${s.ownBackfill.count}, ${fmt(s.ownBackfill.p99Ms, 1)} / ${fmt(s.ownBackfill.maxMs, 1)} (${fmt(s.ownBackfill.windowMs, 0)}) | ${s.pass ? "PASS" : "FAIL"} |`,
      );
    }
  }
  lines.push(
    "",
    `Correctness: ${report.correct ? "every tenant of every run equals the one-shot statement, and every fleet run exited 0 with every tenant done" : "FAILED (see notes)"}.`,
    `Writer goal (${goal} on every sampled tenant): ${report.writerGoal ? "PASS" : "FAIL"}.`,
    "",
  );
  if (report.notes.length > 0) lines.push("Notes:", ...report.notes.map((n) => `- ${n}`), "");
  lines.push(`JSON: ${relativeToRepo(options.json)}  chart: ${relativeToRepo(options.chart)}`, "");
  return lines.join("\n");
}

function relativeToRepo(path: string): string {
  return path.startsWith(`${REPO}/`) ? path.slice(REPO.length + 1) : path;
}

async function main(): Promise<number> {
  let options: FleetBenchOptions | "help";
  try {
    options = parseFleetBenchArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench:fleet: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const report = await runFleetBench(options);
  process.stdout.write(printFleetReport(report, options));
  // A slow writer is a figure; a wrong result or a failed fleet run is a failure.
  return report.correct ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(REPO, "bench", "fleet.ts")) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`bench:fleet: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
