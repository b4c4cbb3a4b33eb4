/**
 * Poison-row quarantine: a step that fails deterministically is bisected down to the failing keys, which are
 * recorded in `_async_migration_failures` and skipped in the same fenced batch as the cursor move; the run goes
 * on and ends `done` with `rowsProcessed + quarantined = rowsTotal`. It fails above the cap, or when more than
 * half of at least 50 step attempts failed; statement errors fail at once. Quarantined rows are listed and retried
 * (engine, control API and CLI), and verification does not re-sweep them.
 */
import type { Client, InStatement } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { MigrationControls } from "../../src/engine/controls.ts";
import { Runner } from "../../src/engine/runner.ts";
import { resolveTuning, type Tuning } from "../../src/engine/tuning.ts";
import type { MigrationDefinition } from "../../src/migrations/define.ts";
import { type Harness, startHarness, TX } from "../fixtures/server-harness.ts";
import { cli } from "../helpers/cli.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  countersById,
  createCounterTable,
  EventLog,
  FakeClock,
  isWrite,
  rawStateRow,
  recordingClient,
  sqlOf,
} from "../helpers/engine.ts";

const KEYS = Array.from({ length: 100 }, (_, i) => BigInt(i + 1));
const BAD = [17n, 57n, 58n];
/** NOT NULL violation on bad rows: a row-level error. */
const POISON = counterMigration({ name: "poison_v1", set: "n = CASE WHEN bad = 1 THEN NULL ELSE n + 1 END" });
const TUNING: Partial<Tuning> = { initialBatch: 16, maxBatch: 16, yieldMs: 1 };

let db: TempDb | undefined;
let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
  db?.cleanup();
  db = undefined;
});

async function setup(bad: readonly bigint[] = BAD): Promise<Client> {
  db = tempDb();
  const client = db.open();
  await createCounterTable(client, KEYS);
  for (const key of bad) await client.execute({ sql: "UPDATE t SET bad = 1 WHERE id = ?", args: [key] });
  return client;
}

function runnerFor(
  client: Client,
  migration: MigrationDefinition = POISON,
  tuning: Partial<Tuning> = TUNING,
  log = new EventLog(),
): Runner {
  return new Runner({
    client,
    migrations: [migration],
    tuning,
    clock: new FakeClock(),
    onEvent: log.listener,
  });
}

async function failureRows(client: Client) {
  const result = await client.execute(
    "SELECT CAST(key AS TEXT) AS key, error, attempts, resolved_at, resolution, retry_requested_at FROM _async_migration_failures ORDER BY key",
  );
  return result.rows.map((r) => ({
    key: String(r.key),
    error: String(r.error),
    attempts: Number(r.attempts),
    resolvedAt: r.resolved_at === null ? null : String(r.resolved_at),
    resolution: r.resolution === null ? null : String(r.resolution),
    retryRequested: r.retry_requested_at !== null,
  }));
}

