/**
 * The definition API for keyset backfills.
 *
 * A migration names its table, its integer key, which rows are candidates (`filter`) and how to change one
 * key range: either a `set` clause (the common case, run as one UPDATE) or a custom `step` that returns its own
 * statements. The engine walks the key in ascending `(cursor, upper]` ranges and commits each range together
 * with its progress in one write batch.
 */
import type { InStatement, InValue } from "@libsql/client";
import { checkCondition, checkSetClause } from "../engine/plan/fragments.ts";
import { assertIdentifier, MIGRATION_NAME } from "../engine/sql.ts";
import { checkProbe, type ProbeThrottle, parseQuietHours, type QuietWindow } from "../engine/throttle.ts";

/** Per-migration tuning; anything left out falls back to the runner's defaults. */
export interface MigrationTuning {
  /** Target duration of one step (one write transaction), in ms. */
  readonly stepTargetMs?: number;
  /** Rows in the first step of a run (kept small: nothing is known about the table yet). */
  readonly initialBatch?: number;
  readonly minBatch?: number;
  readonly maxBatch?: number;
  /** Pause between steps so waiting writers get the lock, in ms. */
  readonly yieldMs?: number;
  /** Quarantined (poison) rows allowed before the run fails; 0 turns quarantine off for this migration. */
  readonly maxQuarantined?: number;
}

/** Throttling of one migration, on top of the runner's (see src/engine/throttle.ts). */
export interface MigrationThrottle {
  /** A read query whose latency says whether the database can take more work now. */
  readonly probe?: ProbeThrottle;
  /** UTC windows `HH:MM-HH:MM` in which this migration does not run. */
  readonly quietHours?: string | readonly string[];
}

/** Something a migration needs before its first step; created idempotently when the run starts. */
export type Prerequisite =
  | {
      readonly kind: "index";
      readonly name: string;
      readonly table: string;
      readonly columns: readonly string[];
    }
  | {
      readonly kind: "column";
      readonly table: string;
      readonly column: string;
      readonly type: "INTEGER" | "TEXT" | "REAL" | "BLOB" | "NUMERIC";
    };

/**
 * The key range of one step, for custom steps. `where` is an SQL condition on the migration's key that
 * selects exactly this step's range; it uses named parameters, so put `args` into the statement's named args.
 */
export interface StepRange {
  /** The key range alone. */
  readonly where: string;
  /** The key range and the migration's candidate filter. */
  readonly candidates: string;
  readonly args: Readonly<Record<string, InValue>>;
}

interface BaseDefinition {
  /** Unique, versioned name, e.g. `tx_last_seen_backfill_v1`. Never reuse a name for a different change. */
  readonly name: string;
  readonly description: string;
  readonly table: string;
  /**
   * Integer key walked in ascending order (default `id`): the rowid, its INTEGER PRIMARY KEY alias, or an
   * INTEGER column with a full (not partial) single-column UNIQUE index or PRIMARY KEY whose values the engine
   * checks before the first step (no NULL, integers only); see src/engine/plan/key-check.ts.
   */
  readonly key?: string;
  /**
   * SQL condition on a row of `table` selecting candidate rows: one expression (no comments, no `;`, balanced
   * parentheses), checked against the live schema before the first step. Default: every row is a candidate.
   */
  readonly filter?: string;
  /**
   * SQL condition selecting rows that still need work after a pass; rows it finds get another pass (at most a
   * few) before the run fails. Default: `filter`, which suits a change that makes a row stop matching its
   * filter (`last_seen = 0` → set `last_seen`). With neither `filter` nor `verify`, every row is changed exactly
   * once in one pass and nothing is verified (verify = `0`): a change like `n = n + 1` leaves no trace a
   * condition could see, and the old default (verify = filter = every row) re-applied it on every pass.
   */
  readonly verify?: string;
  /** Tables that must exist before the migration can start (default: `table`); until then it waits. */
  readonly requires?: readonly string[];
  readonly prerequisites?: readonly Prerequisite[];
  readonly tuning?: MigrationTuning;
  /** Migrations (by name) that must be `done` before this one starts; all must be registered alongside it. */
  readonly dependsOn?: readonly string[];
  readonly throttle?: MigrationThrottle;
}

