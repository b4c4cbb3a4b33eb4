/**
 * A Cloudflare D1 binding behind the part of @libsql/client's `Client` the engine uses, so the same engine runs
 * a backfill on D1 (design.md, "Beyond one database"). On Workers, `DATABASE_BINDING` names the binding.
 *
 * - `batch(statements, mode)` is one `db.batch([...])`: D1 runs a batch as one transaction and rolls all of it
 *   back when a statement fails, so a step — fence, data change, cursor and progress — commits whole or not at
 *   all, in one round trip (invariants 1 and 3). D1 has no transaction modes; every batch is a write batch.
 * - `execute(statement)` is one prepared statement's `all()`.
 * - Arguments are translated by ./d1-args.ts: named arguments become positional, `bigint`s integer literals.
 * - Results take libSQL's shape: rows indexable by column name and by position, `columns` (D1 gives rows as
 *   objects, so the order is the objects' key order: a column named like a number would come first — the
 *   engine names every column it reads), `rowsAffected` from `meta.changes`, `lastInsertRowid` from
 *   `meta.last_row_id`. Integers arrive as JS numbers; the engine selects every key and counter as text
 *   (`CAST(… AS TEXT)`), so they stay exact (invariant 8). Blobs arrive as byte arrays and become ArrayBuffers.
 * - Errors keep D1's message (`D1_ERROR: trickle_lease_lost: SQLITE_CONSTRAINT …`, so a fenced step still reads
 *   as a lost lease) and gain libSQL's `code` / `extendedCode` parsed from it, for src/engine/errors.ts.
 * - `protocol` is `"d1"`: not a local file, so the yield policy makes every pause a full one and no PRAGMA
 *   meant for a local file (checkpoints, `data_version`) is sent.
 * - `transaction()` is refused with an `UnsupportedOperationError`: D1 has no interactive transactions. Only the
 *   dry-run opens one; its route answers 409.
 *
 * Portable: no `node:*` imports.
 */
import type {
  Client,
  InArgs,
  InStatement,
  Replicated,
  ResultSet,
  Row,
  Transaction,
  TransactionMode,
  Value,
} from "@libsql/client";
import { UnsupportedOperationError } from "../engine/errors.ts";
import { type D1Value, d1Statement } from "./d1-args.ts";

/** The parts of a D1 binding (Cloudflare's `D1Database`) the adapter uses. */
export interface D1Database {
  prepare(query: string): D1PreparedStatement;
  batch(statements: D1PreparedStatement[]): Promise<D1Result[]>;
  exec(query: string): Promise<unknown>;
}

export interface D1PreparedStatement {
  bind(...values: D1Value[]): D1PreparedStatement;
  all(): Promise<D1Result>;
}

export interface D1Result {
  readonly results?: ReadonlyArray<Readonly<Record<string, unknown>>>;
  readonly meta?: { readonly changes?: number; readonly last_row_id?: number };
}

/** The `protocol` of a D1 client. */
export const D1_PROTOCOL = "d1";

/** An error D1 reported, with the SQLite codes its message names (libSQL's `code` / `extendedCode`). */
export class D1QueryError extends Error {
  readonly code: string;
  readonly extendedCode: string | undefined;

  constructor(message: string, code: string, extendedCode: string | undefined, cause: unknown) {
    super(message, { cause });
    this.name = "D1QueryError";
    this.code = code;
    this.extendedCode = extendedCode;
  }
}

/**
 * The client for the D1 binding `binding` in the Worker's `env`. Throws an `Error` naming `DATABASE_BINDING` when
 * there is no such binding, or it is not a D1 database.
 */
export function openD1Client(env: Readonly<Record<string, unknown>>, binding: string): Client {
  const db = env[binding];
  if (db === undefined || db === null) {
    throw new Error(
      `DATABASE_BINDING: this Worker has no binding named "${binding}"; add a [[d1_databases]] block with binding = "${binding}" to wrangler.toml`,
    );
  }
  if (!isD1Database(db)) {
    throw new Error(
      `DATABASE_BINDING: the binding "${binding}" is not a D1 database (it has no prepare() and batch())`,
    );
  }
  return new D1Client(db);
}

function isD1Database(value: unknown): value is D1Database {
  if (typeof value !== "object" && typeof value !== "function") return false;
  const { prepare, batch } = value as { prepare?: unknown; batch?: unknown };
  return typeof prepare === "function" && typeof batch === "function";
}

class D1Client implements Client {
  readonly protocol = D1_PROTOCOL;
  closed = false;
  readonly #db: D1Database;

  constructor(db: D1Database) {
    this.#db = db;
  }

