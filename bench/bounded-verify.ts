/**
 * `npx tsx bench/bounded-verify.ts [--rows N] [--lease-ms N] [--db FILE]`
 *
 * Invariant 10 at scale: a migration whose `verify` has no index, on a table of N rows (default 10M), run with a
 * short lease (default 1 s, slice budget half of it). Before trickle walked counting and verification in
 * budgeted pieces, the one verification statement outlived such a lease and the run never finished. Prints the
 * time of each phase (counting, data walk, verifying), the largest piece, and the one-statement verification
 * for comparison; the database is built with one recursive INSERT and kept for reruns (`--db`).
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@libsql/client";
import { formatCount, formatDuration } from "../src/cli/progress.ts";
import { Runner } from "../src/engine/runner.ts";
import type { MigrationDefinition } from "../src/migrations/define.ts";

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "10000000" },
    "lease-ms": { type: "string", default: "1000" },
    db: { type: "string", default: "data/bench-bounded-verify.db" },
  },
});
const rows = Number(values.rows);
const leaseTtlMs = Number(values["lease-ms"]);
if (!Number.isSafeInteger(rows) || rows < 1 || !Number.isSafeInteger(leaseTtlMs) || leaseTtlMs < 100) {
  process.stderr.write("bounded-verify: --rows and --lease-ms must be whole numbers (lease ≥ 100)\n");
  process.exit(2);
}
const path = resolve(values.db);
mkdirSync(dirname(path), { recursive: true });
const fresh = !existsSync(path);
const client = createClient({ url: `file:${path}`, intMode: "bigint", timeout: 5000 });

const t0 = performance.now();
if (fresh) {
  await client.execute("PRAGMA journal_mode = WAL");
  await client.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, price INTEGER NOT NULL, cents INTEGER)");
  // Every row already done except the first and the last: the walks still cover all N keys.
  await client.execute({
    sql: `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
          INSERT INTO items (id, price, cents) SELECT i, i % 1000, CASE WHEN i IN (1, ?) THEN NULL ELSE (i % 1000) * 100 END FROM c`,
    args: [BigInt(rows), BigInt(rows)],
  });
  process.stdout.write(
    `built ${formatCount(rows)} rows in ${formatDuration((performance.now() - t0) / 1000)}\n`,
  );
} else {
  await client.execute(
    "UPDATE items SET cents = NULL WHERE id IN (SELECT MIN(id) FROM items UNION SELECT MAX(id) FROM items)",
  );
  await client.execute("DELETE FROM _async_migrations");
}

const verify = "cents IS NULL OR cents <> price * 100"; // no index can serve it
const oneShotStart = performance.now();
await client.execute(`SELECT COUNT(*) FROM items WHERE ${verify}`);
const oneShotMs = performance.now() - oneShotStart;

const migration: MigrationDefinition = {
  name: "items_cents_v1",
  description: "cents = price * 100",
  table: "items",
  key: "id",
  filter: "cents IS NULL",
  set: "cents = price * 100",
  verify,
};
const phases = new Map<string, number>();
let largestPieceMs = 0;
let last = performance.now();
const began = performance.now();
let phase = "counting";
const mark = (next: string) => {
  const now = performance.now();
  phases.set(phase, (phases.get(phase) ?? 0) + (now - last));
  phase = next;
  last = now;
};
const runner = new Runner({
  client,
  migrations: [migration],
  tuning: { leaseTtlMs, sliceBudgetMs: Math.floor(leaseTtlMs / 2) },
  onEvent: (event) => {
    if (event.type === "counted") mark("data walk");
    if (event.type === "scan" && event.phase === "verifying" && phase !== "verifying") mark("verifying");
    if (event.type === "done" || event.type === "failed") mark("end");
  },
});
let pieceStart = performance.now();
runner.on((event) => {
  const now = performance.now();
  if (event.type === "scan") largestPieceMs = Math.max(largestPieceMs, now - pieceStart);
  pieceStart = now;
});
await runner.runUntilDone();
const row = await runner.store.get("items_cents_v1");
const totalMs = performance.now() - began;
const lines = [
  `table: ${formatCount(rows)} rows; verify without an index; lease ${leaseTtlMs} ms, slice ${Math.floor(leaseTtlMs / 2)} ms`,
  `verification as one statement: ${(oneShotMs / 1000).toFixed(2)} s (${(oneShotMs / leaseTtlMs).toFixed(1)}× the lease)`,
  `run: ${row?.status} in ${(totalMs / 1000).toFixed(2)} s; rows ${row?.rowsProcessed}/${row?.rowsTotal}`,
  ...[...phases].map(([name, ms]) => `  ${name}: ${(ms / 1000).toFixed(2)} s`),
  `longest gap between two recorded pieces: ${largestPieceMs.toFixed(0)} ms`,
];
process.stdout.write(`${lines.join("\n")}\n`);
client.close();
process.exit(row?.status === "done" ? 0 : 1);