describe("bisection and quarantine", () => {
  it("quarantines exactly the failing rows, processes every other row once, and ends done", async () => {
    const client = await setup();
    const recording = recordingClient(client);
    const log = new EventLog();
    const runner = new Runner({
      client: recording.client,
      migrations: [POISON],
      tuning: TUNING,
      clock: new FakeClock(),
      onEvent: log.listener,
    });

    await runner.runUntilDone();

    const counters = await countersById(client);
    for (const key of KEYS) expect(counters.get(String(key)), `row ${key}`).toBe(BAD.includes(key) ? 0n : 1n);
    const failures = await failureRows(client);
    expect(failures.map((f) => f.key)).toEqual(BAD.map(String));
    for (const f of failures) {
      expect(f.error).toMatch(/NOT NULL constraint failed: t\.n/);
      expect(f).toMatchObject({ attempts: 1, resolvedAt: null });
    }
    const row = await rawStateRow(client, "poison_v1");
    expect(row).toMatchObject({ status: "done", rows_processed: "97", rows_total: "100", quarantined: "3" });
    expect(Number(row?.failed_steps)).toBeGreaterThan(0);
    expect(row?.residual).toBe("0"); // verification leaves the quarantined rows to the failures table
    expect(log.of("quarantined").map((e) => e.key)).toEqual(BAD);
    expect(log.of("bisecting").length).toBeGreaterThan(0);
    expect(log.of("done")[0]).toMatchObject({ rowsProcessed: 97n, rowsTotal: 100n, quarantined: 3n });

    // Every batch that writes data or a failure record is fenced before it writes anything else; each failure
    // record is written in the same batch as the cursor move past its key (crash-safe: both or neither).
    const batches = recording.calls.filter((c) => c.method === "batch");
    const writesFailure = (s: InStatement) => /^\s*INSERT INTO _async_migration_failures/.test(sqlOf(s));
    const quarantineBatches = batches.filter((c) => c.statements.some(writesFailure));
    expect(quarantineBatches).toHaveLength(3);
    for (const batch of quarantineBatches) {
      expect(sqlOf(batch.statements.find(isWrite)!)).toMatch(/^INSERT INTO _async_migrations_fence/);
      expect(batch.statements.some((s) => /UPDATE _async_migrations SET cursor =/.test(sqlOf(s)))).toBe(true);
      expect(batch.mode).toBe("write");
    }
    for (const batch of batches.filter((c) => c.statements.some((s) => /^\s*UPDATE "t"/.test(sqlOf(s))))) {
      expect(sqlOf(batch.statements.find(isWrite)!)).toMatch(/^INSERT INTO _async_migrations_fence/);
    }
  });

  it("does not re-sweep quarantined rows that still match the verify condition", async () => {
    const client = await setup();
    // done stays 0 on bad rows (the step fails there), so verification would find them every pass.
    const migration = counterMigration({
      name: "resweep_v1",
      filter: "done = 0",
      verify: "done = 0",
      set: "done = CASE WHEN bad = 1 THEN NULL ELSE 1 END, n = n + 1",
    });
    const log = new EventLog();
    await runnerFor(client, migration, TUNING, log).runUntilDone();
    expect((await rawStateRow(client, "resweep_v1"))?.status).toBe("done");
    expect(log.of("sweep")).toEqual([]);
    expect((await failureRows(client)).map((f) => f.key)).toEqual(BAD.map(String));
  });

  it("fails above the quarantine cap, naming it and the last error", async () => {
    const client = await setup();
    const log = new EventLog();
    await runnerFor(client, POISON, { ...TUNING, maxQuarantined: 2 }, log).runUntilDone();
    const row = await rawStateRow(client, "poison_v1");
    expect(row?.status).toBe("failed");
    expect(row?.error).toMatch(/2 rows are quarantined and another one failed, more than the cap of 2/);
    expect(row?.error).toMatch(/NOT NULL constraint failed/);
    expect(await failureRows(client)).toHaveLength(2);
    expect(row?.cursor).toBe("57"); // the key after 17 and 57… 58 was not skipped
    expect(log.of("failed")).toHaveLength(1);
  });

  it("fails when more than half of at least 50 step attempts failed (every row poisoned)", async () => {
    db = tempDb();
    const client = db.open();
    await createCounterTable(
      client,
      Array.from({ length: 400 }, (_, i) => BigInt(i + 1)),
    );
    await client.execute("UPDATE t SET bad = 1");
    const log = new EventLog();
    await runnerFor(client, POISON, TUNING, log).runUntilDone();
    const row = await rawStateRow(client, "poison_v1");
    expect(row?.status).toBe("failed");
    expect(row?.error).toMatch(
      /^(\d+) of (\d+) step attempts failed \(more than 50% of at least 50\); last error: .*NOT NULL/,
    );
    const [, failed, attempts] = /^(\d+) of (\d+)/.exec(row?.error ?? "") ?? [];
    expect(Number(attempts)).toBeGreaterThanOrEqual(50);
    expect(Number(failed) * 2).toBeGreaterThan(Number(attempts));
    // It stopped long before quarantining all 400 rows.
    expect(Number(row?.quarantined)).toBeLessThan(20);
    // An operator's retry starts the ratio over (the cause was dealt with, presumably).
    await runnerFor(client).store.control("poison_v1", "retry");
    expect((await rawStateRow(client, "poison_v1"))?.failed_steps).toBe("0");
  });

  it("fails at once, without bisecting, on an error of the statement itself", async () => {
    const client = await setup([]);
    await client.execute("CREATE TABLE aux (x INTEGER)");
    const log = new EventLog();
    const runner = runnerFor(
      client,
      counterMigration({ name: "typo_v1", set: "n = (SELECT x FROM aux) + 1" }),
      TUNING,
      log,
    );
    await runner.init(); // it compiles at start-up; the table it reads is gone when the run starts
    await client.execute("DROP TABLE aux");
    await runner.runUntilDone();
    const row = await rawStateRow(client, "typo_v1");
    expect(row?.status).toBe("failed");
    expect(row?.error).toMatch(/no such table: aux/);
    expect(log.of("bisecting")).toEqual([]);
    expect(await failureRows(client)).toEqual([]);
  });
});

