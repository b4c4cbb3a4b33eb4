/**
 * The CoreScope-shaped seed, through the real CLI (child processes) against real libSQL files: schema and
 * indexes, exact counts, determinism, the legacy fraction, orphans and all-zero rows, data shape, refusal of a
 * non-empty database. The library entry point is also used directly for progress and an existing schema.
 */
import { createHash } from "node:crypto";
import type { Client } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createCoreScopeSchema, seedCoreScope } from "../src/seed/corescope.ts";
import { cli } from "./helpers/cli.ts";
import { type TempDb, tempDb } from "./helpers/db.ts";

type CliResult = Awaited<ReturnType<typeof cli>>;

/** Runs `trickle` as a child process with only the given database settings in its environment. */

const TX = 2000;
const OBS = 30_000;
const SMALL = ["--transmissions", String(TX), "--observations", String(OBS)];

async function one(client: Client, sql: string): Promise<bigint> {
  const row = (await client.execute(sql)).rows[0];
  return BigInt(row?.[0] as bigint);
}

/** A digest of every transmission's (hash, last_seen, first_seen) and of every observation row, in id order. */
async function fingerprint(client: Client): Promise<{ tx: string; obs: string }> {
  const tx = await client.execute("SELECT hash, last_seen, first_seen FROM transmissions ORDER BY id");
  const obs = await client.execute(
    `SELECT id, transmission_id, observer_idx, direction, snr, rssi, score, path_json, timestamp, raw_hex, resolved_path
     FROM observations ORDER BY id`,
  );
  const digest = (rows: unknown[]) =>
    createHash("sha256")
      .update(JSON.stringify(rows, (_k, v) => (typeof v === "bigint" ? v.toString() : v)))
      .digest("hex");
  return {
    tx: digest(tx.rows.map((r) => [...Object.values(r)])),
    obs: digest(obs.rows.map((r) => [...Object.values(r)])),
  };
}

