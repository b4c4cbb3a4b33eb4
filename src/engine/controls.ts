/**
 * Operator controls with an audit trail: pause, resume, cancel, retry, live tuning and dry-run, each checked
 * against the registered migrations before any SQL runs, and each recorded in `_async_migration_audit`.
 *
 * The state changes themselves are `StateStore.control` / `StateStore.setTuning`; this module adds the name
 * check, the bounds of live tuning, and the audit record. Tokens and other credentials never reach it, so they
 * cannot end up in the audit table. Portable: only the `Client` interface.
 */
import type { Client } from "@libsql/client";
import { type MigrationDefinition, type ResolvedMigration, resolveMigration } from "../migrations/define.ts";
import { MigrationPlan } from "./plan.ts";
import { SQL_NOW } from "./sql.ts";
import { type ControlAction, type ControlResult, type MigrationRow, StateStore } from "./state-store.ts";
import { resolveTuning, type Tuning } from "./tuning.ts";

export type { ControlAction, ControlResult } from "./state-store.ts";

export const AUDIT_TABLE = "_async_migration_audit";
export const CONTROL_ACTIONS: readonly ControlAction[] = ["pause", "resume", "cancel", "retry"];

/** Tuning fields an operator may change on a live migration, with their bounds (inclusive). */
export const TUNABLE_FIELDS = {
  stepTargetMs: { min: 1, max: 60_000 },
  yieldMs: { min: 0, max: 60_000 },
  sliceBudgetMs: { min: 10, max: 900_000 },
  initialBatch: { min: 1, max: 1_000_000 },
  maxBatch: { min: 1, max: 10_000_000 },
} as const;
export type TunableField = keyof typeof TUNABLE_FIELDS;

/** New values for some tunable fields; `null` removes an override (the default applies again). */
export type TuningPatch = Partial<Record<TunableField, number | null>>;

export type TuneResult =
  | { readonly status: "ok"; readonly name: string; readonly tuning: Readonly<Record<string, number>> }
  | { readonly status: "not-found"; readonly name: string }
  | { readonly status: "invalid"; readonly name: string; readonly field: string; readonly message: string };

/** What a run of this migration would do, without writing anything. */
export interface DryRunReport {
  readonly name: string;
  readonly description: string;
  readonly table: string;
  readonly key: string;
  readonly filter: string;
  readonly status: string | null;
  /** Set when the migration cannot start here (missing tables, a key that cannot be walked). */
  readonly blockedBy: string | null;
  /** Candidate rows now, and the key range a run starting now would freeze; null when blocked. */
  readonly candidates: {
    readonly rowsTotal: bigint;
    readonly minKey: bigint | null;
    readonly maxKey: bigint | null;
  } | null;
  readonly prerequisites: MigrationDefinition["prerequisites"];
  /** SQL of one step (fence, cursor advance, data change, progress), for review. */
  readonly stepSql: readonly string[];
}

/** What the control routes need; the Node entry and the in-process service both provide one. */
export interface ControlPort {
  /** Registered migration names, in registration order. */
  readonly names: readonly string[];
  definition(name: string): ResolvedMigration | undefined;
  list(): Promise<MigrationRow[]>;
  get(name: string): Promise<MigrationRow | undefined>;
  /** `note` (an operator's remark) goes into the audit record. */
  act(name: string, action: ControlAction, note?: string): Promise<ControlResult>;
  tune(name: string, patch: TuningPatch): Promise<TuneResult>;
  dryRun(name: string): Promise<DryRunReport | undefined>;
}

export interface AuditRecord {
  readonly id: bigint;
  readonly at: string;
  readonly name: string;
  readonly action: string;
  readonly fromStatus: string | null;
  readonly toStatus: string | null;
  readonly result: string;
  readonly detail: string | null;
}

export interface MigrationControlsOptions {
  readonly client: Client;
  readonly migrations: readonly MigrationDefinition[];
  /** The runner's tuning; live overrides are validated on top of it. */
  readonly tuning: Tuning;
  /** Where the request came from, stored in each audit record's detail (`http`, `cli`…). */
  readonly source?: string;
  /** Called after every state change (to wake the runner, drop cached snapshots). */
  readonly onChange?: (name: string, action: ControlAction | "tune") => void;
  /** Runs the dry-run elsewhere (Node: in the engine's worker, off the request thread). */
  readonly dryRun?: (name: string) => Promise<DryRunReport>;
}

