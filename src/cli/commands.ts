/**
 * The CLI commands. Each returns its exit code: 0 ok, 1 failed / conflict / work left, 2 usage or configuration.
 * Results go to stdout, progress and diagnostics to stderr.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Client } from "@libsql/client";
import { MigrationControls } from "../engine/controls.ts";
import type { RunnerEvent } from "../engine/events.ts";
import { MigrationPlan } from "../engine/plan.ts";
import { Runner } from "../engine/runner.ts";
import { type MigrationRow, STATE_TABLE, StateStore } from "../engine/state-store.ts";
import { type MigrationDefinition, resolveMigration } from "../migrations/define.ts";
import { BUILTIN_MIGRATIONS } from "../migrations/registry.ts";
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
}

function statusJson(row: MigrationRow, nowMs: number): StatusJson {
  const figures = computeProgress(row, nowMs);
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
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

async function readRows(client: Client): Promise<MigrationRow[]> {
  const store = new StateStore(client);
  // Read-only: a database nothing has run on yet has no state table, and `status` must not create one.
  if ((await store.existingTables([STATE_TABLE])).size === 0) return [];
  return store.list();
}

/** Human lines for rows: one summary line each, plus indented lease / reason / error lines when present. */
function describeRows(rows: readonly MigrationRow[], nowMs: number): string[] {
  const lines: string[] = [];
  const cells = rows.map((row) => {
    const f = computeProgress(row, nowMs);
    return [
      row.name,
      row.status,
      `${formatCount(row.rowsProcessed)} / ${formatCount(row.rowsTotal)} rows`,
      `${f.percent.toFixed(1)}%`,
      formatRate(f.rate),
      row.status === "running"
        ? `ETA ${formatDuration(f.etaSeconds)}`
        : row.endedAt !== null
          ? `took ${formatDuration(f.elapsedSeconds)}`
          : "",
    ];
  });
  const aligned = table(cells);
  rows.forEach((row, i) => {
    lines.push(aligned[i]!);
    if (row.leaseOwner) lines.push(`    lease: ${row.leaseOwner} until ${row.leaseExpiresAt ?? "?"}`);
    if (row.reason) lines.push(`    reason: ${row.reason}`);
    if (row.error) lines.push(`    error: ${row.error}`);
  });
  return lines;
}

export async function statusCommand(client: Client, command: Of<"status">): Promise<number> {
  const rows = await readRows(client);
  const now = Date.now();
  if (command.json) {
    out(
      JSON.stringify(
        rows.map((row) => statusJson(row, now)),
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
  for (const line of describeRows(rows, now)) out(line);
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

export async function runCommand(
  client: Client,
  command: Of<"run">,
  migrations: readonly MigrationDefinition[],
): Promise<number> {
  const runner = new Runner({
    client,
    migrations,
    owner: `cli-${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
  });
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

  const after = (await runner.store.list()).filter((row) => names.has(row.name));
  const now = Date.now();
  const seconds = ((performance.now() - began) / 1000).toFixed(1);
  out(`run finished in ${seconds} s${received ? ` (stopped by ${received})` : ""}:`);
  for (const line of describeRows(after, now)) out(`  ${line}`);
  // Reasons only this process knows (not yet written to the row), e.g. a transient error it backed off from.
  for (const state of runner.state()) {
    const row = after.find((r) => r.name === state.name);
    if (state.reason && state.reason !== row?.reason) out(`    note: ${state.reason}`);
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
    const skip = await notApplicable(store, plan);
    if (skip) {
      out(`${name}: skipped (${skip})`);
      continue;
    }
    const columns = await missingColumns(client, plan);
    if (columns.length > 0) {
      out(`${name}: not started (column ${columns.join(", ")} does not exist yet)`);
      outstanding = true;
      continue;
    }
    const residual = await plan.readResidual(client, null, null);
    out(`${name}: ${formatCount(residual)} rows still need work`);
    if (residual !== 0n) outstanding = true;
  }
  return outstanding ? 1 : 0;
}

export async function dryRunCommand(
  client: Client,
  migrations: readonly MigrationDefinition[],
): Promise<number> {
  const store = new StateStore(client);
  const rows = await readRows(client);
  for (const definition of migrations) {
    const plan = new MigrationPlan(resolveMigration(definition));
    const m = plan.migration;
    const state = rows.find((r) => r.name === m.name)?.status ?? "not registered";
    const skip = await notApplicable(store, plan);
    if (skip) {
      out(`${m.name} [${state}]: would wait (${skip})`);
      continue;
    }
    const columns = await missingColumns(client, plan);
    if (columns.length > 0) {
      out(
        `${m.name} [${state}]: would add column ${columns.join(", ")}, then process every row of ${m.table}`,
      );
      continue;
    }
    const bounds = await plan.readBounds(client);
    const range = bounds.minKey === null ? "no keys" : `${m.key} ${bounds.minKey}..${bounds.maxKey}`;
    out(
      `${m.name} [${state}]: ${formatCount(bounds.rowsTotal)} candidate rows in ${m.table} (${range}); ` +
        `filter: ${m.filter}`,
    );
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
): Promise<number> {
  const runner = new Runner({ client, migrations });
  await runner.init();
  // Through MigrationControls so that CLI actions land in the same audit trail as the control API's.
  const controls = new MigrationControls({ client, migrations, tuning: runner.tuning, source: "cli" });
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

/** The named built-in migration, or `undefined`. */
export function builtinByName(name: string): MigrationDefinition | undefined {
  return BUILTIN_MIGRATIONS.find((m) => m.name === name);
}
