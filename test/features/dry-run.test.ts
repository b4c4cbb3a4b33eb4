/**
 * Dry-run: one REAL step inside a transaction that is rolled back. It reports the candidates, sample rows before
 * and after the change, the step's measured time and a projection of the whole run for the schedule — and it
 * changes nothing: the database file's bytes are the same afterwards, and so is every table (the state table is
 * not even created). Locally, over the remote (Hrana) path, through the control API and through the CLI.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { type Client, createClient as createWebClient } from "@libsql/client/web";
import { afterEach, describe, expect, it } from "vitest";
import { dryRunMigration, projectRun } from "../../src/engine/dry-run.ts";
import { Runner } from "../../src/engine/runner.ts";
import { resolveTuning } from "../../src/engine/tuning.ts";
import { obsHopCountV1 } from "../../src/migrations/builtin/obs-hop-count.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import { resolveMigration } from "../../src/migrations/define.ts";
import { writeLockFree } from "../fixtures/freeze.ts";
import { type Harness, startHarness, TX } from "../fixtures/server-harness.ts";
import { cli } from "../helpers/cli.ts";
import { createCoreScopeSchema, insertCoreScopeRows, type TempDb, tempDb } from "../helpers/db.ts";
import { counterMigration, createCounterTable, FakeClock, legacyTransmissions } from "../helpers/engine.ts";
import { type HranaServer, startHranaServer } from "../hrana/server.ts";

let db: TempDb | undefined;
let h: Harness | undefined;
let server: HranaServer | undefined;
let remote: Client | undefined;
afterEach(async () => {
  remote?.close();
  await server?.close();
  await h?.cleanup();
  db?.cleanup();
  remote = undefined;
  server = undefined;
  h = undefined;
  db = undefined;
});

const COUNTER = counterMigration({ name: "counter_v1", filter: "done = 0", set: "n = n + 1, done = 1" });

function fileHash(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** A checksum of every table's rows and of the schema (sqlite_master), independent of the file's layout. */
async function contentChecksum(client: { execute: Client["execute"] }): Promise<string> {
  const hash = createHash("sha256");
  const tables = await client.execute("SELECT name, sql FROM sqlite_master ORDER BY type, name");
  for (const t of tables.rows) {
    hash.update(`${String(t.name)}|${String(t.sql)}\n`);
    if (String(t.sql ?? "").startsWith("CREATE TABLE")) {
      const rows = await client.execute(`SELECT * FROM "${String(t.name)}" ORDER BY rowid`);
      for (const r of rows.rows)
        hash.update(JSON.stringify(Object.values(r), (_k, v) => (typeof v === "bigint" ? `${v}n` : v)));
    }
  }
  return hash.digest("hex");
}