describe("seed (CLI)", () => {
  let db: TempDb;
  let client: Client;
  let seeded: CliResult;

  beforeAll(async () => {
    db = tempDb();
    seeded = await cli(["seed", ...SMALL], { DATABASE_URL: db.url });
    client = db.open();
  });
  afterAll(() => db.cleanup());

  test("exits 0 and reports exact counts", async () => {
    expect(seeded.stderr).not.toMatch(/error/i);
    expect(seeded.code).toBe(0);
    expect(seeded.stdout).toContain("seeded 2,000 transmissions and 30,000 observations");
    expect(await one(client, "SELECT COUNT(*) FROM transmissions")).toBe(BigInt(TX));
    expect(await one(client, "SELECT COUNT(*) FROM observations")).toBe(BigInt(OBS));
  });

  test("creates CoreScope's columns, foreign key and every index", async () => {
    const columns = async (table: string) =>
      (
        await client.execute({ sql: "SELECT name FROM pragma_table_info(?) ORDER BY cid", args: [table] })
      ).rows.map((r) => String(r.name));
    expect(await columns("transmissions")).toEqual([
      "id",
      "raw_hex",
      "hash",
      "first_seen",
      "route_type",
      "payload_type",
      "payload_version",
      "decoded_json",
      "from_pubkey",
      "last_seen",
      "created_at",
      "channel_hash",
      "scope_name",
    ]);
    expect(await columns("observations")).toEqual([
      "id",
      "transmission_id",
      "observer_idx",
      "direction",
      "snr",
      "rssi",
      "score",
      "path_json",
      "timestamp",
      "raw_hex",
      "resolved_path",
    ]);
    const fk = await client.execute(
      'SELECT "table", "from", "to" FROM pragma_foreign_key_list(\'observations\')',
    );
    expect(fk.rows.map((r) => [r.table, r.from, r.to])).toEqual([["transmissions", "transmission_id", "id"]]);

    const indexes = await client.execute(
      "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    );
    const sql = new Map(indexes.rows.map((r) => [String(r.name), String(r.sql).replace(/\s+/g, " ")]));
    expect([...sql.keys()].sort()).toEqual(
      [
        "idx_transmissions_hash",
        "idx_transmissions_first_seen",
        "idx_transmissions_payload_type",
        "idx_transmissions_from_pubkey",
        "idx_tx_channel_hash",
        "idx_tx_scope_name",
        "idx_tx_last_seen_zero",
        "idx_observations_transmission_id",
        "idx_observations_observer_idx",
        "idx_observations_timestamp",
        "idx_observations_dedup",
        "idx_observations_tx_ts",
        "idx_observations_observer_idx_timestamp",
      ].sort(),
    );
    expect(sql.get("idx_tx_last_seen_zero")).toMatch(/ON transmissions\(id\) WHERE last_seen = 0$/);
    expect(sql.get("idx_tx_channel_hash")).toMatch(/WHERE payload_type = 5$/);
    expect(sql.get("idx_tx_scope_name")).toMatch(/WHERE scope_name IS NOT NULL$/);
    expect(sql.get("idx_observations_tx_ts")).toMatch(/ON observations\(transmission_id, timestamp\)$/);
    expect(sql.get("idx_observations_dedup")).toMatch(
      /^CREATE UNIQUE INDEX .* ON observations\(transmission_id, observer_idx, COALESCE\(path_json, ''\)\)$/,
    );
    // The backfill's probe is index-only on the composite index, as on CoreScope.
    const plan = await client.execute(
      "EXPLAIN QUERY PLAN SELECT MAX(timestamp) FROM observations WHERE transmission_id = 5",
    );
    expect(plan.rows.map((r) => String(r.detail)).join(" ")).toContain("idx_observations_tx_ts");
  });

  test("keeps last_seen = 0 for the legacy fraction and MAX(timestamp) for the rest", async () => {
    const legacy = Math.floor(TX * 0.9);
    expect(
      await one(client, `SELECT COUNT(*) FROM transmissions WHERE id <= ${legacy} AND last_seen <> 0`),
    ).toBe(0n);
    expect(
      await one(
        client,
        `SELECT COUNT(*) FROM transmissions t WHERE id > ${legacy} AND last_seen <>
           COALESCE((SELECT MAX(timestamp) FROM observations o WHERE o.transmission_id = t.id), 0)`,
      ),
    ).toBe(0n);
    expect(
      await one(client, `SELECT COUNT(*) FROM transmissions WHERE id > ${legacy} AND last_seen > 0`),
    ).toBeGreaterThan(150n);
  });

  test("has orphans (~1%) and all-zero-timestamp transmissions (~0.5%), in the legacy part too", async () => {
    const orphans = `NOT EXISTS (SELECT 1 FROM observations o WHERE o.transmission_id = t.id)`;
    const allZero = `EXISTS (SELECT 1 FROM observations o WHERE o.transmission_id = t.id)
      AND (SELECT MAX(timestamp) FROM observations o WHERE o.transmission_id = t.id) = 0`;
    expect(await one(client, `SELECT COUNT(*) FROM transmissions t WHERE ${orphans}`)).toBe(20n);
    expect(await one(client, `SELECT COUNT(*) FROM transmissions t WHERE ${allZero}`)).toBe(10n);
    expect(
      await one(client, `SELECT COUNT(*) FROM transmissions t WHERE id <= 1800 AND ${orphans}`),
    ).toBeGreaterThan(0n);
    expect(
      await one(client, `SELECT COUNT(*) FROM transmissions t WHERE id <= 1800 AND ${allZero}`),
    ).toBeGreaterThan(0n);
  });

  test("produces data of CoreScope's shape", async () => {
    const tx = await client.execute(
      "SELECT hash, first_seen, raw_hex, decoded_json, created_at, payload_type, channel_hash FROM transmissions",
    );
    const hashes = new Set<string>();
    for (const r of tx.rows) {
      const hash = String(r.hash);
      expect(hash).toMatch(/^[0-9a-f]{16}$/);
      hashes.add(hash);
      expect(String(r.first_seen)).toMatch(/^2026-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      expect(String(r.created_at)).toMatch(/^2026-\d\d-\d\d \d\d:\d\d:\d\d$/);
      const raw = String(r.raw_hex);
      expect(raw).toMatch(/^([0-9a-f]{2})+$/);
      expect(raw.length).toBeGreaterThanOrEqual(100);
      expect(raw.length).toBeLessThanOrEqual(500);
      const decoded = String(r.decoded_json);
      expect(decoded.length).toBeGreaterThanOrEqual(200);
      expect(decoded.length).toBeLessThanOrEqual(400);
      expect(typeof JSON.parse(decoded).type).toBe("string");
      if (r.payload_type === 5n) expect(String(r.channel_hash)).toMatch(/^[0-9a-f]{2}$/);
      else expect(r.channel_hash).toBeNull();
    }
    expect(hashes.size).toBe(TX);

    const span = await client.execute(
      "SELECT MIN(unixepoch(first_seen)) AS lo, MAX(unixepoch(first_seen)) AS hi FROM transmissions",
    );
    expect(Number(span.rows[0]?.hi) - Number(span.rows[0]?.lo)).toBeGreaterThan(14 * 86_400); // weeks

    // Observation timestamps are integer seconds at or after first_seen, spread over days.
    const obs = await client.execute(
      `SELECT o.path_json, o.timestamp, typeof(o.timestamp) AS ty, unixepoch(t.first_seen) AS fs
       FROM observations o JOIN transmissions t ON t.id = o.transmission_id`,
    );
    let maxDelay = 0;
    for (const r of obs.rows) {
      expect(r.ty).toBe("integer");
      const path = JSON.parse(String(r.path_json)) as unknown[];
      expect(path.length).toBeLessThanOrEqual(8);
      for (const hop of path) expect(hop).toMatch(/^[0-9a-f]{2}$/);
      if (r.timestamp === 0n) continue;
      const delay = Number(r.timestamp) - Number(r.fs);
      expect(delay).toBeGreaterThanOrEqual(0);
      maxDelay = Math.max(maxDelay, delay);
    }
    expect(maxDelay).toBeGreaterThan(3 * 86_400);

    // Heavy-tailed: most transmissions between 10 and 22 sightings, a few far above the mean.
    const counts = await client.execute(
      `WITH c AS (SELECT COUNT(*) AS n FROM observations GROUP BY transmission_id)
       SELECT AVG(n BETWEEN 10 AND 22) AS mid, MAX(n) AS top FROM c`,
    );
    expect(Number(counts.rows[0]?.mid)).toBeGreaterThan(0.5);
    expect(Number(counts.rows[0]?.top)).toBeGreaterThan(100);
  });

  test("refuses a database that already has rows, changing nothing", async () => {
    const again = await cli(["seed", ...SMALL, "--seed", "2"], { DATABASE_URL: db.url });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("refusing to seed: table transmissions already has rows");
    expect(await one(client, "SELECT COUNT(*) FROM transmissions")).toBe(BigInt(TX));
    expect(await one(client, "SELECT COUNT(*) FROM observations")).toBe(BigInt(OBS));
  });
});

describe("seed determinism (CLI)", () => {
  test("the same --seed gives identical data; another seed gives different data", async () => {
    const dbs = [tempDb(), tempDb(), tempDb()];
    try {
      const [a, b, c] = dbs as [TempDb, TempDb, TempDb];
      const results = await Promise.all([
        cli(["seed", ...SMALL, "--seed", "7", "--legacy-fraction", "0.5"], { DATABASE_URL: a.url }),
        cli(["seed", ...SMALL, "--seed", "7", "--legacy-fraction", "0.5"], { DATABASE_URL: b.url }),
        cli(["seed", ...SMALL, "--seed", "8", "--legacy-fraction", "0.5"], { DATABASE_URL: c.url }),
      ]);
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      const [fa, fb, fc] = await Promise.all([
        fingerprint(a.open()),
        fingerprint(b.open()),
        fingerprint(c.open()),
      ]);
      expect(fb).toEqual(fa);
      expect(fc.tx).not.toBe(fa.tx);
      expect(fc.obs).not.toBe(fa.obs);
      // --legacy-fraction 0.5: exactly the first half (by id) is legacy.
      const client = a.open();
      expect(
        await one(client, "SELECT COUNT(*) FROM transmissions WHERE id <= 1000 AND last_seen <> 0"),
      ).toBe(0n);
      expect(await one(client, "SELECT COUNT(*) FROM transmissions WHERE id > 1000 AND last_seen = 0")).toBe(
        await one(
          client,
          `SELECT COUNT(*) FROM transmissions t WHERE id > 1000
             AND COALESCE((SELECT MAX(timestamp) FROM observations o WHERE o.transmission_id = t.id), 0) = 0`,
        ),
      );
      expect(
        await one(client, "SELECT COUNT(*) FROM transmissions WHERE id > 1000 AND last_seen = 0"),
      ).toBeLessThan(40n);
    } finally {
      for (const db of dbs) db.cleanup();
    }
  });

  test("rejects sizes it cannot honour before touching the database", async () => {
    const db = tempDb();
    try {
      const r = await cli(["seed", "--transmissions", "2", "--observations", "5000"], {
        DATABASE_URL: db.url,
      });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/observations \(5000\) exceed 997 per transmission/);
    } finally {
      db.cleanup();
    }
  });
});

describe("seedCoreScope (library)", () => {
  test("fills an existing empty CoreScope schema and reports progress up to the total", async () => {
    const db = tempDb();
    try {
      const client = db.open();
      await createCoreScopeSchema(client);
      const calls: Array<[number, number]> = [];
      const result = await seedCoreScope(client, {
        transmissions: 300,
        observations: 4000,
        legacyFraction: 1,
        seed: 3,
        onProgress: (done, total) => calls.push([done, total]),
      });
      expect(result).toEqual({ transmissions: 300, observations: 4000 });
      expect(calls.at(-1)).toEqual([4300, 4300]);
      for (let i = 1; i < calls.length; i++) expect(calls[i]![0]).toBeGreaterThan(calls[i - 1]![0]);
      expect(await one(client, "SELECT COUNT(*) FROM transmissions WHERE last_seen <> 0")).toBe(0n);
      expect(await one(client, "SELECT COUNT(*) FROM observations")).toBe(4000n);
      // The partial index is used for the legacy rows.
      const plan = await client.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM transmissions WHERE last_seen = 0 AND id > 10",
      );
      expect(plan.rows.map((r) => String(r.detail)).join(" ")).toContain("idx_tx_last_seen_zero");
      await expect(
        seedCoreScope(client, { transmissions: 1, observations: 0, legacyFraction: 0, seed: 1 }),
      ).rejects.toThrow(/already has rows/);
    } finally {
      db.cleanup();
    }
  });

  test("handles fewer observations than transmissions and empty sizes", async () => {
    const db = tempDb();
    try {
      const client = db.open();
      await seedCoreScope(client, { transmissions: 100, observations: 30, legacyFraction: 0.9, seed: 1 });
      expect(await one(client, "SELECT COUNT(*) FROM observations")).toBe(30n);
      expect(await one(client, "SELECT COUNT(DISTINCT transmission_id) FROM observations")).toBe(30n);
      // Every transmission full (one observation per observer): no room for orphans.
      const full = tempDb();
      try {
        const f = full.open();
        await seedCoreScope(f, { transmissions: 10, observations: 9970, legacyFraction: 0.5, seed: 1 });
        expect(await one(f, "SELECT COUNT(*) FROM observations")).toBe(9970n);
        expect(await one(f, "SELECT COUNT(DISTINCT transmission_id) FROM observations")).toBe(10n);
      } finally {
        full.cleanup();
      }
      const empty = tempDb();
      try {
        const e = empty.open();
        expect(
          await seedCoreScope(e, { transmissions: 0, observations: 0, legacyFraction: 0.9, seed: 1 }),
        ).toEqual({
          transmissions: 0,
          observations: 0,
        });
        expect(await one(e, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'idx_tx_last_seen_zero'")).toBe(
          1n,
        );
      } finally {
        empty.cleanup();
      }
    } finally {
      db.cleanup();
    }
  });
});

describe("seedCoreScope memory", () => {
  // The libsql binding frees a finished statement's native memory only on a later event-loop turn; a seed that
  // never gives it one keeps every statement of every chunk (a 21M-row seed outgrew 24 GB that way).
  test("gives the event loop a turn after every chunk", async () => {
    const db = tempDb();
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    const seen: number[] = [];
    try {
      await seedCoreScope(db.open(), {
        transmissions: 2000,
        observations: 70_000,
        legacyFraction: 0.5,
        seed: 2,
        onProgress: () => seen.push(turns),
      });
    } finally {
      clearInterval(ticker);
      db.cleanup();
    }
    expect(seen.length).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!);
  });
});
