/**
 * Proof that a migration's key can be walked, and that its SQL fragments compile against the live schema
 * (design invariant 11).
 *
 * The keyset walk (invariant 2) needs a key holding distinct, non-NULL integers: a REAL cursor reads back as
 * null, a TEXT maximum makes the frozen upper bound null, NULL keys are never visited, and duplicate keys make a
 * step's range ambiguous. The rowid (or its INTEGER PRIMARY KEY alias) is all of that by construction. Any other
 * column is accepted only with a schema that makes it unique — a full UNIQUE index or PRIMARY KEY on exactly
 * that column — and after bounded value checks: no NULL, and an integer at both ends of the index (TEXT and
 * BLOB sort after every number, so a single non-integer value of those classes shows up as the maximum).
 *
 * Every statement here is a catalogue read or one index seek (invariant 10): none scans the table. A REAL value
 * strictly inside the range cannot be found by a seek; the engine's budgeted key walk checks for it.
 */
import type { InStatement, ResultSet } from "@libsql/client";
import { type ResolvedMigration, ROWID_NAMES } from "../../migrations/define.ts";
import { classifyError } from "../errors.ts";
import { quote } from "../sql.ts";
import { checkSetClause, setClauseAsCondition } from "./fragments.ts";

/** Anything that runs one statement: a `Client` or a `Transaction`. */
export interface SchemaReader {
  execute(statement: InStatement): Promise<ResultSet>;
}

interface ColumnInfo {
  readonly name: string;
  readonly type: string;
  readonly notNull: boolean;
  /** 1-based position in the PRIMARY KEY, 0 if not part of it. */
  readonly pk: number;
}

interface TableShape {
  readonly withoutRowid: boolean;
  readonly columns: readonly ColumnInfo[];
}

/** The column `name` of the table (case-insensitively, as SQLite resolves it), if any. */
function columnOf(shape: TableShape, name: string): ColumnInfo | undefined {
  return shape.columns.find((c) => c.name.toLowerCase() === name.toLowerCase());
}

async function readTable(client: SchemaReader, table: string): Promise<TableShape | undefined> {
  const info = await client.execute({
    sql: 'SELECT name, type, "notnull" AS nn, pk FROM pragma_table_info(?) ORDER BY cid',
    args: [table],
  });
  if (info.rows.length === 0) return undefined;
  const columns = info.rows.map((r) => ({
    name: String(r.name),
    type: String(r.type ?? ""),
    notNull: Number(r.nn) === 1,
    pk: Number(r.pk),
  }));
  return { withoutRowid: await isWithoutRowid(client, table), columns };
}

async function isWithoutRowid(client: SchemaReader, table: string): Promise<boolean> {
  try {
    const list = await client.execute({ sql: "SELECT wr FROM pragma_table_list(?)", args: [table] });
    if (list.rows.length > 0) return list.rows.some((r) => Number(r.wr) === 1);
  } catch (error) {
    if (classifyError(error).kind === "transient") throw error;
    // pragma_table_list needs SQLite 3.37; older servers fall through to the table's own SQL.
  }
  const sql = await client.execute({
    sql: "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
    args: [table],
  });
  return /\)\s*WITHOUT\s+ROWID\s*(,[^)]*)?$/i.test(String(sql.rows[0]?.sql ?? "").trim());
}

/**
 * The single-column INTEGER PRIMARY KEY of a rowid table, which is the rowid under another name, if the table
 * has one. `INTEGER PRIMARY KEY DESC` is not an alias (a SQLite quirk): SQLite then builds a separate index for
 * the primary key, which is how it is told apart here.
 */
async function rowidAlias(
  client: SchemaReader,
  table: string,
  shape: TableShape,
): Promise<string | undefined> {
  if (shape.withoutRowid) return undefined;
  const pk = shape.columns.filter((c) => c.pk > 0);
  const only = pk[0];
  if (pk.length !== 1 || !only || only.type.trim().toUpperCase() !== "INTEGER") return undefined;
  const indexes = await client.execute({
    sql: "SELECT 1 AS x FROM pragma_index_list(?) WHERE origin = 'pk'",
    args: [table],
  });
  return indexes.rows.length === 0 ? only.name : undefined;
}