describe("dry-run on a local file", () => {
  it("runs one real step, reports it with samples and a projection, and leaves the file byte-identical", async () => {
    db = tempDb();
    const client = db.open();
    await client.execute("PRAGMA journal_mode=DELETE"); // the main file is the whole database: bytes comparable
    await createCounterTable(
      client,
      Array.from({ length: 1000 }, (_, i) => BigInt(i + 1)),
      "t",
      { doneKeys: [2n, 4n] },
    );
    const bytesBefore = fileHash(db.path);
    const contentBefore = await contentChecksum(client);

    const report = await dryRunMigration(client, resolveMigration(COUNTER), {
      batchSize: 50,
      sampleSize: 3,
      tuning: { sliceBudgetMs: 2000, yieldMs: 10, stepTargetMs: 50 },
    });

    expect(report).toMatchObject({
      name: "counter_v1",
      blockedBy: null,
      rolledBack: true,
      status: null, // never registered: the state table does not exist
      candidates: { rowsTotal: 998n, minKey: 1n, maxKey: 1000n },
      step: { batchSize: 50, fromKey: 1n, toKey: 50n, keys: 50n, rows: 48n },
    });
    expect(report.step?.durationMs).toBeGreaterThanOrEqual(0);
    // The first candidates of the range, before and after the step (2 is not a candidate).
    expect(report.samples.map((s) => s.key)).toEqual(["1", "3", "5"]);
    for (const sample of report.samples) {
      expect(sample.before).toMatchObject({ id: Number(sample.key), n: 0, done: 0 });
      expect(sample.after).toMatchObject({ id: Number(sample.key), n: 1, done: 1 });
      expect(sample.changed).toEqual(["n", "done"]);
    }
    expect(report.projection).toMatchObject({ keysInRange: 1000n, rowsTotal: 998n });
    expect(report.projection?.wallSeconds).toBeGreaterThan(0);
    expect(report.projection?.steps).toBeGreaterThan(0);
    expect(report.stepSql.some((s) => s.startsWith("INSERT INTO _async_migrations_fence"))).toBe(true);

    expect(await contentChecksum(client)).toBe(contentBefore);
    expect(fileHash(db.path)).toBe(bytesBefore);
  });

  it("changes nothing in a migration that is running (its row, lease and data are as before)", async () => {
    db = tempDb();
    const client = db.open();
    await createCounterTable(
      client,
      Array.from({ length: 500 }, (_, i) => BigInt(i + 1)),
    );
    const runner = new Runner({
      client,
      migrations: [COUNTER],
      tuning: { initialBatch: 20, maxBatch: 20, yieldMs: 1 },
      clock: new FakeClock(),
    });
    await runner.runSlice(5); // five steps: the fake clock moves 1 ms per yield

    const row = await runner.store.get("counter_v1");
    expect(row?.status).toBe("running");
    const before = await contentChecksum(client);

    const report = await dryRunMigration(client, resolveMigration(COUNTER), { batchSize: 20 });

    expect(report.status).toBe("running");
    // A run starting now would begin where the candidates are now: after the rows already done.
    expect(report.candidates?.minKey).toBe((row?.cursor ?? 0n) + 1n);
    expect(report.step?.rows).toBe(20n);
    expect(await contentChecksum(client)).toBe(before);
    await runner.runUntilDone();
    expect((await runner.store.get("counter_v1"))?.status).toBe("done");
  });

  it("adds a missing prerequisite column only inside the rolled-back transaction, and says so", async () => {
    db = tempDb();
    const client = db.open();
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, legacyTransmissions(200));
    const before = await contentChecksum(client);
    const report = await dryRunMigration(client, resolveMigration(obsHopCountV1), { batchSize: 40 });
    expect(report.blockedBy).toBeNull();
    expect(report.notes.join("\n")).toMatch(/column observations\.hop_count does not exist yet/);
    expect(report.samples[0]?.before.hop_count).toBeNull();
    expect(report.samples[0]?.after?.hop_count).toBe(0); // path_json '[]'
    expect(await contentChecksum(client)).toBe(before);
  });

  it("reports a migration whose tables are missing as blocked, without a step", async () => {
    db = tempDb();
    const client = db.open();
    const report = await dryRunMigration(client, resolveMigration(txLastSeenBackfillV1));
    expect(report).toMatchObject({ rolledBack: false, step: null, projection: null });
    expect(report.blockedBy).toMatch(/table transmissions, observations does not exist/);
  });
});

/** `t` of `count` rows whose `n` may not reach 5: the row `poison` starts at 4, so `n = n + 1` fails on it. */
async function createCheckedCounterTable(
  client: Pick<Client, "execute" | "batch">,
  count: number,
  poison: bigint,
) {
  await client.execute(
    "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0 CHECK (n < 5), done INTEGER NOT NULL DEFAULT 0)",
  );
  await client.batch(
    Array.from({ length: count }, (_, i) => ({
      sql: "INSERT INTO t (id, n) VALUES (?, ?)",
      args: [BigInt(i + 1), BigInt(i + 1) === poison ? 4n : 0n],
    })),
    "write",
  );
}

