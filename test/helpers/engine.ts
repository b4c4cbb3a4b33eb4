/**
 * Helpers for the single-process engine tests: a controllable clock, a recording wrapper around a real
 * client (every call still runs against the real database), a small counter table with a non-idempotent
 * migration, and readers for `_async_migrations`.
 */
import type { Client, InStatement, InValue, ResultSet, TransactionMode } from "@libsql/client";
import type { Clock } from "../../src/engine/clock.ts";
import type { RunnerEvent } from "../../src/engine/events.ts";
import type { MigrationDefinition } from "../../src/migrations/define.ts";

/**
 * A clock that only moves when told to: `sleep(ms)` advances it by `ms` and returns at once, and anything a
 * test `defer`s (work started by a synchronous event listener) finishes before `sleep` returns, so it lands
 * between two steps deterministically. `hold()` makes the next `sleep` block until released.
 *
 * Fake time only moves when the runner sleeps, so a run that never terminates would spin forever; after
 * `maxSleeps` sleeps `sleep` throws instead, which fails the migration (or the run) with a clear message.
 */
export class FakeClock implements Clock {
  readonly #maxSleeps: number;
  #now = 0;
  #pending: Promise<unknown>[] = [];
  #hold: { reached: () => void; release: Promise<void> } | undefined;
  readonly sleeps: number[] = [];

  constructor(options: { maxSleeps?: number } = {}) {
    this.#maxSleeps = options.maxSleeps ?? 5000;
  }

  now(): number {
    return this.#now;
  }

  advance(ms: number): void {
    this.#now += ms;
  }

  /** Starts `task` now; the runner's next `sleep` (the yield after a step) waits for it. */
  defer(task: () => Promise<unknown>): void {
    this.#pending.push(task());
  }

  /** The next `sleep` blocks; `reached` resolves when the runner is inside it, `release()` lets it go on. */
  hold(): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedPromise = new Promise<void>((r) => {
      reached = r;
    });
    const releasePromise = new Promise<void>((r) => {
      release = r;
    });
    this.#hold = { reached, release: releasePromise };
    return { reached: reachedPromise, release };
  }

  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    if (this.sleeps.length > this.#maxSleeps) {
      throw new Error(`FakeClock: more than ${this.#maxSleeps} sleeps; the run does not terminate`);
    }
    this.#now += Math.max(0, ms);
    const pending = this.#pending.splice(0);
    await Promise.all(pending);
    const hold = this.#hold;
    if (hold) {
      this.#hold = undefined;
      hold.reached();
      await hold.release;
    }
  }
}

/** One call the recording client saw. */
export interface RecordedCall {
  readonly method: "execute" | "batch" | "transaction" | "executeMultiple" | "migrate";
  readonly mode: TransactionMode | undefined;
  readonly statements: readonly InStatement[];
}

export interface RecordingClient {
  readonly client: Client;
  readonly calls: RecordedCall[];
}

export interface RecordingOptions {
  /** Runs after every successful `batch` and is awaited before the caller sees the result. */
  readonly afterBatch?: (statements: readonly InStatement[], results: ResultSet[]) => Promise<void> | void;
  /** Runs before every `batch` (e.g. to advance a fake clock by the step's cost). */
  readonly beforeBatch?: (statements: readonly InStatement[]) => Promise<void> | void;
}

/**
 * Wraps a real client: every call is recorded and then delegated unchanged to the real client, so the real
 * database does all the work (this is observation, not a mock).
 */
export function recordingClient(real: Client, options: RecordingOptions = {}): RecordingClient {
  const calls: RecordedCall[] = [];
  const client = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === "execute") {
        return (stmt: InStatement | string, args?: unknown) => {
          const statement: InStatement =
            typeof stmt === "string" && args !== undefined
              ? { sql: stmt, args: args as Record<string, InValue> }
              : stmt;
          calls.push({ method: "execute", mode: undefined, statements: [statement] });
          return args === undefined
            ? target.execute(stmt as InStatement)
            : target.execute(stmt as string, args as Record<string, InValue>);
        };
      }
      if (prop === "batch") {
        return async (statements: InStatement[], mode?: TransactionMode) => {
          calls.push({ method: "batch", mode, statements: [...statements] });
          await options.beforeBatch?.(statements);
          const results = await target.batch(statements, mode);
          await options.afterBatch?.(statements, results);
          return results;
        };
      }
      if (prop === "transaction" || prop === "executeMultiple" || prop === "migrate") {
        const method = prop;
        return (...args: unknown[]) => {
          calls.push({ method, mode: undefined, statements: [] });
          const fn = Reflect.get(target, prop, target) as (...a: unknown[]) => unknown;
          return fn.apply(target, args);
        };
      }
      const value = Reflect.get(target, prop, receiver === client ? target : receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { client, calls };
}

export function sqlOf(statement: InStatement): string {
  return typeof statement === "string" ? statement : statement.sql;
}

export function argsOf(statement: InStatement): readonly InValue[] | Readonly<Record<string, InValue>> {
  return typeof statement === "string" ? [] : (statement.args ?? []);
}

const WRITE_SQL = /^\s*(UPDATE|INSERT|DELETE|REPLACE|CREATE|ALTER|DROP)\b/i;

