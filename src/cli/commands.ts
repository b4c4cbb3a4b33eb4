/**
 * The CLI commands. Each returns its exit code: 0 ok, 1 failed / conflict / work left, 2 usage or configuration.
 * Results go to stdout, progress and diagnostics to stderr.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Client } from "@libsql/client";
import { type DryRunReport, dryRunMigration } from "../engine/dry-run.ts";
import { createControls, createEngine, createRunner, type EngineSettings } from "../engine/engine.ts";
import type { RunnerEvent } from "../engine/events.ts";
import { MigrationPlan } from "../engine/plan.ts";
import { type MigrationRow, StateStore } from "../engine/state-store.ts";
import { type MigrationDefinition, resolveMigration } from "../migrations/define.ts";
import { computeProgress } from "../progress/rate.ts";
import { seedCoreScope } from "../seed/corescope.ts";
import type { Command, ControlCommandName } from "./args.ts";
import { err, jsonCount, jsonKey, messageOf, out, table } from "./output.ts";
import { formatCount, formatDuration, formatRate, ProgressRenderer, progressLine } from "./progress.ts";

type Of<N extends Command["name"]> = Extract<Command, { name: N }>;

// ---------------------------------------------------------------------------------------------------------
// seed

export async function seedCommand(client: Client, command: Of<"seed">): Promise<number> {
  const renderer = new ProgressRenderer(process.stderr);
  const began = performance.now();
  let result: { transmissions: number; observations: number };
  try {
    result = await seedCoreScope(client, {
      transmissions: command.transmissions,
      observations: command.observations,
      legacyFraction: command.legacyFraction,
      seed: command.seed,
      onProgress(done, total) {
        const seconds = (performance.now() - began) / 1000;
        const rate = seconds > 0 ? done / seconds : 0;
        renderer.update([
          progressLine(
            { label: "seed", done, total, rate, etaSeconds: rate > 0 ? (total - done) / rate : null },
            { bar: renderer.tty },
          ),
        ]);
      },
    });
  } catch (error) {
    renderer.finish();
    err(`trickle: seed: ${messageOf(error)}`);
    return 1;
  }
  renderer.finish();
  const seconds = (performance.now() - began) / 1000;
  out(
    `seeded ${formatCount(result.transmissions)} transmissions and ${formatCount(result.observations)} observations ` +
      `in ${seconds.toFixed(1)} s (seed ${command.seed}, legacy fraction ${command.legacyFraction})`,
  );
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// status

/**
 * One migration in `status --json`. Counters are JSON numbers while they are safe integers, otherwise decimal
 * strings; keys (`cursor`, `minKey`, `maxKey`) are always decimal strings. Times are the database's ISO-8601 text.
 */
export interface StatusJson {
  readonly name: string;
  readonly status: string;
  readonly rowsProcessed: number | string;
  readonly rowsTotal: number | string;
  readonly percent: number;
  readonly rate: number;
  readonly busyRate: number;
  readonly etaSeconds: number | null;
  readonly elapsedSeconds: number;
  readonly reason: string | null;
  readonly errorMessage: string | null;
  readonly leaseOwner: string | null;
  readonly leaseExpiresAt: string | null;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  readonly lastUpdateAt: string | null;
  readonly cursor: string | null;
  readonly minKey: string | null;
  readonly maxKey: string | null;
  readonly pass: number;
  readonly steps: number | string;
  readonly batchSize: number | null;
  /** ETA band (p10–p90), null until enough slices were seen. */
  readonly etaLowSeconds: number | null;
  readonly etaHighSeconds: number | null;
  /** Running, not throttled, and the cursor has not moved for TRICKLE_STUCK_AFTER_MS. */
  readonly stuck: boolean;
  readonly progressAt: string | null;
  readonly quarantined: number | string;
  readonly failedSteps: number | string;
  readonly verifiedAt: string | null;
  readonly residual: number | string | null;
  readonly throttle: { readonly reason: string; readonly until: string } | null;
}