/** The common form: one `UPDATE table SET <set> WHERE <range> AND (<filter>)` per step. */
export interface UpdateMigration extends BaseDefinition {
  /**
   * The SET clause, e.g. `last_seen = COALESCE((SELECT MAX(timestamp) …), last_seen)`: assignments
   * `column = expression` or `(a, b) = (…)` separated by commas, with no comment, `;`, `WHERE` or `FROM` of its
   * own. It must not assign the key (nor the rowid when the key is the rowid): the walk would meet moved rows
   * again.
   */
  readonly set: string;
  readonly step?: undefined;
}

/** Any other change: return the statements for one key range; they commit in the step's transaction. */
export interface CustomMigration extends BaseDefinition {
  readonly set?: undefined;
  readonly step: (range: StepRange) => InStatement[];
}

export type MigrationDefinition = UpdateMigration | CustomMigration;

/** A validated definition with every default applied. */
export interface ResolvedMigration {
  readonly definition: MigrationDefinition;
  readonly name: string;
  readonly table: string;
  readonly key: string;
  readonly filter: string;
  readonly verify: string;
  readonly requires: readonly string[];
  readonly prerequisites: readonly Prerequisite[];
  readonly tuning: MigrationTuning;
  readonly dependsOn: readonly string[];
  readonly probe: ProbeThrottle | undefined;
  readonly quietHours: readonly QuietWindow[];
}

const COLUMN_TYPES = new Set(["INTEGER", "TEXT", "REAL", "BLOB", "NUMERIC"]);

/**
 * Validates a definition and applies defaults. Throws a plain `Error` naming the migration and the field for
 * anything that is wrong, before anything is written anywhere.
 */
export function resolveMigration(definition: MigrationDefinition): ResolvedMigration {
  const where = `migration ${JSON.stringify((definition as { name?: unknown })?.name)}`;
  if (typeof definition !== "object" || definition === null)
    throw new Error("a migration definition must be an object");
  if (typeof definition.name !== "string" || !MIGRATION_NAME.test(definition.name)) {
    throw new Error(`${where}: name must match ${MIGRATION_NAME}`);
  }
  const table = assertIdentifier(definition.table, `${where}: table`);
  const key = assertIdentifier(definition.key ?? "id", `${where}: key`);
  const hasSet = typeof definition.set === "string" && definition.set.trim() !== "";
  const hasStep = typeof definition.step === "function";
  if (hasSet === hasStep)
    throw new Error(`${where}: give exactly one of "set" (an SQL SET clause) or "step" (a function)`);
  if (hasSet) checkAssignments(definition.set as string, key, `${where}: set`);
  const givenFilter =
    definition.filter === undefined ? undefined : checkCondition(definition.filter, `${where}: filter`);
  const givenVerify =
    definition.verify === undefined ? undefined : checkCondition(definition.verify, `${where}: verify`);
  // Every row is a candidate unless a filter says otherwise.
  const filter = givenFilter ?? EVERY_ROW;
  // With a filter, the rows still matching it after a pass are the ones left to do. With neither a filter nor
  // a verify there is nothing a condition could tell apart: one pass changes every row once, verification
  // finds nothing (a condition that is never true), so no second pass re-applies a non-idempotent change.
  const verify = givenVerify ?? givenFilter ?? NOTHING_TO_VERIFY;
  const requires = (definition.requires ?? [table]).map((t, i) =>
    assertIdentifier(t, `${where}: requires[${i}]`),
  );
  const prerequisites = (definition.prerequisites ?? []).map((p, i) =>
    checkPrerequisite(p, `${where}: prerequisites[${i}]`),
  );
  const tuning = checkTuning(definition.tuning ?? {}, `${where}: tuning`);
  const dependsOn = checkDependsOn(definition.dependsOn, definition.name, `${where}: dependsOn`);
  const throttle = definition.throttle ?? {};
  if (typeof throttle !== "object" || throttle === null)
    throw new Error(`${where}: throttle must be an object`);
  const probe =
    throttle.probe === undefined ? undefined : checkProbe(throttle.probe, `${where}: throttle.probe`);
  const quietHours =
    throttle.quietHours === undefined
      ? []
      : parseQuietHours(throttle.quietHours, `${where}: throttle.quietHours`);
  return {
    definition,
    name: definition.name,
    table,
    key,
    filter,
    verify,
    requires,
    prerequisites,
    tuning,
    dependsOn,
    probe,
    quietHours,
  };
}

