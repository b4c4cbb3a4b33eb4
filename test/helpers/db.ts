/**
 * Test databases: real libSQL files in temp directories, a small CoreScope schema, and the seed's one-shot
 * statement as the oracle.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client";

import { ONE_SHOT_SQL } from "../../src/seed/corescope.ts";

export { ONE_SHOT_SQL };

export interface TempDb {
  readonly dir: string;
  readonly path: string;
  readonly url: string;
  /** Opens another client (another connection) to the same file. */
  open(options?: { timeout?: number }): Client;
  cleanup(): void;
}

/** A fresh directory with a database path in it; call `cleanup()` in `afterEach`. */
export function tempDb(name = "t.db"): TempDb {
  const dir = mkdtempSync(join(tmpdir(), "trickle-test-"));
  const path = join(dir, name);
  const url = `file:${path}`;
  const clients: Client[] = [];
  return {
    dir,
    path,
    url,
    open(options = {}) {
      const client = createClient({ url, intMode: "bigint", timeout: options.timeout ?? 100 });
      clients.push(client);
      return client;
    },
    cleanup() {
      for (const c of clients) c.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The CoreScope columns the backfill touches (corescope-facts §1), with WAL on. */
export async function createCoreScopeSchema(client: Client): Promise<void> {
  await client.execute("PRAGMA journal_mode=WAL");
  await client.batch(
    [
      `CREATE TABLE IF NOT EXISTS transmissions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, raw_hex TEXT NOT NULL DEFAULT '', hash TEXT NOT NULL UNIQUE,
        first_seen TEXT NOT NULL DEFAULT '2026-06-14T12:00:00Z', last_seen INTEGER NOT NULL DEFAULT 0)`,
      `CREATE TABLE IF NOT EXISTS observations (
        id INTEGER PRIMARY KEY AUTOINCREMENT, transmission_id INTEGER NOT NULL REFERENCES transmissions(id),
        observer_idx INTEGER, path_json TEXT, timestamp INTEGER NOT NULL)`,
    ],
    "write",
  );
}

export interface TxSpec {
  readonly id: bigint;
  readonly lastSeen: bigint;
  /** Observation timestamps of this transmission (empty = orphan). */
  readonly timestamps: readonly bigint[];
}

/** Small deterministic PRNG (mulberry32), so a generated data set is the same on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` transmissions with sparse keys (gaps of 0–2), 0–5 observations each (orphans keep `last_seen = 0`),
 * a tenth already backfilled: the crash test's and the torture crash scenario's data.
 */
export function sparseTransmissions(random: () => number, count: number): TxSpec[] {
  const txs: TxSpec[] = [];
  let id = 0n;
  for (let i = 0; i < count; i++) {
    id += BigInt(1 + Math.floor(random() * 3));
    const observations = Math.floor(random() * 6);
    txs.push({
      id,
      lastSeen: random() < 0.1 ? 1_700_000_000n : 0n,
      timestamps: Array.from(
        { length: observations },
        () => 1_700_000_000n + BigInt(Math.floor(random() * 1e6)),
      ),
    });
  }
  return txs;
}

/** Inserts transmissions with their observations in one transaction. */
export async function insertCoreScopeRows(client: Client, txs: readonly TxSpec[]): Promise<void> {
  const statements = txs.flatMap((tx) => [
    {
      sql: "INSERT INTO transmissions (id, hash, last_seen) VALUES (?, ?, ?)",
      args: [tx.id, `h${tx.id}`, tx.lastSeen],
    },
    ...tx.timestamps.map((ts) => ({
      sql: "INSERT INTO observations (transmission_id, timestamp, path_json) VALUES (?, ?, '[]')",
      args: [tx.id, ts],
    })),
  ]);
  for (let i = 0; i < statements.length; i += 5000)
    await client.batch(statements.slice(i, i + 5000), "write");
}

/** `id:last_seen` of every transmission in id order, for comparing results. */
export async function lastSeenById(client: Client): Promise<string[]> {
  const result = await client.execute(
    "SELECT CAST(id AS TEXT) AS id, CAST(last_seen AS TEXT) AS ls FROM transmissions ORDER BY transmissions.id",
  );
  return result.rows.map((r) => `${r.id}:${r.ls}`);
}

/** Applies the one-shot statement to a copy of `source` and returns that copy's `lastSeenById`. */
export async function oneShotResult(source: Client, db: TempDb): Promise<string[]> {
  const copy = join(db.dir, `oracle-${Math.random().toString(36).slice(2)}.db`);
  await source.execute({ sql: "VACUUM INTO ?", args: [copy] });
  const oracle = createClient({ url: `file:${copy}`, intMode: "bigint" });
  try {
    await oracle.execute(ONE_SHOT_SQL);
    return await lastSeenById(oracle);
  } finally {
    oracle.close();
  }
}