/** Whether `key` means the rowid itself: one of its names, and no real column takes that name. */
function isRowidName(shape: TableShape, key: string): boolean {
  return ROWID_NAMES.includes(key.toLowerCase()) && columnOf(shape, key) === undefined;
}

/** What the unique indexes on `table` say about `column`: a full one covering exactly it, or only partial ones. */
async function uniqueIndexOn(
  client: SchemaReader,
  table: string,
  column: string,
): Promise<{ full: boolean; partial: string | undefined }> {
  const indexes = await client.execute({
    sql: 'SELECT name, "unique" AS u, partial FROM pragma_index_list(?)',
    args: [table],
  });
  let partial: string | undefined;
  for (const index of indexes.rows) {
    if (Number(index.u) !== 1) continue;
    // pragma_index_info lists the key columns only (a WITHOUT ROWID table's PK index included); an expression
    // column has a NULL name and never matches.
    const info = await client.execute({
      sql: "SELECT name FROM pragma_index_info(?)",
      args: [String(index.name)],
    });
    const only = info.rows.length === 1 ? info.rows[0]?.name : undefined;
    if (typeof only !== "string" || only.toLowerCase() !== column.toLowerCase()) continue;
    // A partial index proves nothing about the rows its WHERE clause leaves out: they may repeat keys.
    if (Number(index.partial) === 1) partial ??= String(index.name);
    else return { full: true, partial: undefined };
  }
  return { full: false, partial };
}

/**
 * Why this migration's key cannot be walked, or `undefined` if it can. The table must exist. The message names
 * the table, the key column and, for a value check, the offending value; the caller prefixes the migration.
 */
export async function keyProblem(
  client: SchemaReader,
  migration: ResolvedMigration,
): Promise<string | undefined> {
  const { table, key } = migration;
  const where = `table "${table}", key "${key}"`;
  const shape = await readTable(client, table);
  if (!shape) return `${where}: no such table`;
  if (isRowidName(shape, key)) {
    return shape.withoutRowid ? `${where}: the table is WITHOUT ROWID, so it has no rowid` : undefined;
  }
  const column = columnOf(shape, key);
  if (!column) return `${where}: no such column`;
  // SQLite's affinity rule: a declared type containing "INT" gives the column INTEGER affinity.
  if (!/INT/i.test(column.type)) {
    return `${where}: declared type ${column.type || "(none)"} is not an integer type; the key must be an INTEGER column (or the rowid)`;
  }
  // The rowid under another name: unique, non-NULL integers by construction, nothing to check.
  if ((await rowidAlias(client, table, shape))?.toLowerCase() === key.toLowerCase()) return undefined;
  const unique = await uniqueIndexOn(client, table, column.name);
  if (!unique.full) {
    const partial = unique.partial
      ? `; the UNIQUE index "${unique.partial}" is partial (it has a WHERE clause), so the rows it leaves out may repeat keys`
      : "";
    return `${where} must be unique: the rowid, an INTEGER PRIMARY KEY, or a column with a full UNIQUE index (or PRIMARY KEY) on exactly that column${partial}`;
  }
  return keyValueProblem(client, where, table, column);
}

/**
 * Bounded checks of the key's values, each one seek into the unique index: a NULL key, and a non-integer at the
 * top or bottom of the index. SQLite sorts NULL < numbers < TEXT < BLOB, so any TEXT or BLOB key is the maximum.
 */
async function keyValueProblem(
  client: SchemaReader,
  where: string,
  table: string,
  column: ColumnInfo,
): Promise<string | undefined> {
  const t = quote(table);
  const k = quote(column.name);
  if (!column.notNull) {
    const nulls = await client.execute(`SELECT 1 AS x FROM ${t} WHERE ${k} IS NULL LIMIT 1`);
    if (nulls.rows.length > 0) {
      return `${where}: value NULL is not an integer (a UNIQUE column admits any number of NULLs, and a NULL key is never visited); fill it in or declare the column NOT NULL`;
    }
  }
  for (const order of ["DESC", "ASC"]) {
    const end = await client.execute(
      `SELECT quote(${k}) AS q, typeof(${k}) AS ty FROM ${t} WHERE ${k} IS NOT NULL ORDER BY ${k} ${order} LIMIT 1`,
    );
    const row = end.rows[0];
    if (row && row.ty !== "integer") {
      const shown = String(row.q);
      const value = shown.length > 80 ? `${shown.slice(0, 80)}…` : shown;
      return `${where}: value ${value} (${String(row.ty)}) is not an integer; every key must be an integer`;
    }
  }
  return undefined;
}