  execute(stmt: InStatement): Promise<ResultSet>;
  execute(sql: string, args?: InArgs): Promise<ResultSet>;
  async execute(stmt: InStatement, args?: InArgs): Promise<ResultSet> {
    this.#open();
    const statement = typeof stmt === "string" ? { sql: stmt, args } : stmt;
    try {
      return resultSet(await this.#prepare(statement.sql, statement.args).all());
    } catch (error) {
      throw d1Error(error);
    }
  }

  async batch(stmts: Array<InStatement | [string, InArgs?]>, _mode?: TransactionMode): Promise<ResultSet[]> {
    this.#open();
    if (stmts.length === 0) return [];
    try {
      const prepared = stmts.map((s) => {
        if (typeof s === "string") return this.#prepare(s, undefined);
        if (Array.isArray(s)) return this.#prepare(s[0], s[1]);
        return this.#prepare(s.sql, s.args);
      });
      return (await this.#db.batch(prepared)).map(resultSet);
    } catch (error) {
      throw d1Error(error);
    }
  }

  migrate(stmts: InStatement[]): Promise<ResultSet[]> {
    return this.batch(stmts, "write");
  }

  async transaction(_mode?: TransactionMode): Promise<Transaction> {
    throw new UnsupportedOperationError(
      "Cloudflare D1 has no interactive transactions, which this needs (a dry-run rolls its step back); " +
        "a backfill itself runs on D1, one batch per step",
    );
  }

  async executeMultiple(sql: string): Promise<void> {
    this.#open();
    try {
      await this.#db.exec(sql);
    } catch (error) {
      throw d1Error(error);
    }
  }

  async sync(): Promise<Replicated> {
    return undefined;
  }

  close(): void {
    this.closed = true; // nothing to release: the binding belongs to the Worker
  }

  reconnect(): void {
    this.closed = false;
  }

  #open(): void {
    if (this.closed)
      throw new D1QueryError("CLIENT_CLOSED: the client is closed", "CLIENT_CLOSED", undefined, null);
  }

  #prepare(sql: string, args: InArgs | undefined): D1PreparedStatement {
    const statement = d1Statement(sql, args);
    const prepared = this.#db.prepare(statement.sql);
    return statement.values.length === 0 ? prepared : prepared.bind(...statement.values);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Results and errors

function resultSet(result: D1Result): ResultSet {
  const objects = result.results ?? [];
  const columns = objects[0] ? Object.keys(objects[0]) : [];
  const rows = objects.map((object) => row(columns, object));
  const rowsAffected = result.meta?.changes ?? 0;
  const lastRowId = result.meta?.last_row_id;
  const lastInsertRowid =
    typeof lastRowId === "number" && Number.isSafeInteger(lastRowId) ? BigInt(lastRowId) : undefined;
  const columnTypes = columns.map(() => "");
  return {
    columns,
    columnTypes,
    rows,
    rowsAffected,
    lastInsertRowid,
    toJSON: () => ({
      columns,
      columnTypes,
      rows: rows.map((r) => Array.from(r as ArrayLike<Value>)),
      rowsAffected,
      lastInsertRowid: lastInsertRowid?.toString() ?? null,
    }),
  };
}

/** A row as libSQL builds one: values by position (not enumerable) and by column name (the first of a name). */
function row(columns: readonly string[], object: Readonly<Record<string, unknown>>): Row {
  const r: Record<string | number, Value> = {};
  Object.defineProperty(r, "length", { value: columns.length });
  for (const [i, column] of columns.entries()) {
    const value = toValue(object[column]);
    Object.defineProperty(r, i, { value });
    Object.defineProperty(r, column, { value, enumerable: true, configurable: true, writable: true });
  }
  return r as unknown as Row;
}

function toValue(value: unknown): Value {
  if (value === null || value === undefined) return null;
  if (typeof value === "number" || typeof value === "string" || typeof value === "bigint") return value;
  if (value instanceof ArrayBuffer) return value;
  if (Array.isArray(value)) return new Uint8Array(value as number[]).buffer; // a blob, as D1 returns one
  if (ArrayBuffer.isView(value))
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice().buffer;
  if (typeof value === "boolean") return value ? 1 : 0;
  return String(value);
}

/**
 * D1's error with libSQL's codes: `…: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_TRIGGER)` at the end of its
 * message gives `code` and `extendedCode`; otherwise its prefix (`D1_ERROR`, `D1_TYPE_ERROR`…) is the code. Our
 * own argument errors (`TypeError`) and the refusal of a transaction pass unchanged.
 */
function d1Error(thrown: unknown): Error {
  if (thrown instanceof TypeError || thrown instanceof D1QueryError) return thrown;
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  const sqlite = /\b(SQLITE_[A-Z_]+)(?: \(extended: (SQLITE_[A-Z_]+)\))?\s*$/.exec(message);
  const prefix = /^(D1_[A-Z_]+):/.exec(message);
  return new D1QueryError(message, sqlite?.[1] ?? prefix?.[1] ?? "D1_ERROR", sqlite?.[2], thrown);
}