describe("retrying quarantined rows", () => {
  it("re-applies the change in fenced steps once fixed, reopening a done migration; resolved rows are marked", async () => {
    const client = await setup();
    const runner = runnerFor(client);
    await runner.runUntilDone();
    expect((await rawStateRow(client, "poison_v1"))?.status).toBe("done");

    // Still broken: the retry fails again, the row stays quarantined with one more attempt.
    const controls = new MigrationControls({ client, migrations: [POISON], tuning: resolveTuning(TUNING) });
    expect(await controls.retryFailures("poison_v1", [57n])).toMatchObject({
      status: "ok",
      requested: 1,
      from: "done",
      to: "running",
    });
    await runner.runUntilDone();
    let failures = await failureRows(client);
    expect(failures.find((f) => f.key === "57")).toMatchObject({
      attempts: 2,
      resolvedAt: null,
      retryRequested: false,
    });
    expect((await rawStateRow(client, "poison_v1"))?.status).toBe("done");

    // Fixed: every quarantined row is retried and resolved; the counts add up.
    await client.execute("UPDATE t SET bad = 0");
    expect(await controls.retryFailures("poison_v1")).toMatchObject({ requested: 3, to: "running" });
    await runner.runUntilDone();
    failures = await failureRows(client);
    expect(failures.map((f) => [f.key, f.resolution])).toEqual(BAD.map((k) => [String(k), "retried"]));
    expect(failures.every((f) => f.resolvedAt !== null)).toBe(true);
    const counters = await countersById(client);
    expect([...counters.values()].every((n) => n === 1n)).toBe(true);
    expect(await rawStateRow(client, "poison_v1")).toMatchObject({
      status: "done",
      rows_processed: "100",
      quarantined: "0",
    });
    expect(await controls.failures("poison_v1")).toEqual([]);
    expect((await controls.failures("poison_v1", { includeResolved: true }))?.length).toBe(3);
    const audit = await controls.audit();
    expect(audit.filter((a) => a.action === "retry-failures")).toHaveLength(2);
  });
});

describe("control API and CLI", () => {
  const POISON_TRIGGER =
    "CREATE TRIGGER poison BEFORE UPDATE OF last_seen ON transmissions WHEN NEW.id = 57 BEGIN SELECT RAISE(ABORT, 'poison row 57'); END";

  it("lists quarantined rows and retries them over HTTP", async () => {
    h = await startHarness({ transmissions: 300 });
    await h.client.execute(POISON_TRIGGER);
    for (let i = 0; i < 20 && (await h.service.runner.store.get(TX))?.status !== "done"; i++)
      await h.service.tick(2000);
    const list = await h.request("GET", `/api/migrations/${TX}/failures`);
    expect(list.status).toBe(200);
    const body = (await list.json()) as { quarantined: number; failures: { key: number; error: string }[] };
    expect(body.quarantined).toBe(1);
    expect(body.failures).toMatchObject([{ key: 57, attempts: 1, resolvedAt: null }]);
    expect(body.failures[0]?.error).toContain("poison row 57");
    const info = (await (await h.request("GET", `/api/migrations/${TX}`)).json()) as {
      migration: { status: string; quarantined: number; rowsProcessed: number; rowsTotal: number };
    };
    expect(info.migration).toMatchObject({ status: "done", quarantined: 1 });
    expect(info.migration.rowsProcessed + info.migration.quarantined).toBe(info.migration.rowsTotal);

    expect(
      (await h.request("POST", `/api/migrations/${TX}/failures/retry`, { body: { keys: ["x"] } })).status,
    ).toBe(400);
    expect((await h.request("GET", `/api/migrations/${TX}/failures?bogus=1`)).status).toBe(400);
    expect((await h.request("GET", `/api/migrations/nope_v1/failures`)).status).toBe(404);
    expect((await h.request("GET", `/api/migrations/${TX}/failures`, { token: null })).status).toBe(401);

    await h.client.execute("DROP TRIGGER poison");
    const retry = await h.request("POST", `/api/migrations/${TX}/failures/retry`, {
      body: { note: "fixed" },
    });
    expect(retry.status).toBe(200);
    expect(await retry.json()).toMatchObject({ requested: 1, from: "done", to: "running" });
    for (let i = 0; i < 10 && (await h.service.runner.store.get(TX))?.status !== "done"; i++)
      await h.service.tick(2000);
    const after = (await (
      await h.request("GET", `/api/migrations/${TX}/failures?resolved=include`)
    ).json()) as {
      quarantined: number;
      failures: { key: number; resolution: string }[];
    };
    expect(after).toMatchObject({ quarantined: 0, failures: [{ key: 57, resolution: "retried" }] });
    const lastSeen = await h.client.execute("SELECT last_seen FROM transmissions WHERE id = 57");
    expect(Number(lastSeen.rows[0]?.last_seen)).toBe(1057);
  });

  it("trickle failures lists them and --retry marks them", async () => {
    h = await startHarness({ transmissions: 200 });
    await h.client.execute(POISON_TRIGGER);
    for (let i = 0; i < 20 && (await h.service.runner.store.get(TX))?.status !== "done"; i++)
      await h.service.tick(2000);
    await h.service.stop();
    const env = { DATABASE_URL: h.db.url };
    const list = await cli(["failures", TX], env);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/1 quarantined rows/);
    expect(list.stdout).toMatch(/key 57: unresolved, 1 attempt\(s\), .*poison row 57/);
    const status = await cli(["status"], env);
    expect(status.stdout).toMatch(/quarantined: 1 rows skipped/);
    const retry = await cli(["failures", TX, "--retry", "--keys", "57"], env);
    expect(retry.code, retry.stderr).toBe(0);
    expect(retry.stdout).toMatch(/1 quarantined rows marked for retry/);
    const bad = await cli(["failures", TX, "--keys", "57"], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--keys needs --retry/);
  });
});