/**
 * Why the migration's SQL fragments cannot run against the live schema, or `undefined`. Each fragment is
 * compiled inside a statement shaped like the engine's that touches no row (`SELECT 1 FROM t WHERE (<filter>)
 * LIMIT 0`, the `set` assignments read as comparisons the same way), so an unknown column, a wrong function or a syntax error is refused
 * before any row changes. When the key is the rowid, a `set` must not assign the table's INTEGER PRIMARY KEY
 * alias (nor any name of the rowid): that moves the key too.
 *
 * Until every required table exists and every prerequisite column has been added, the fragments may name things
 * that do not exist yet; the check then passes, and the first statement that uses them reports any error.
 * Transient errors (a locked database) are thrown, not reported as a problem of the definition.
 */
export async function fragmentProblem(
  client: SchemaReader,
  migration: ResolvedMigration,
): Promise<string | undefined> {
  const { table, key } = migration;
  const shape = await readTable(client, table);
  if (!shape) return undefined;
  for (const required of migration.requires) {
    if (required.toLowerCase() === table.toLowerCase()) continue;
    if (!(await readTable(client, required))) return undefined;
  }
  for (const p of migration.prerequisites) {
    if (p.kind !== "column") continue;
    const target = p.table.toLowerCase() === table.toLowerCase() ? shape : await readTable(client, p.table);
    if (!target || !columnOf(target, p.column)) return undefined;
  }
  const t = quote(table);
  const set = migration.definition.set;
  const compiled: [string, string][] = [
    ["filter", `SELECT 1 FROM ${t} WHERE (${migration.filter}) LIMIT 0`],
    ["verify", `SELECT 1 FROM ${t} WHERE (${migration.verify}) LIMIT 0`],
  ];
  // Not EXPLAIN: on a local libSQL client (0.18) an EXPLAIN statement is left in progress on its connection,
  // holding a read lock that blocks other writers and every later COMMIT there ("SQL statements in progress").
  // Not `WHERE 0 AND (<filter>)` either: SQLite drops the right side of a constant-false AND while parsing, so
  // an unknown column there is never resolved. `LIMIT 0` compiles the whole WHERE and jumps to the end before
  // opening the table. The SET clause is compiled the same way, its assignments read as comparisons
  // (`setClauseAsCondition`), so the check takes no write lock and writes nothing, not even a no-op UPDATE.
  if (set !== undefined)
    compiled.push(["set", `SELECT 1 FROM ${t} WHERE ${setClauseAsCondition(set)} LIMIT 0`]);
  for (const [field, sql] of compiled) {
    try {
      await client.execute(sql);
    } catch (error) {
      const classified = classifyError(error);
      if (classified.kind === "transient") throw error;
      return `${field} does not compile against table "${table}": ${classified.message}`;
    }
  }
  if (set === undefined) return undefined;
  const alias = await rowidAlias(client, table, shape);
  const keyIsRowid = isRowidName(shape, key) || alias?.toLowerCase() === key.toLowerCase();
  if (!keyIsRowid) return undefined;
  const rowidNames = ROWID_NAMES.filter((n) => columnOf(shape, n) === undefined);
  const moving = [...rowidNames, ...(alias ? [alias.toLowerCase()] : [])];
  // The fragment passed the same check when the definition was resolved, so this does not throw.
  const moved = checkSetClause(set, "set").find((c) => moving.includes(c));
  if (moved === undefined) return undefined;
  const what = alias ? `the rowid of table "${table}" (its INTEGER PRIMARY KEY is "${alias}")` : "the rowid";
  return `set assigns "${moved}", which is ${what} and the key "${key}": a change must never move the key`;
}