/** The transaction is over: another connection takes the write lock at once (a 50 ms busy timeout). */
describe("dry-run over a poison row", () => {
  it("reports a CHECK constraint failure as its result (range, code, SQLite's message), changes nothing and ends its transaction", async () => {
    db = tempDb();
    const client = db.open();
    await createCheckedCounterTable(client, 200, 37n);
    const before = await contentChecksum(client);

    const report = await dryRunMigration(client, resolveMigration(COUNTER), {
      batchSize: 50,
      tuning: { maxQuarantined: 1000 },
    });

    expect(report).toMatchObject({
      blockedBy: null,
      rolledBack: true,
      step: null,
      projection: null,
      samples: [],
      candidates: { rowsTotal: 200n, minKey: 1n, maxKey: 200n },
      failure: { phase: "step", fromKey: 1n, toKey: 50n, code: expect.stringMatching(/^SQLITE_CONSTRAINT/) },
    });
    expect(report.failure?.message).toMatch(/CHECK constraint failed/);
    expect(report.notes.join("\n")).toMatch(
      /the step over id 1\.\.50 failed: .*CHECK constraint failed.*a run would bisect it and quarantine the failing rows/,
    );
    expect(await contentChecksum(client)).toBe(before);
    expect(await writeLockFree(db.path)).toBe(true);
    // The client is still usable, and a dry-run of a range without the poison row still reports a step.
    const clean = await dryRunMigration(client, resolveMigration(COUNTER), { batchSize: 20 });
    expect(clean).toMatchObject({ failure: null, step: { fromKey: 1n, toKey: 20n, rows: 20n } });
  });

  it("reports a `set` that raises (integer overflow) and a trigger that rolls the transaction back itself", async () => {
    db = tempDb();
    const client = db.open();
    const keys = Array.from({ length: 100 }, (_, i) => BigInt(i + 1));
    await createCounterTable(client, keys);
    await createCounterTable(client, keys, "u");
    // RAISE(ROLLBACK) ends the transaction inside SQLite: the dry-run must not fail on its own rollback.
    await client.execute(
      "CREATE TRIGGER poison BEFORE UPDATE OF n ON u WHEN NEW.id = 3 BEGIN SELECT RAISE(ROLLBACK, 'poison row 3'); END",
    );
    const before = await contentChecksum(client);
    const overflow = counterMigration({
      name: "overflow_v1",
      set: "n = CASE WHEN id = 9 THEN abs(-9223372036854775807 - 1) ELSE n + 1 END",
    });
    const raised = await dryRunMigration(client, resolveMigration(overflow), { batchSize: 10 });
    expect(raised).toMatchObject({ step: null, failure: { phase: "step", fromKey: 1n, toKey: 10n } });
    expect(raised.failure?.message).toBe("integer overflow");
    expect(await contentChecksum(client)).toBe(before);

    const onU = counterMigration({
      name: "counter_u_v1",
      table: "u",
      filter: "done = 0",
      set: "n = n + 1, done = 1",
    });
    const rolled = await dryRunMigration(client, resolveMigration(onU), { batchSize: 10 });
    expect(rolled).toMatchObject({
      step: null,
      failure: { phase: "step", fromKey: 1n, toKey: 10n, message: "poison row 3" },
    });
    expect(await contentChecksum(client)).toBe(before);
    expect(await writeLockFree(db.path)).toBe(true);
    // Quarantine off: the note says a run would fail.
    const strict = await dryRunMigration(client, resolveMigration(onU), {
      batchSize: 10,
      tuning: { maxQuarantined: 0 },
    });
    expect(strict.notes.join("\n")).toMatch(/a run would fail with this message \(quarantine is off\)/);
  });

  it("reports the failure over the remote (Hrana) path and leaves the server's database unchanged", async () => {
    db = tempDb("remote.db");
    const local = db.open();
    await createCheckedCounterTable(local, 100, 12n);
    local.close();
    server = await startHranaServer({ dbPath: db.path });
    remote = createWebClient({ url: server.url, intMode: "bigint" });
    const before = await contentChecksum(remote);
    const report = await dryRunMigration(remote as never, resolveMigration(COUNTER), { batchSize: 30 });
    expect(report).toMatchObject({ step: null, failure: { phase: "step", fromKey: 1n, toKey: 30n } });
    expect(report.failure?.message).toMatch(/CHECK constraint failed/);
    expect(await contentChecksum(remote)).toBe(before);
    expect(await writeLockFree(db.path)).toBe(true);
  });
});

