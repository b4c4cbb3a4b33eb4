/**
 * A local database file opened through the `libsql` binding directly, with every SQL text prepared once and
 * reused. Only for bulk work on a file (the CoreScope seed of the CLI and the benchmark), never for the service.
 *
 * Why not `@libsql/client`: its `file:` mode prepares a new native statement for every execution, and the
 * binding (libsql 0.5.x) never frees a statement — nor the values bound to it — not on garbage collection and
 * not on close. Per statement that is a few KB, which the service can afford (its statements are small and its
 * idle process stays flat), but a seed that binds ~1 KB per row retains about that much per row: a 20M-row
 * seed outgrew 24 GB. A reused statement releases its previous bindings when it is bound again.
 */

import type { InArgs, InStatement, InValue } from "@libsql/client";
import Database from "libsql";
import type { SeedDatabase } from "../seed/corescope.ts";

type Statement = ReturnType<Database.Database["prepare"]>;

export class PreparedFileDatabase implements SeedDatabase {
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Statement>();

  /** Opens (creating if needed) the file at `path`; a locked database is waited on for up to `busyTimeoutMs`. */
  constructor(path: string, busyTimeoutMs = 5000) {
    this.#db = new Database(path, { timeout: busyTimeoutMs });
  }

  async execute(statement: InStatement): Promise<{ rows: unknown[][] }> {
    const { sql, args } = typeof statement === "string" ? { sql: statement, args: [] } : statement;
    const prepared = this.#prepare(sql);
    const values = bindable(args ?? []);
    if (!prepared.reader) {
      prepared.run(values);
      return { rows: [] };
    }
    return { rows: prepared.raw(true).all(values) as unknown[][] };
  }

  /** Runs `statements` in one write transaction: all of them commit, or none. */
  async batch(statements: InStatement[], _mode: "write"): Promise<void> {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      for (const statement of statements) await this.execute(statement);
      this.#db.exec("COMMIT");
    } catch (error) {
      if (this.#db.inTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  close(): void {
    this.#statements.clear();
    this.#db.close();
  }

  #prepare(sql: string): Statement {
    let prepared = this.#statements.get(sql);
    if (prepared === undefined) {
      prepared = this.#db.prepare(sql);
      this.#statements.set(sql, prepared);
    }
    return prepared;
  }
}

/** The binding takes positional values as an array and named ones as an object keyed without the prefix. */
function bindable(args: InArgs): unknown[] | Record<string, unknown> {
  if (Array.isArray(args)) return args.map(toBindable);
  const named: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(args)) {
    named[/^[:@$]/.test(name) ? name.slice(1) : name] = toBindable(value);
  }
  return named;
}

function toBindable(value: InValue): unknown {
  if (typeof value === "boolean") return value ? 1 : 0;
  if (value instanceof Date) return value.valueOf();
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  return value;
}