function checkDependsOn(value: unknown, self: string, what: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`${what} must be a list of migration names`);
  const names = value.map((n, i) => {
    if (typeof n !== "string" || !MIGRATION_NAME.test(n))
      throw new Error(`${what}[${i}] must be a migration name`);
    if (n === self) throw new Error(`${what}[${i}]: a migration cannot depend on itself`);
    return n;
  });
  return [...new Set(names)];
}

/**
 * Checks the dependencies of a set of migrations registered together: every name in `dependsOn` must be one of
 * them, and there must be no cycle. Throws an `Error` naming the migration (start-up error).
 */
export function checkDependencies(migrations: readonly ResolvedMigration[]): void {
  const byName = new Map(migrations.map((m) => [m.name, m]));
  for (const m of migrations) {
    for (const dep of m.dependsOn) {
      if (!byName.has(dep)) {
        throw new Error(
          `migration "${m.name}": dependsOn names "${dep}", which is not registered (enable it as well, e.g. in TRICKLE_MIGRATIONS)`,
        );
      }
    }
  }
  // Depth-first search; a node met again while on the stack closes a cycle.
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, path: string[]): void => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") {
      const cycle = [...path.slice(path.indexOf(name)), name];
      throw new Error(`migrations depend on each other in a cycle: ${cycle.join(" → ")}`);
    }
    state.set(name, "visiting");
    for (const dep of byName.get(name)?.dependsOn ?? []) visit(dep, [...path, name]);
    state.set(name, "done");
  };
  for (const m of migrations) visit(m.name, []);
}

/** Identity function that validates eagerly, so a bad built-in fails at import time. */
export function defineMigration<T extends MigrationDefinition>(definition: T): T {
  resolveMigration(definition);
  return definition;
}

/** The default `filter`: every row is a candidate. */
export const EVERY_ROW = "1";
/** The default `verify` without a filter: a condition no row meets, so verification finds nothing left. */
export const NOTHING_TO_VERIFY = "0";

/** Names SQLite resolves to the rowid of a rowid table (unless a real column takes the name). */
export const ROWID_NAMES: readonly string[] = ["rowid", "_rowid_", "oid"];

/**
 * Checks the `set` clause lexically (see src/engine/plan/fragments.ts) and that it does not write the key: a
 * row whose key moves forward would be met again by a later step and changed twice, one that moves backward
 * would be missed. When the key is the rowid, any name of the rowid counts. The table's INTEGER PRIMARY KEY
 * alias of the rowid is only known from the live schema; `fragmentProblem` checks that one.
 */
function checkAssignments(set: string, key: string, what: string): void {
  const assigned = checkSetClause(set, what);
  const keyNames = ROWID_NAMES.includes(key.toLowerCase()) ? ROWID_NAMES : [key.toLowerCase()];
  const moved = assigned.find((column) => keyNames.includes(column));
  if (moved !== undefined) {
    throw new Error(
      `${what} assigns "${moved}", which is the key "${key}": a change must never move the key (the walk would meet moved rows again or miss them)`,
    );
  }
}

function checkPrerequisite(p: Prerequisite, what: string): Prerequisite {
  if (p?.kind === "index") {
    assertIdentifier(p.name, `${what}.name`);
    assertIdentifier(p.table, `${what}.table`);
    if (!Array.isArray(p.columns) || p.columns.length === 0)
      throw new Error(`${what}.columns must list columns`);
    for (const [i, c] of p.columns.entries()) assertIdentifier(c, `${what}.columns[${i}]`);
    return p;
  }
  if (p?.kind === "column") {
    assertIdentifier(p.table, `${what}.table`);
    assertIdentifier(p.column, `${what}.column`);
    if (!COLUMN_TYPES.has(p.type))
      throw new Error(`${what}.type must be one of ${[...COLUMN_TYPES].join(", ")}`);
    return p;
  }
  throw new Error(`${what}.kind must be "index" or "column"`);
}

function checkTuning(tuning: MigrationTuning, what: string): MigrationTuning {
  for (const [field, value] of Object.entries(tuning)) {
    if (
      !["stepTargetMs", "initialBatch", "minBatch", "maxBatch", "yieldMs", "maxQuarantined"].includes(field)
    ) {
      throw new Error(`${what}: unknown field "${field}"`);
    }
    const min = field === "yieldMs" || field === "maxQuarantined" ? 0 : 1;
    if (!Number.isInteger(value) || (value as number) < min)
      throw new Error(`${what}.${field} must be an integer ≥ ${min}`);
  }
  return tuning;
}