function statusJson(row: MigrationRow, nowMs: number, stuckAfterMs: number): StatusJson {
  const figures = computeProgress(row, nowMs, { stuckAfterMs });
  return {
    name: row.name,
    status: row.status,
    rowsProcessed: jsonCount(row.rowsProcessed),
    rowsTotal: jsonCount(row.rowsTotal),
    percent: round(figures.percent, 2),
    rate: round(figures.rate, 2),
    busyRate: round(figures.busyRate, 2),
    etaSeconds: figures.etaSeconds === null ? null : round(figures.etaSeconds, 1),
    elapsedSeconds: round(figures.elapsedSeconds, 3),
    reason: row.reason,
    errorMessage: row.error,
    leaseOwner: row.leaseOwner,
    leaseExpiresAt: row.leaseExpiresAt,
    startedAt: row.startedAt,
    endedAt: row.endedAt,
    lastUpdateAt: row.lastUpdateAt,
    cursor: jsonKey(row.cursor),
    minKey: jsonKey(row.minKey),
    maxKey: jsonKey(row.maxKey),
    pass: row.pass,
    steps: jsonCount(row.steps),
    batchSize: row.batchSize,
    etaLowSeconds: figures.etaLowSeconds === null ? null : round(figures.etaLowSeconds, 1),
    etaHighSeconds: figures.etaHighSeconds === null ? null : round(figures.etaHighSeconds, 1),
    stuck: figures.stuck,
    progressAt: row.progressAt,
    quarantined: jsonCount(row.quarantined),
    failedSteps: jsonCount(row.failedSteps),
    verifiedAt: row.verifiedAt,
    residual: row.residual === null ? null : jsonCount(row.residual),
    throttle:
      figures.throttled && row.throttledUntil
        ? { reason: row.throttleReason ?? "throttled", until: row.throttledUntil }
        : null,
  };
}

