/**
 * A migration's prerequisites (a column it writes, an index its steps need): whether one is there already, and
 * the statement that creates it. The runner creates missing ones in fenced transactions
 * (`MigrationPlan.ensurePrerequisites`); the dry-run adds missing columns inside its rolled-back transaction.
 */
import type { Prerequisite } from "../../migrations/define.ts";
import { quote } from "../sql.ts";
import type { Queryable } from "../state/schema.ts";

export function prerequisiteStatement(p: Prerequisite): string {
  if (p.kind === "column") return `ALTER TABLE ${quote(p.table)} ADD COLUMN ${quote(p.column)} ${p.type}`;
  return `CREATE INDEX IF NOT EXISTS ${quote(p.name)} ON ${quote(p.table)} (${p.columns.map(quote).join(", ")})`;
}

export async function isSatisfied(q: Queryable, p: Prerequisite): Promise<boolean> {
  if (p.kind === "column") {
    const cols = await q.execute({ sql: "SELECT name FROM pragma_table_info(?)", args: [p.table] });
    return cols.rows.some((r) => String(r.name).toLowerCase() === p.column.toLowerCase());
  }
  // Any index whose leading columns are the wanted ones will do, whatever its name (CoreScope's
  // idx_observations_tx_ts already covers observations(transmission_id, timestamp)).
  const indexes = await q.execute({ sql: "SELECT name FROM pragma_index_list(?)", args: [p.table] });
  for (const index of indexes.rows) {
    const info = await q.execute({
      sql: "SELECT name FROM pragma_index_info(?) ORDER BY seqno",
      args: [String(index.name)],
    });
    const leading = info.rows.slice(0, p.columns.length).map((r) => String(r.name).toLowerCase());
    if (leading.length === p.columns.length && leading.every((c, i) => c === p.columns[i]?.toLowerCase()))
      return true;
  }
  return false;
}