describe("projection", () => {
  it("divides the keys by the measured rate and stretches it by the yields and the gaps between slices", () => {
    const t = resolveTuning({ stepTargetMs: 50, yieldMs: 10, sliceBudgetMs: 2000, maxBatch: 100_000 });
    // 100 keys in 10 ms = 10 keys/ms → 500-key steps of 50 ms; 100 000 keys = 200 steps, 10 s inside steps.
    const back = projectRun(100_000n, 90_000n, { keys: 100n, durationMs: 10 }, t);
    expect(back).toMatchObject({ keysPerSecond: 10_000, batchAtTarget: 500, steps: 200, busySeconds: 10 });
    // Each 50 ms step is followed by a 10 ms yield: 12 s in slices, six 2 s slices. Back to back, a slice
    // starts every 2.01 s: five full intervals and the last slice.
    expect(back.slices).toBe(6);
    expect(back.dutyCycle).toBeCloseTo(2000 / 2010, 4);
    expect(back.wallSeconds).toBeCloseTo(5 * 2.01 + 2, 3);
    // While the application writes, the `writers` policy pauses after each 50 ms step for the longest sleep a
    // writer waiting since the step began can be in (20 ms) + 3 ms: 14.6 s in slices, seven intervals and 0.6 s.
    expect(back.schedule.pauseWhileWritingMs).toBe(23);
    expect(back.wallSecondsWhileWriting).toBeCloseTo(7 * 2.01 + 0.6, 3);
    // A cron slice of 2 s every minute: five minutes of waiting, then the last slice.
    const cron = projectRun(100_000n, 90_000n, { keys: 100n, durationMs: 10 }, t, 60_000);
    expect(cron.dutyCycle).toBeCloseTo(2000 / 60_000, 4);
    expect(cron.wallSeconds).toBeCloseTo(5 * 60 + 2, 3);
    expect(cron.schedule).toEqual({
      sliceBudgetMs: 2000,
      tickIntervalMs: 60_000,
      yieldMs: 10,
      pauseWhileWritingMs: 23,
      stepTargetMs: 50,
    });
    // A run that fits in one slice takes its time in steps and yields, whatever the interval.
    expect(projectRun(1_000n, 900n, { keys: 100n, durationMs: 10 }, t, 60_000).wallSeconds).toBeCloseTo(
      0.12,
      3,
    );
    expect(projectRun(0n, 0n, null, t)).toMatchObject({ steps: 0, wallSeconds: 0 });
  });
});

describe("dry-run over the remote (Hrana) path", () => {
  it("runs the step in an interactive transaction on the server and rolls it back", async () => {
    db = tempDb("remote.db");
    const local = db.open();
    await createCounterTable(
      local,
      Array.from({ length: 300 }, (_, i) => BigInt(i + 1)),
    );
    local.close();
    server = await startHranaServer({ dbPath: db.path });
    remote = createWebClient({ url: server.url, intMode: "bigint" });
    const before = await contentChecksum(remote);
    const report = await dryRunMigration(remote as never, resolveMigration(COUNTER), { batchSize: 30 });
    expect(report).toMatchObject({ rolledBack: true, step: { keys: 30n, rows: 30n } });
    expect(report.samples[0]).toMatchObject({ before: { n: 0 }, after: { n: 1 } });
    expect(await contentChecksum(remote)).toBe(before);
  });
});

