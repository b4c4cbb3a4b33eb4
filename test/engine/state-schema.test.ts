/**
 * `_async_migrations`: a fresh database gets design.md's minimum columns; tables created by older CoreScope
 * versions are upgraded in place (additive), their rows keep their meaning, and repeating it changes nothing.
 */
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { StateStore } from "../../src/engine/state-store.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  lastSeenById,
  oneShotResult,
  type TempDb,
  tempDb,
} from "../helpers/db.ts";
import { dumpTable, EventLog, FakeClock, legacyTransmissions, rawStateRow } from "../helpers/engine.ts";

const MINIMUM_COLUMNS = [
  "name",
  "status",
  "cursor",
  "max_key",
  "rows_processed",
  "rows_total",
  "started_at",
  "ended_at",
  "last_update_at",
  "error",
  "lease_owner",
  "lease_expires_at",
  "lease_epoch",
];

/** corescope-facts §2: the table on CoreScope master. */
const MASTER_SHAPE = `CREATE TABLE _async_migrations (name TEXT PRIMARY KEY, status TEXT NOT NULL,
  started_at TEXT NOT NULL DEFAULT (datetime('now')), ended_at TEXT, error TEXT)`;
/** corescope-facts §2: the table as #1735 (never merged) created it. */
const PR_1735_SHAPE = `CREATE TABLE _async_migrations (name TEXT PRIMARY KEY, status TEXT NOT NULL,
  started_at TEXT NOT NULL DEFAULT (datetime('now')), ended_at TEXT, error TEXT,
  rows_processed INTEGER NOT NULL DEFAULT 0, rows_total INTEGER NOT NULL DEFAULT 0, last_update_at TEXT)`;

const TX = txLastSeenBackfillV1.name;
let db: TempDb;
afterEach(() => db?.cleanup());

async function columns(client: Client): Promise<string[]> {
  const info = await client.execute("SELECT name FROM pragma_table_info('_async_migrations') ORDER BY cid");
  return info.rows.map((r) => String(r.name));
}

async function legacyCoreScope(shape: string): Promise<Client> {
  db = tempDb();
  const client = db.open();
  await createCoreScopeSchema(client);
  await insertCoreScopeRows(client, legacyTransmissions(250));
  await client.execute(shape);
  return client;
}

function runnerFor(client: Client, log = new EventLog()): Runner {
  return new Runner({
    client,
    migrations: [txLastSeenBackfillV1],
    tuning: { initialBatch: 40, yieldMs: 0 },
    clock: new FakeClock(),
    onEvent: log.listener,
  });
}

describe("fresh database", () => {
  it("gets _async_migrations with the minimum columns and a pending row per migration", async () => {
    db = tempDb();
    const client = db.open();
    await runnerFor(client).init();
    expect(await columns(client)).toEqual(expect.arrayContaining(MINIMUM_COLUMNS));
    const row = await rawStateRow(client, TX);
    expect(row?.status).toBe("pending");
    expect(row?.lease_owner).toBeNull();
    expect(row?.rows_processed).toBe("0");
  });

  it("ensureSchema and init are idempotent", async () => {
    db = tempDb();
    const client = db.open();
    const store = new StateStore(client);
    await store.ensureSchema();
    const first = await columns(client);
    await store.ensureSchema();
    await runnerFor(client).init();
    await runnerFor(client).init();
    expect(await columns(client)).toEqual(first);
    expect(await dumpTable(client, "_async_migrations")).toHaveLength(1);
  });
});