export class MigrationControls implements ControlPort {
  readonly names: readonly string[];
  readonly store: StateStore;
  readonly #client: Client;
  readonly #definitions: ReadonlyMap<string, ResolvedMigration>;
  readonly #options: MigrationControlsOptions;
  #auditReady: Promise<void> | undefined;

  constructor(options: MigrationControlsOptions) {
    this.#options = options;
    this.#client = options.client;
    this.store = new StateStore(options.client);
    this.#definitions = new Map(options.migrations.map((m) => [m.name, resolveMigration(m)]));
    this.names = [...this.#definitions.keys()];
  }

  definition(name: string): ResolvedMigration | undefined {
    return this.#definitions.get(name);
  }

  async list(): Promise<MigrationRow[]> {
    const rows = await this.store.list();
    const byName = new Map(rows.map((r) => [r.name, r]));
    return this.names.flatMap((n) => {
      const row = byName.get(n);
      return row ? [row] : [];
    });
  }

  async get(name: string): Promise<MigrationRow | undefined> {
    if (!this.#definitions.has(name)) return undefined;
    return this.store.get(name);
  }

  async act(name: string, action: ControlAction, note?: string): Promise<ControlResult> {
    if (!this.#definitions.has(name) || !CONTROL_ACTIONS.includes(action))
      return { status: "not-found", name };
    const result = await this.store.control(name, action);
    if (result.status === "not-found") return result;
    await this.#audit({
      name,
      action,
      from: result.from,
      to: result.status === "ok" ? result.to : null,
      result: result.status,
      detail: {
        ...(note !== undefined ? { note } : {}),
        ...(result.status === "conflict" ? { message: result.message } : {}),
      },
    });
    if (result.status === "ok") this.#options.onChange?.(name, action);
    return result;
  }

  async tune(name: string, patch: TuningPatch): Promise<TuneResult> {
    if (!this.#definitions.has(name)) return { status: "not-found", name };
    const row = await this.store.get(name);
    if (!row) return { status: "not-found", name };
    const merged: Record<string, number> = { ...(row.tuning ?? {}) };
    for (const [field, value] of Object.entries(patch)) {
      if (!(field in TUNABLE_FIELDS))
        return { status: "invalid", name, field, message: `unknown field ${field}` };
      if (value === null || value === undefined) delete merged[field];
      else merged[field] = value;
    }
    // The engine ignores overrides that do not validate; refuse them here instead, where someone can see why.
    const base = resolveTuning(this.#options.tuning, this.#definitions.get(name)?.tuning as Partial<Tuning>);
    try {
      resolveTuning(base, merged as Partial<Tuning>);
    } catch (error) {
      const message = (error as Error).message;
      const field = Object.keys(TUNABLE_FIELDS).find((f) => message.includes(f)) ?? "body";
      await this.#audit({
        name,
        action: "tune",
        from: row.status,
        to: row.status,
        result: "invalid",
        detail: { patch, message },
      });
      return { status: "invalid", name, field, message };
    }
    const stored = await this.store.setTuning(name, patch as Record<string, number | null>);
    if (!stored) return { status: "not-found", name };
    await this.#audit({
      name,
      action: "tune",
      from: row.status,
      to: row.status,
      result: "ok",
      detail: { patch },
    });
    this.#options.onChange?.(name, "tune");
    return { status: "ok", name, tuning: merged };
  }

  async dryRun(name: string): Promise<DryRunReport | undefined> {
    const migration = this.#definitions.get(name);
    if (!migration) return undefined;
    const report = this.#options.dryRun
      ? await this.#options.dryRun(name)
      : await dryRunMigration(this.#client, migration);
    await this.#audit({
      name,
      action: "dry-run",
      from: report.status,
      to: report.status,
      result: "ok",
      detail: { blockedBy: report.blockedBy, rowsTotal: report.candidates?.rowsTotal.toString() ?? null },
    });
    return report;
  }

  /** The newest audit records first. */
  async audit(limit = 100): Promise<AuditRecord[]> {
    await this.#ensureAudit();
    const result = await this.#client.execute({
      sql: `SELECT CAST(id AS TEXT) AS id, at, name, action, from_status, to_status, result, detail
            FROM ${AUDIT_TABLE} ORDER BY id DESC LIMIT ?`,
      args: [BigInt(limit)],
    });
    return result.rows.map((r) => ({
      id: BigInt(String(r.id)),
      at: String(r.at),
      name: String(r.name),
      action: String(r.action),
      fromStatus: r.from_status === null ? null : String(r.from_status),
      toStatus: r.to_status === null ? null : String(r.to_status),
      result: String(r.result),
      detail: r.detail === null ? null : String(r.detail),
    }));
  }

  #ensureAudit(): Promise<void> {
    this.#auditReady ??= ensureAuditTable(this.#client).catch((error) => {
      this.#auditReady = undefined;
      throw error;
    });
    return this.#auditReady;
  }

  async #audit(entry: {
    name: string;
    action: string;
    from: string | null;
    to: string | null;
    result: string;
    detail: Record<string, unknown>;
  }): Promise<void> {
    await this.#ensureAudit();
    const detail = JSON.stringify({ source: this.#options.source ?? "api", ...entry.detail });
    await this.#client.execute({
      sql: `INSERT INTO ${AUDIT_TABLE} (at, name, action, from_status, to_status, result, detail)
            VALUES (${SQL_NOW}, ?, ?, ?, ?, ?, ?)`,
      args: [entry.name, entry.action, entry.from, entry.to, entry.result, detail],
    });
  }
}