describe("control API and CLI", () => {
  it("POST /dry-run returns the step, samples and a projection for the given tick interval, and is audited", async () => {
    h = await startHarness({ transmissions: 400 });
    const before = await contentChecksum(h.client);
    const res = await h.request("POST", `/api/migrations/${TX}/dry-run`, {
      body: { tickIntervalMs: 60_000, batchSize: 40, note: "before the deploy" },
    });
    expect(res.status).toBe(200);
    const report = (await res.json()) as Record<string, unknown> & {
      step: { rows: number; keys: number; fromKey: number; toKey: number };
      samples: { key: string; before: Record<string, unknown>; after: Record<string, unknown> }[];
      projection: {
        dutyCycle: number;
        wallSeconds: number;
        keysInRange: number;
        schedule: { tickIntervalMs: number };
      };
    };
    expect(report).toMatchObject({
      rolledBack: true,
      candidates: { rowsTotal: 400, minKey: 1, maxKey: 400 },
    });
    expect(report.step).toMatchObject({ keys: 40, rows: 40, fromKey: 1, toKey: 40 });
    expect(report.samples[0]).toMatchObject({
      key: "1",
      before: { last_seen: 0 },
      after: { last_seen: 1001 },
    });
    expect(report.projection.schedule.tickIntervalMs).toBe(60_000);
    expect(report.projection.dutyCycle).toBeLessThan(0.1);
    expect(report.projection.keysInRange).toBe(400);
    // Changes nothing but the audit record.
    const audit = await h.client.execute("SELECT action, detail FROM _async_migration_audit");
    expect(audit.rows.map((r) => r.action)).toEqual(["dry-run"]);
    expect(String(audit.rows[0]?.detail)).toMatch(/"stepMs":/);
    await h.client.execute("DROP TABLE _async_migration_audit");
    expect(await contentChecksum(h.client)).toBe(before);

    expect(
      (await h.request("POST", `/api/migrations/${TX}/dry-run`, { body: { batchSize: 0 } })).status,
    ).toBe(400);
    expect((await h.request("POST", `/api/migrations/${TX}/dry-run`, { body: { bogus: 1 } })).status).toBe(
      400,
    );
  });

  it("POST /dry-run over a poison row answers 200 with the failure (range, SQLite's message), audits it and changes nothing", async () => {
    h = await startHarness({ transmissions: 300 });
    await h.client.execute(
      "CREATE TRIGGER poison BEFORE UPDATE OF last_seen ON transmissions WHEN NEW.id = 57 BEGIN SELECT RAISE(ABORT, 'poison row 57'); END",
    );
    await h.service.controls.audit(); // creates the (empty) audit table, so only the record differs afterwards
    const before = await contentChecksum(h.client);
    const res = await h.request("POST", `/api/migrations/${TX}/dry-run`, { body: { batchSize: 100 } });
    expect(res.status).toBe(200);
    const report = (await res.json()) as Record<string, unknown>;
    expect(report).toMatchObject({
      rolledBack: true,
      step: null,
      projection: null,
      candidates: { rowsTotal: 300, minKey: 1, maxKey: 300 },
      failure: { phase: "step", fromKey: 1, toKey: 100, message: expect.stringMatching(/poison row 57/) },
    });
    const audit = await h.client.execute("SELECT action, result, detail FROM _async_migration_audit");
    expect(audit.rows.map((r) => [r.action, r.result])).toEqual([["dry-run", "step-failed"]]);
    expect(String(audit.rows[0]?.detail)).toMatch(/poison row 57/);
    await h.client.execute("DELETE FROM _async_migration_audit");
    expect(await contentChecksum(h.client)).toBe(before);
    // The service's connection is free: a control action and a real slice go through.
    expect((await h.request("POST", `/api/migrations/${TX}/pause`)).status).toBe(200);
    expect((await h.request("POST", `/api/migrations/${TX}/resume`)).status).toBe(200);
    expect((await h.service.tick(2000)).steps).toBeGreaterThan(0);
  });

  it("trickle dry-run over a poison row prints the failure and writes nothing", async () => {
    db = tempDb();
    const client = db.open();
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, legacyTransmissions(120));
    await client.execute(
      "CREATE TRIGGER poison BEFORE UPDATE OF last_seen ON transmissions WHEN NEW.id = 7 BEGIN SELECT RAISE(ABORT, 'poison row 7'); END",
    );
    const before = await contentChecksum(client);
    const run = await cli(["dry-run", TX, "--batch-size", "25"], { DATABASE_URL: db.url });
    expect(run.stdout).toMatch(/the step over id 1\.\.25 failed: .*poison row 7/);
    const json = await cli(["dry-run", TX, "--json"], { DATABASE_URL: db.url });
    const [report] = JSON.parse(json.stdout) as { failure: { message: string; fromKey: number } }[];
    expect(report?.failure).toMatchObject({ fromKey: 1, message: expect.stringMatching(/poison row 7/) });
    expect(await contentChecksum(client)).toBe(before);
  });

  it("trickle dry-run prints the step, the samples and the projection and writes nothing", async () => {
    db = tempDb();
    const client = db.open();
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, legacyTransmissions(300));
    const before = await contentChecksum(client);
    const run = await cli(["dry-run", TX, "--batch-size", "25", "--tick-interval-ms", "60000"], {
      DATABASE_URL: db.url,
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      /tx_last_seen_backfill_v1 \[not registered\]: 300 candidate rows in transmissions/,
    );
    expect(run.stdout).toMatch(/step \(rolled back\): id 1\.\.25, 25 keys, 25 rows changed in [\d.]+ ms/);
    expect(run.stdout).toMatch(/id 1: last_seen 0 → 1001/);
    expect(run.stdout).toMatch(/projection: 300 keys .* slices every 60000 ms\)/);
    const json = await cli(["dry-run", TX, "--json"], { DATABASE_URL: db.url });
    expect(json.code, json.stderr).toBe(0);
    const [report] = JSON.parse(json.stdout) as { rolledBack: boolean; step: { rows: number } }[];
    expect(report?.rolledBack).toBe(true);
    expect(report?.step.rows).toBeGreaterThan(0);
    expect(await contentChecksum(client)).toBe(before);
  });
});