/** Whether a statement changes the database (by its leading keyword). */
export function isWrite(statement: InStatement): boolean {
  return WRITE_SQL.test(sqlOf(statement));
}

/** The step size a step batch asked for (the `:trickle_n` argument of its progress update), if it is a step. */
export function stepSizeOf(statements: readonly InStatement[]): number | undefined {
  for (const s of statements) {
    const args = argsOf(s);
    // The progress update records the step's size; the range read before a step (`readRangeEnd`) is not a step.
    if (!/batch_size = :trickle_n/.test(sqlOf(s))) continue;
    if (!Array.isArray(args) && ":trickle_n" in args) return Number(args[":trickle_n"]);
  }
  return undefined;
}

/** Collects a runner's events; `of(type)` narrows them. */
export class EventLog {
  readonly events: RunnerEvent[] = [];
  readonly listener = (event: RunnerEvent): void => {
    this.events.push(event);
  };

  of<T extends RunnerEvent["type"]>(type: T): Extract<RunnerEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<RunnerEvent, { type: T }> => e.type === type);
  }
}

/** `t(id INTEGER PRIMARY KEY, n, done, bad)` with the given keys; `n` counts how often a step touched a row. */
export async function createCounterTable(
  client: Client,
  keys: readonly bigint[],
  table = "t",
  options: { doneKeys?: readonly bigint[] } = {},
): Promise<void> {
  await client.execute(
    `CREATE TABLE ${table} (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0, bad INTEGER NOT NULL DEFAULT 0)`,
  );
  const done = new Set(options.doneKeys ?? []);
  const statements = keys.map((k) => ({
    sql: `INSERT INTO ${table} (id, done) VALUES (?, ?)`,
    args: [k, done.has(k) ? 1n : 0n],
  }));
  for (let i = 0; i < statements.length; i += 5000)
    await client.batch(statements.slice(i, i + 5000), "write");
}

/**
 * Adds 1 to `n` of every row, once. Without a guard in its filter it is not idempotent: a range applied twice
 * leaves `n = 2`, which is how the tests see double application.
 */
export function counterMigration(
  overrides: Partial<Pick<MigrationDefinition, "name" | "table" | "filter" | "verify" | "tuning">> & {
    set?: string;
  } = {},
): MigrationDefinition {
  return {
    name: overrides.name ?? "counter_v1",
    description: "n = n + 1 on every row",
    table: overrides.table ?? "t",
    key: "id",
    // No guard: every row is a candidate, and verification has nothing to check (see above).
    filter: overrides.filter ?? "1",
    verify: overrides.verify ?? "0",
    set: overrides.set ?? "n = n + 1",
    ...(overrides.tuning ? { tuning: overrides.tuning } : {}),
  };
}

/** `id:n` of every row in key order (keys as exact text). */
export async function countersById(client: Client, table = "t"): Promise<Map<string, bigint>> {
  // Ordered by the integer column (an unqualified `id` would sort by the text alias).
  const result = await client.execute(`SELECT CAST(id AS TEXT) AS id, n FROM ${table} ORDER BY ${table}.id`);
  return new Map(result.rows.map((r) => [String(r.id), BigInt(r.n as bigint)]));
}

/** The raw `_async_migrations` row with integers as exact text, or undefined. */
export async function rawStateRow(
  client: Client,
  name: string,
): Promise<Record<string, string | null> | undefined> {
  const info = await client.execute("SELECT name FROM pragma_table_info('_async_migrations')");
  const columns = info.rows.map((r) => String(r.name));
  if (columns.length === 0) return undefined;
  const select = columns.map((c) => `CAST("${c}" AS TEXT) AS "${c}"`).join(", ");
  const result = await client.execute({
    sql: `SELECT ${select} FROM _async_migrations WHERE name = ?`,
    args: [name],
  });
  const row = result.rows[0];
  if (!row) return undefined;
  return Object.fromEntries(columns.map((c) => [c, row[c] === null ? null : String(row[c])]));
}

/** Whether `table` exists. */
export async function tableExists(client: Client, table: string): Promise<boolean> {
  const result = await client.execute({
    sql: "SELECT 1 FROM sqlite_master WHERE name = ?",
    args: [table],
  });
  return result.rows.length > 0;
}

/** Every row of `table` as text, for "nothing changed" comparisons. */
export async function dumpTable(client: Client, table: string): Promise<string[]> {
  const result = await client.execute(`SELECT * FROM ${table} ORDER BY rowid`);
  return result.rows.map((r) =>
    JSON.stringify(Object.values(r), (_k, v) => (typeof v === "bigint" ? `${v}n` : v)),
  );
}

/** A CoreScope legacy transmission list: ids 1..count, last_seen 0, one observation each at `1000 + id`. */
export function legacyTransmissions(count: number): { id: bigint; lastSeen: bigint; timestamps: bigint[] }[] {
  return Array.from({ length: count }, (_, i) => ({
    id: BigInt(i + 1),
    lastSeen: 0n,
    timestamps: [BigInt(1000 + i + 1)],
  }));
}

/** What `promise` rejects with; fails the test when it resolves. */
export async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}
