/**
 * Local D1 databases for the workerd tests: a data set is built in a libSQL file with the usual helpers (the
 * CoreScope seed, the counter table), written out as SQL, and loaded into the local D1 database that
 * `wrangler dev --persist-to <dir>` serves; afterwards its rows are read back the same way.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@libsql/client";
import { quote } from "../../../src/engine/sql.ts";
import { wranglerD1Execute } from "./wrangler.ts";

/**
 * `tables` of `client` as SQL: their CREATE statements (indexes included) and multi-row INSERTs in rowid order,
 * every value written by SQLite's own `quote()` (exact integers, REALs, text, blobs, NULL).
 */
export async function sqlDump(
  client: Client,
  tables: readonly string[],
  rowsPerInsert = 50,
): Promise<string> {
  const out: string[] = [];
  for (const table of tables) {
    const schema = await client.execute({
      sql: "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type <> 'table', name",
      args: [table],
    });
    for (const row of schema.rows) out.push(`${String(row.sql)};`);
    const info = await client.execute({
      sql: "SELECT name FROM pragma_table_info(?) ORDER BY cid",
      args: [table],
    });
    const columns = info.rows.map((r) => quote(String(r.name)));
    const values = await client.execute(
      `SELECT '(' || ${columns.map((c) => `quote(${c})`).join(" || ',' || ")} || ')' AS v FROM ${quote(table)} ORDER BY rowid`,
    );
    for (let i = 0; i < values.rows.length; i += rowsPerInsert) {
      const chunk = values.rows.slice(i, i + rowsPerInsert).map((r) => String(r.v));
      out.push(`INSERT INTO ${quote(table)} (${columns.join(", ")}) VALUES\n${chunk.join(",\n")};`);
    }
  }
  return `${out.join("\n")}\n`;
}

/** Loads `tables` of `client` into the local D1 database under `persistTo` (through a SQL file in `dir`). */
export async function loadIntoD1(
  client: Client,
  tables: readonly string[],
  dir: string,
  persistTo: string,
): Promise<void> {
  const file = join(dir, `seed-${tables.join("-")}.sql`);
  writeFileSync(file, await sqlDump(client, tables));
  await wranglerD1Execute({ persistTo, file });
}

/** The rows one query returns from the local D1 database under `persistTo` (stop `wrangler dev` first). */
export async function d1Rows(persistTo: string, sql: string): Promise<Record<string, unknown>[]> {
  const [result] = await wranglerD1Execute({ persistTo, command: sql });
  return result?.results ?? [];
}