/** `ETA 3m05s`, or with a band `ETA 3m05s (2m40s–4m10s)`. */
function etaText(figures: ReturnType<typeof computeProgress>): string {
  const eta = `ETA ${formatDuration(figures.etaSeconds)}`;
  if (figures.etaLowSeconds === null) return eta;
  const high = figures.etaHighSeconds === null ? "?" : formatDuration(figures.etaHighSeconds);
  return `${eta} (${formatDuration(figures.etaLowSeconds)}–${high})`;
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

async function readRows(client: Client): Promise<MigrationRow[]> {
  const store = new StateStore(client);
  // Read-only: a database nothing has run on yet has no state table, and `status` must not create one.
  if (!(await store.hasState())) return [];
  return store.list();
}

/**
 * Human lines for rows: one summary line each, plus indented lines when present: lease, throttle, stuck, reason,
 * quarantined rows, verification, error.
 */
function describeRows(rows: readonly MigrationRow[], nowMs: number, stuckAfterMs: number): string[] {
  const lines: string[] = [];
  const figures = rows.map((row) => computeProgress(row, nowMs, { stuckAfterMs }));
  const cells = rows.map((row, i) => {
    const f = figures[i]!;
    return [
      row.name,
      row.status,
      `${formatCount(row.rowsProcessed)} / ${formatCount(row.rowsTotal)} rows`,
      `${f.percent.toFixed(1)}%`,
      formatRate(f.rate),
      row.status === "running"
        ? etaText(f)
        : row.endedAt !== null
          ? `took ${formatDuration(f.elapsedSeconds)}`
          : "",
    ];
  });
  const aligned = table(cells);
  rows.forEach((row, i) => {
    const f = figures[i]!;
    lines.push(aligned[i]!);
    if (row.leaseOwner) lines.push(`    lease: ${row.leaseOwner} until ${row.leaseExpiresAt ?? "?"}`);
    if (f.throttled) lines.push(`    throttled until ${row.throttledUntil}: ${row.throttleReason ?? "?"}`);
    if (f.stuck)
      lines.push(
        `    STUCK: the cursor has not moved since ${row.progressAt ?? row.lastUpdateAt ?? row.startedAt} (threshold ${formatDuration(stuckAfterMs / 1000)})`,
      );
    if (row.reason) lines.push(`    reason: ${row.reason}`);
    if (row.quarantined > 0n)
      lines.push(
        `    quarantined: ${formatCount(row.quarantined)} rows skipped (see \`trickle failures ${row.name}\`)`,
      );
    if (row.verifiedAt)
      lines.push(
        `    verified: ${row.verifiedAt}, ${formatCount(row.residual ?? 0n)} rows still needing work${row.quarantined > 0n ? " besides the quarantined ones" : ""}`,
      );
    if (row.error) lines.push(`    error: ${row.error}`);
  });
  return lines;
}

export async function statusCommand(
  client: Client,
  command: Of<"status">,
  settings: Pick<EngineSettings, "stuckAfterMs">,
): Promise<number> {
  const rows = await readRows(client);
  const now = Date.now();
  if (command.json) {
    out(
      JSON.stringify(
        rows.map((row) => statusJson(row, now, settings.stuckAfterMs)),
        null,
        2,
      ),
    );
    return 0;
  }
  if (rows.length === 0) {
    out("no migrations recorded in this database yet (run `trickle run` or start the server)");
    return 0;
  }
  for (const line of describeRows(rows, now, settings.stuckAfterMs)) out(line);
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// run

interface LiveProgress {
  status: string;
  processed: bigint;
  total: bigint;
  /** Rate baseline: rows and time when this process first saw the run move. */
  baseProcessed: bigint;
  baseAt: number;
  note: string | undefined;
}

/** Follows runner events and turns them into progress lines. */
class RunProgress {
  readonly #live = new Map<string, LiveProgress>();
  readonly #renderer = new ProgressRenderer(process.stderr);

  constructor(rows: readonly MigrationRow[]) {
    const now = performance.now();
    for (const row of rows) {
      this.#live.set(row.name, {
        status: row.status,
        processed: row.rowsProcessed,
        total: row.rowsTotal,
        baseProcessed: row.rowsProcessed,
        baseAt: now,
        note: undefined,
      });
    }
  }

  onEvent(event: RunnerEvent): void {
    const now = performance.now();
    const live = this.#live.get(event.name);
    if (!live) return;
    switch (event.type) {
      case "run-started":
        live.status = "running";
        live.processed = 0n;
        live.total = event.rowsTotal;
        live.baseProcessed = 0n;
        live.baseAt = now;
        live.note = undefined;
        break;
      case "step":
        live.status = "running";
        live.processed = event.rowsProcessed;
        live.note = undefined;
        break;
      case "sweep":
        live.total += event.residual;
        live.note = `re-sweep pass ${event.pass}: ${formatCount(event.residual)} rows`;
        break;
      case "retrying":
        live.note = `${event.code}, retry ${event.attempt} in ${event.delayMs} ms`;
        break;
      case "waiting":
        live.status = "pending";
        live.note = event.reason;
        break;
      case "lease-lost":
        live.note = "lease lost";
        break;
      case "done":
        live.status = "done";
        live.processed = event.rowsProcessed;
        live.note = undefined;
        break;
      case "failed":
        live.status = "failed";
        live.note = event.message;
        break;
      case "blocked":
        live.note = event.reason;
        break;
      case "throttled":
        live.note = `throttled: ${event.reason}`;
        break;
      case "quarantined":
        live.note = `quarantined key ${event.key} (${formatCount(event.quarantined)} in all): ${event.message}`;
        break;
      case "bisecting":
        live.note = `bisecting a failing step: ${event.size} of ${event.suspect} keys`;
        break;
      case "quarantine-retried":
        live.note = `retried quarantined key ${event.key}: ${event.resolved ? "resolved" : "failed again"}`;
        break;
    }
    this.#renderer.update(this.#lines(now));
  }

  finish(): void {
    this.#renderer.finish();
  }

  #lines(now: number): string[] {
    const lines: string[] = [];
    for (const [name, live] of this.#live) {
      if (live.status !== "running" && live.processed === live.baseProcessed) continue; // nothing happening
      const seconds = (now - live.baseAt) / 1000;
      const rate = seconds > 0.2 ? Number(live.processed - live.baseProcessed) / seconds : 0;
      const remaining = Number(live.total - live.processed);
      lines.push(
        progressLine(
          {
            label: live.status === "running" ? name : `${name} (${live.status})`,
            done: live.processed,
            total: live.total,
            rate,
            etaSeconds: live.status === "running" && rate > 0 ? Math.max(0, remaining) / rate : null,
            ...(live.note ? { note: live.note } : {}),
          },
          { bar: this.#renderer.tty },
        ),
      );
    }
    return lines;
  }
}

