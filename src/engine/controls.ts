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
import { type DryRunOptions, type DryRunReport, dryRunMigration } from "./dry-run.ts";
import { SQL_NOW } from "./sql.ts";
import {
  type ControlAction,
  type ControlResult,
  type FailureRow,
  type MigrationRow,
  StateStore,
} from "./state-store.ts";
import { resolveTuning, type Tuning } from "./tuning.ts";

export type { DryRunOptions, DryRunReport, DryRunSample } from "./dry-run.ts";
export { dryRunMigration } from "./dry-run.ts";
export type { ControlAction, ControlResult, FailureRow } from "./state-store.ts";

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

/** What asking to retry quarantined rows did. */
export type FailureRetryResult =
  | {
      readonly status: "ok";
      readonly name: string;
      /** Quarantined rows now marked for retry. */
      readonly requested: number;
      readonly from: string;
      /** `running` when a `done` migration was reopened to run the retries. */
      readonly to: string;
    }
  | { readonly status: "not-found"; readonly name: string };

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
  dryRun(name: string, options?: DryRunOptions): Promise<DryRunReport | undefined>;
  /** Quarantined rows of a registered migration (unresolved ones unless `includeResolved`). */
  failures(name: string, options?: { includeResolved?: boolean }): Promise<FailureRow[] | undefined>;
  /** Marks quarantined rows (all, or `keys`) for the runner to retry. */
  retryFailures(name: string, keys?: readonly bigint[], note?: string): Promise<FailureRetryResult>;
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
  readonly dryRun?: (name: string, options: DryRunOptions) => Promise<DryRunReport>;
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
    const problem = tuningProblem(base, merged, patch);
    if (problem) {
      const { field, message } = problem;
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

  async dryRun(name: string, options: DryRunOptions = {}): Promise<DryRunReport | undefined> {
    const migration = this.#definitions.get(name);
    if (!migration) return undefined;
    const withTuning = { ...options, tuning: options.tuning ?? this.#options.tuning };
    const report = this.#options.dryRun
      ? await this.#options.dryRun(name, withTuning)
      : await dryRunMigration(this.#client, migration, withTuning);
    await this.#audit({
      name,
      action: "dry-run",
      from: report.status,
      to: report.status,
      result: report.failure ? "step-failed" : "ok",
      detail: {
        blockedBy: report.blockedBy,
        rowsTotal: report.candidates?.rowsTotal.toString() ?? null,
        stepMs: report.step?.durationMs ?? null,
        projectedSeconds: report.projection?.wallSeconds ?? null,
        ...(report.failure
          ? {
              failure: {
                phase: report.failure.phase,
                fromKey: report.failure.fromKey?.toString() ?? null,
                toKey: report.failure.toKey?.toString() ?? null,
                code: report.failure.code,
                message: report.failure.message,
              },
            }
          : {}),
      },
    });
    return report;
  }

  async failures(
    name: string,
    options: { includeResolved?: boolean } = {},
  ): Promise<FailureRow[] | undefined> {
    if (!this.#definitions.has(name)) return undefined;
    return this.store.listFailures(name, options);
  }

  async retryFailures(name: string, keys?: readonly bigint[], note?: string): Promise<FailureRetryResult> {
    if (!this.#definitions.has(name)) return { status: "not-found", name };
    const result = await this.store.requestFailureRetry(name, keys);
    if (!result) return { status: "not-found", name };
    await this.#audit({
      name,
      action: "retry-failures",
      from: result.from,
      to: result.to,
      result: "ok",
      detail: {
        requested: result.requested,
        ...(keys && keys.length > 0 ? { keys: keys.map(String) } : {}),
        ...(note !== undefined ? { note } : {}),
      },
    });
    if (result.requested > 0) this.#options.onChange?.(name, "retry");
    return { status: "ok", name, ...result };
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

/**
 * Why live overrides `merged` (the stored ones with `patch` applied) cannot apply on top of `base`, naming the
 * field; undefined when they can. Besides each knob's own bounds, whatever holds the lease without renewing it
 * must fit in the lease TTL, as the settings require of the configured slice budget: a slice's budget, and a
 * step with the yield after it (a longer one loses the lease in the middle of the slice).
 */
function tuningProblem(
  base: Tuning,
  merged: Readonly<Record<string, number>>,
  patch: TuningPatch,
): { field: string; message: string } | undefined {
  let tuning: Tuning;
  try {
    tuning = resolveTuning(base, merged as Partial<Tuning>);
  } catch (error) {
    const message = (error as Error).message;
    const field = Object.keys(TUNABLE_FIELDS).find((f) => message.includes(f)) ?? "body";
    return { field, message };
  }
  const ttl = `the lease TTL (TRICKLE_LEASE_TTL_MS = ${tuning.leaseTtlMs})`;
  if (tuning.sliceBudgetMs >= tuning.leaseTtlMs) {
    return {
      field: "sliceBudgetMs",
      message: `sliceBudgetMs (${tuning.sliceBudgetMs}) must be less than ${ttl}`,
    };
  }
  if (tuning.stepTargetMs + tuning.yieldMs >= tuning.leaseTtlMs) {
    const field =
      patch.yieldMs !== undefined && patch.stepTargetMs === undefined ? "yieldMs" : "stepTargetMs";
    return {
      field,
      message: `${field}: stepTargetMs + yieldMs (${tuning.stepTargetMs} + ${tuning.yieldMs}) must be less than ${ttl}`,
    };
  }
  return undefined;
}

/** Creates the audit table if it does not exist (idempotent). */
export async function ensureAuditTable(client: Client): Promise<void> {
  await client.execute(
    `CREATE TABLE IF NOT EXISTS ${AUDIT_TABLE} (id INTEGER PRIMARY KEY, at TEXT NOT NULL, name TEXT NOT NULL,
       action TEXT NOT NULL, from_status TEXT, to_status TEXT, result TEXT NOT NULL, detail TEXT)`,
  );
}