/** Creates the audit table if it does not exist (idempotent). */
export async function ensureAuditTable(client: Client): Promise<void> {
  await client.execute(
    `CREATE TABLE IF NOT EXISTS ${AUDIT_TABLE} (id INTEGER PRIMARY KEY, at TEXT NOT NULL, name TEXT NOT NULL,
       action TEXT NOT NULL, from_status TEXT, to_status TEXT, result TEXT NOT NULL, detail TEXT)`,
  );
}

/**
 * Reads what a run of `migration` starting now would cover and shows the SQL of one step. Read-only: nothing
 * is created or changed (prerequisites are listed, not built).
 */
export async function dryRunMigration(client: Client, migration: ResolvedMigration): Promise<DryRunReport> {
  const store = new StateStore(client);
  const plan = new MigrationPlan(migration);
  const tables = await store.existingTables([...new Set([migration.table, ...migration.requires])]);
  const missing = migration.requires.filter((t) => !tables.has(t));
  const stateTable = await store.existingTables(["_async_migrations"]);
  const status = stateTable.size > 0 ? ((await store.get(migration.name))?.status ?? null) : null;
  let blockedBy: string | null = missing.length > 0 ? `table ${missing.join(", ")} does not exist` : null;
  if (blockedBy === null) blockedBy = (await plan.keyProblem(client)) ?? null;
  // Prerequisite columns may not exist yet, so the bounds read could fail on a filter that uses them.
  const columnsMissing = migration.prerequisites.some((p) => p.kind === "column");
  let candidates: DryRunReport["candidates"] = null;
  if (blockedBy === null) {
    try {
      candidates = await plan.readBounds(client);
    } catch (error) {
      if (!columnsMissing || !/no such column/i.test((error as Error).message)) throw error;
      blockedBy = "a prerequisite column does not exist yet; it is added when the run starts";
    }
  }
  const lease = { name: migration.name, owner: "dry-run", epoch: 0n, ttlMs: 1000 };
  const { statements } = plan.stepStatements(
    store,
    lease,
    { cursor: null, minKey: candidates?.minKey ?? 0n, maxKey: candidates?.maxKey ?? 0n, pass: 1 },
    100,
    0,
  );
  return {
    name: migration.name,
    description: migration.definition.description,
    table: migration.table,
    key: migration.key,
    filter: migration.filter,
    status,
    blockedBy,
    candidates,
    prerequisites: migration.prerequisites,
    stepSql: statements.map((s) => (typeof s === "string" ? s : s.sql).replace(/\s+/g, " ").trim()),
  };
}