/** `run --json`: the run's migrations as `status --json` shows them, and what stopped it. */
export interface RunJson {
  readonly seconds: number;
  readonly stoppedBy: NodeJS.Signals | null;
  readonly migrations: readonly StatusJson[];
  /** Reasons only this process knows (not yet in a row), e.g. a transient error it backed off from. */
  readonly notes: readonly { readonly name: string; readonly note: string }[];
}

export async function runCommand(
  client: Client,
  command: Of<"run">,
  migrations: readonly MigrationDefinition[],
  settings: EngineSettings,
): Promise<number> {
  // The same engine as the server's: every TRICKLE_* tuning and throttling variable means the same thing here.
  // Slices run in the foreground (no scheduler), and nobody reads snapshots (no publisher).
  const engine = createEngine({
    client,
    settings,
    migrations,
    owner: `cli-${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
    log: err,
    publish: false,
    source: "cli",
  });
  const { runner } = engine;
  await runner.init();
  const names = new Set(runner.migrations.map((m) => m.name));
  const before = (await runner.store.list()).filter((row) => names.has(row.name));
  const progress = new RunProgress(before);
  const unsubscribe = runner.on((event) => progress.onEvent(event));

  // First signal: stop after the step in flight (the runner releases its lease); a second one exits at once.
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received) process.exit(signal === "SIGINT" ? 130 : 143);
    received = signal;
    err(`\ntrickle: ${signal}: finishing the step in flight and releasing the lease (again to force)`);
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const began = performance.now();
  try {
    if (command.untilDone) {
      await runner.runUntilDone({ budgetMs: command.budgetMs, signal: controller.signal });
    } else {
      await runner.runSlice(command.budgetMs ?? runner.tuning.sliceBudgetMs, controller.signal);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    unsubscribe();
    progress.finish();
  }

  // Webhook deliveries in flight get the engine's bounded chance to finish before the process exits.
  await engine.stop();
  const after = (await runner.store.list()).filter((row) => names.has(row.name));
  const now = Date.now();
  const seconds = (performance.now() - began) / 1000;
  // Reasons only this process knows (not yet written to the row), e.g. a transient error it backed off from.
  const notes: { name: string; note: string }[] = [];
  for (const state of runner.state()) {
    const row = after.find((r) => r.name === state.name);
    if (state.reason && state.reason !== row?.reason) notes.push({ name: state.name, note: state.reason });
  }
  if (command.json) {
    const summary: RunJson = {
      seconds: round(seconds, 3),
      stoppedBy: received ?? null,
      migrations: after.map((row) => statusJson(row, now, settings.stuckAfterMs)),
      notes,
    };
    out(JSON.stringify(summary, null, 2));
  } else {
    out(`run finished in ${seconds.toFixed(1)} s${received ? ` (stopped by ${received})` : ""}:`);
    for (const line of describeRows(after, now, settings.stuckAfterMs)) out(`  ${line}`);
    for (const { note } of notes) out(`    note: ${note}`);
  }
  if (received) return received === "SIGINT" ? 130 : 143;
  return after.some((row) => row.status === "failed") ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------
// verify and dry-run

/** Why a migration cannot be checked in this database, or `undefined` if it can. */
async function notApplicable(store: StateStore, plan: MigrationPlan): Promise<string | undefined> {
  const m = plan.migration;
  const existing = await store.existingTables(m.requires);
  const missing = m.requires.filter((t) => !existing.has(t));
  if (missing.length > 0) return `table ${missing.join(", ")} does not exist`;
  return undefined;
}

/** Prerequisite columns the run would add; until they exist, the migration's conditions cannot be evaluated. */
async function missingColumns(client: Client, plan: MigrationPlan): Promise<string[]> {
  const missing: string[] = [];
  for (const p of plan.migration.prerequisites) {
    if (p.kind !== "column") continue;
    const cols = await client.execute({ sql: "SELECT name FROM pragma_table_info(?)", args: [p.table] });
    if (!cols.rows.some((r) => String(r.name).toLowerCase() === p.column.toLowerCase()))
      missing.push(`${p.table}.${p.column}`);
  }
  return missing;
}

export async function verifyCommand(
  client: Client,
  migrations: readonly MigrationDefinition[],
): Promise<number> {
  const store = new StateStore(client);
  let outstanding = false;
  for (const definition of migrations) {
    const plan = new MigrationPlan(resolveMigration(definition));
    const name = plan.migration.name;
    // A table that is not there cannot be verified: not a pass (verify gates CI on the right database).
    const unavailable = await notApplicable(store, plan);
    if (unavailable) {
      out(`${name}: cannot verify here (${unavailable})`);
      outstanding = true;
      continue;
    }
    const columns = await missingColumns(client, plan);
    if (columns.length > 0) {
      out(`${name}: not started (column ${columns.join(", ")} does not exist yet)`);
      outstanding = true;
      continue;
    }
    const residual = await plan.readResidual(client);
    const quarantined = (await store.listFailures(name)).length;
    out(
      `${name}: ${formatCount(residual)} rows still need work` +
        (quarantined > 0
          ? ` (${formatCount(quarantined)} of them quarantined: trickle failures ${name})`
          : ""),
    );
    if (residual !== 0n) outstanding = true;
  }
  return outstanding ? 1 : 0;
}

/** `dry-run --json`: the report with exact integers (numbers while safe, else decimal text). */
function dryRunJson(report: DryRunReport): unknown {
  return JSON.parse(
    JSON.stringify(report, (_key, value) => (typeof value === "bigint" ? jsonCount(value) : value)),
  );
}

function plural(n: number, word: string): string {
  return `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;
}

/** Short durations with decimals (`0.12s`), longer ones as `formatDuration` does. */
function seconds(value: number): string {
  return value < 10 ? `${value.toFixed(2)}s` : formatDuration(value);
}

function describeDryRun(report: DryRunReport, state: string): string[] {
  const lines: string[] = [];
  if (report.blockedBy) return [`${report.name} [${state}]: would wait (${report.blockedBy})`];
  const c = report.candidates;
  const range = !c || c.minKey === null ? "no keys" : `${report.key} ${c.minKey}..${c.maxKey}`;
  lines.push(
    `${report.name} [${state}]: ${formatCount(c?.rowsTotal ?? 0n)} candidate rows in ${report.table} (${range}); ` +
      `filter: ${report.filter}`,
  );
  const step = report.step;
  if (step) {
    lines.push(
      `    step (rolled back): ${report.key} ${step.fromKey}..${step.toKey}, ${formatCount(step.keys)} keys, ` +
        `${formatCount(step.rows)} rows changed in ${step.durationMs.toFixed(1)} ms`,
    );
  }
  for (const sample of report.samples) {
    const changes = sample.changed.map((col) =>
      sample.after === null
        ? `${col} ${JSON.stringify(sample.before[col])} → (deleted)`
        : `${col} ${JSON.stringify(sample.before[col])} → ${JSON.stringify(sample.after[col])}`,
    );
    lines.push(`    ${report.key} ${sample.key}: ${changes.length > 0 ? changes.join(", ") : "unchanged"}`);
  }
  const p = report.projection;
  if (p && p.steps > 0) {
    const s = p.schedule;
    const schedule =
      s.tickIntervalMs <= s.sliceBudgetMs + s.yieldMs
        ? `${s.sliceBudgetMs} ms slices back to back`
        : `${s.sliceBudgetMs} ms slices every ${s.tickIntervalMs} ms`;
    lines.push(
      `    projection: ${formatCount(p.keysInRange)} keys at ${formatRate(p.keysPerSecond).replace("/s", " keys/s")} in steps → ` +
        `${plural(p.steps, "step")} of ~${formatCount(p.batchAtTarget)} keys in ${plural(p.slices, "slice")}; ` +
        `${seconds(p.busySeconds)} in steps, about ${seconds(p.wallSeconds)} in all (${schedule}), ` +
        `at least ${seconds(p.wallSecondsWhileWriting)} while the application writes (${s.pauseWhileWritingMs} ms pauses)`,
    );
  }
  for (const note of report.notes) lines.push(`    note: ${note}`);
  return lines;
}

export async function dryRunCommand(
  client: Client,
  command: Of<"dry-run">,
  migrations: readonly MigrationDefinition[],
  settings: Pick<EngineSettings, "tuning">,
): Promise<number> {
  const rows = await readRows(client);
  const reports: { report: DryRunReport; state: string }[] = [];
  for (const definition of migrations) {
    const migration = resolveMigration(definition);
    const state = rows.find((r) => r.name === migration.name)?.status ?? "not registered";
    const report = await dryRunMigration(client, migration, {
      tuning: settings.tuning,
      ...(command.batchSize !== undefined ? { batchSize: command.batchSize } : {}),
      ...(command.tickIntervalMs !== undefined ? { tickIntervalMs: command.tickIntervalMs } : {}),
    });
    reports.push({ report, state });
  }
  if (command.json) {
    out(
      JSON.stringify(
        reports.map((r) => dryRunJson(r.report)),
        null,
        2,
      ),
    );
    return 0;
  }
  for (const { report, state } of reports) for (const line of describeDryRun(report, state)) out(line);
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// failures

export async function failuresCommand(
  client: Client,
  command: Of<"failures">,
  migrations: readonly MigrationDefinition[],
  settings: Pick<EngineSettings, "tuning">,
): Promise<number> {
  const name = command.migration;
  const store = new StateStore(client);
  if (!(await store.hasState()) || !(await store.get(name))) {
    err(`trickle: no migration named "${name}" in this database`);
    return 2;
  }
  const controls = createControls({ client, settings, migrations, source: "cli" });
  if (command.retry) {
    const result = await controls.retryFailures(name, command.keys);
    if (result.status === "not-found") {
      err(`trickle: no migration named "${name}" in this database`);
      return 2;
    }
    const when =
      result.to === "running" || result.to === "pending"
        ? "the next run or server tick retries them"
        : `they are retried once the migration runs again (it is ${result.to})`;
    out(`${name}: ${result.requested} quarantined rows marked for retry; ${when}`);
    return 0;
  }
  const failures = (await controls.failures(name, { includeResolved: command.all })) ?? [];
  if (command.json) {
    out(
      JSON.stringify(
        failures.map((f) => ({ ...f, key: f.key.toString() })),
        null,
        2,
      ),
    );
    return 0;
  }
  if (failures.length === 0) {
    out(`${name}: no quarantined rows${command.all ? "" : " (--all lists resolved ones too)"}`);
    return 0;
  }
  out(`${name}: ${failures.length} quarantined rows`);
  for (const f of failures) {
    const state = f.resolvedAt
      ? `resolved ${f.resolvedAt} (${f.resolution ?? "?"})`
      : f.retryRequestedAt
        ? "retry requested"
        : "unresolved";
    out(`  key ${f.key}: ${state}, ${f.attempts} attempt(s), last at ${f.at}: ${f.error}`);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// pause / resume / cancel / retry

export async function controlCommand(
  client: Client,
  action: ControlCommandName,
  name: string,
  migrations: readonly MigrationDefinition[],
  settings: Pick<EngineSettings, "tuning" | "throttle" | "yieldPolicy">,
): Promise<number> {
  const runner = createRunner({ client, settings, migrations });
  await runner.init();
  // Through MigrationControls so that CLI actions land in the same audit trail as the control API's.
  const controls = createControls({ client, settings, migrations, source: "cli" });
  const result = await controls.act(name, action);
  switch (result.status) {
    case "ok":
      out(`${name}: ${result.from} → ${result.to}`);
      return 0;
    case "not-found":
      err(`trickle: no migration named "${name}" in this database`);
      return 2;
    default:
      err(`trickle: ${name}: ${result.message}`);
      return 1;
  }
}