describe.each([
  { shape: "CoreScope master", ddl: MASTER_SHAPE },
  { shape: "CoreScope #1735", ddl: PR_1735_SHAPE },
])("upgrading the $shape table in place", ({ ddl }) => {
  it("adds the missing columns, keeps every row, and does not re-run a done migration", async () => {
    const client = await legacyCoreScope(ddl);
    await client.batch(
      [
        `INSERT INTO _async_migrations (name, status, started_at, ended_at) VALUES
           ('${TX}', 'done', '2026-06-14 12:00:00', '2026-06-14 12:05:00')`,
        `INSERT INTO _async_migrations (name, status, started_at, ended_at) VALUES
           ('obs_observer_ts_idx_v1', 'done', '2026-06-14 11:00:00', '2026-06-14 11:01:00')`,
        `INSERT INTO _async_migrations (name, status, started_at, error) VALUES
           ('mystery_v2', 'pending_async', '2026-06-14 10:00:00', 'left by an older version')`,
      ],
      "write",
    );
    const before = await dumpTable(client, "_async_migrations");
    const dataBefore = await lastSeenById(client);
    const log = new EventLog();
    const runner = runnerFor(client, log);

    const results = await runner.runUntilDone();

    expect(await columns(client)).toEqual(expect.arrayContaining(MINIMUM_COLUMNS));
    expect(results.reduce((sum, r) => sum + r.steps, 0)).toBe(0);
    expect(log.of("step")).toEqual([]);
    expect(await lastSeenById(client)).toEqual(dataBefore); // the done backfill did not run again
    // Existing rows keep their values in the old columns; nothing else was added or removed.
    const after = await dumpTable(client, "_async_migrations");
    expect(after).toHaveLength(3);
    const oldWidth = ddl === MASTER_SHAPE ? 5 : 8;
    expect(after.map((r) => JSON.stringify(JSON.parse(r).slice(0, oldWidth)))).toEqual(
      before.map((r) => JSON.stringify(JSON.parse(r).slice(0, oldWidth))),
    );
    const tx = await rawStateRow(client, TX);
    expect(tx?.status).toBe("done");
    expect(tx?.started_at).toBe("2026-06-14 12:00:00");
    expect(tx?.ended_at).toBe("2026-06-14 12:05:00");
    const mystery = await rawStateRow(client, "mystery_v2");
    expect(mystery?.status).toBe("pending_async"); // not ours: not adopted, not touched
    expect(mystery?.error).toBe("left by an older version");

    // Upgrading again is a no-op.
    const upgraded = await columns(client);
    await runner.store.ensureSchema();
    await runnerFor(client).init();
    expect(await columns(client)).toEqual(upgraded);
    expect(await dumpTable(client, "_async_migrations")).toEqual(after);
  });

  it("adopts a pending_async row an older runner left behind and runs it to done", async () => {
    const client = await legacyCoreScope(ddl);
    await client.execute(
      `INSERT INTO _async_migrations (name, status, started_at) VALUES ('${TX}', 'pending_async', '2026-06-14 12:00:00')`,
    );
    const oracle = await oneShotResult(client, db);
    const log = new EventLog();

    await runnerFor(client, log).runUntilDone();

    expect(await lastSeenById(client)).toEqual(oracle);
    expect(log.of("step").length).toBeGreaterThan(1);
    const row = await rawStateRow(client, TX);
    expect(row?.status).toBe("done");
    expect(row?.rows_processed).toBe("250");
    expect(row?.rows_total).toBe("250");
    expect(row?.started_at).not.toBe("2026-06-14 12:00:00"); // this run's start, not the old one
    expect(await dumpTable(client, "_async_migrations")).toHaveLength(1);
  });
});

describe("reading before the upgrade", () => {
  it("lists the rows of a table an older version created, newer columns reading as defaults", async () => {
    // `trickle status` is read-only and never upgrades: it must still read a table without the newer columns.
    const client = await legacyCoreScope(PR_1735_SHAPE);
    await client.execute(
      `INSERT INTO _async_migrations (name, status, rows_processed, rows_total) VALUES ('${TX}', 'running', 5, 10)`,
    );
    const rows = await new StateStore(client).list();
    expect(rows).toMatchObject([
      {
        name: TX,
        status: "running",
        rowsProcessed: 5n,
        rowsTotal: 10n,
        quarantined: 0n,
        throttledUntil: null,
        progressAt: null,
        rateWindow: null,
      },
    ]);
    expect(await columns(client)).not.toContain("quarantined"); // read, not upgraded
  });
});
