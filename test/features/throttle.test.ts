/**
 * Throttling with a visible reason: quiet hours hold a migration until the window ends, a slow probe query and a
 * climbing SQLITE_BUSY rate back off; the decision is written to the row (every runner respects it without taking
 * the lease) and shows in the snapshot, the control API and `trickle status`. Configuration errors name the
 * variable.
 */
import type { Client, InStatement, Transaction } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { loadOperatorConfig } from "../../src/engine/operator-config.ts";
import { Runner } from "../../src/engine/runner.ts";
import { parsePolicy, parseQuietHours, quietWindowAt } from "../../src/engine/throttle.ts";
import type { MigrationDefinition } from "../../src/migrations/define.ts";
import { buildSnapshot } from "../../src/progress/snapshot.ts";
import { type Harness, startHarness, TX } from "../fixtures/server-harness.ts";
import { cli } from "../helpers/cli.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  createCounterTable,
  EventLog,
  FakeClock,
  rawStateRow,
  recordingClient,
  sqlOf,
} from "../helpers/engine.ts";

let db: TempDb | undefined;
let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
  db?.cleanup();
  db = undefined;
});

const COUNTER = counterMigration({ name: "counter_v1", filter: "done = 0", set: "n = n + 1, done = 1" });
const TUNING = { initialBatch: 10, maxBatch: 10, yieldMs: 1 };
const at = (iso: string) => Date.parse(iso);

async function setup(rows = 100): Promise<Client> {
  db = tempDb();
  const client = db.open();
  await createCounterTable(
    client,
    Array.from({ length: rows }, (_, i) => BigInt(i + 1)),
  );
  return client;
}

describe("quiet hours", () => {
  it("holds until the window ends, visibly, without taking the lease again; runs after it", async () => {
    const client = await setup();
    let wall = at("2030-03-01T02:30:00Z");
    const log = new EventLog();
    const runner = new Runner({
      client,
      migrations: [COUNTER],
      tuning: TUNING,
      clock: new FakeClock(),
      wallClock: () => wall,
      throttle: { quietHours: "01:00-05:00" },
      onEvent: log.listener,
    });

    const first = await runner.runSlice(1000);
    expect(first).toMatchObject({
      steps: 0,
      moreWork: true,
      outcomes: [{ name: "counter_v1", outcome: "throttled" }],
    });
    const row = await rawStateRow(client, "counter_v1");
    expect(row?.status).toBe("pending"); // not even started: nothing runs in quiet hours
    expect(row?.throttle_reason).toMatch(/^quiet hours 01:00-05:00 UTC/);
    expect(row?.throttled_until).toBe("2030-03-01T05:00:00.000Z");
    expect(log.of("throttled")[0]).toMatchObject({ signal: "quiet-hours", policy: "hold" });
    const epoch = row?.lease_epoch;

    wall = at("2030-03-01T04:59:00Z");
    expect((await runner.runSlice(1000)).outcomes[0]?.outcome).toBe("throttled");
    expect((await rawStateRow(client, "counter_v1"))?.lease_epoch).toBe(epoch); // skipped without a write

    // The snapshot carries the reason while it holds.
    const snapshot = buildSnapshot(await runner.store.list(), {
      names: ["counter_v1"],
      takenAt: wall,
      runnerState: runner.state(),
    });
    expect(snapshot.migrations[0]?.throttle).toEqual({
      reason: expect.stringMatching(/^quiet hours/),
      until: "2030-03-01T05:00:00.000Z",
    });

    wall = at("2030-03-01T05:00:01Z");
    await runner.runUntilDone();
    const done = await rawStateRow(client, "counter_v1");
    expect(done).toMatchObject({
      status: "done",
      rows_processed: "100",
      throttle_reason: null,
      throttled_until: null,
    });
  });

  it("parses windows, wraps past midnight, and rejects bad ones naming the variable", () => {
    const windows = parseQuietHours("22:30-02:00, 12:00-12:15", "TRICKLE_QUIET_HOURS");
    expect(quietWindowAt(windows, at("2030-01-01T23:00:00Z"))?.endsAtMs).toBe(at("2030-01-02T02:00:00Z"));
    expect(quietWindowAt(windows, at("2030-01-02T01:59:00Z"))?.endsAtMs).toBe(at("2030-01-02T02:00:00Z"));
    expect(quietWindowAt(windows, at("2030-01-02T02:00:00Z"))).toBeUndefined();
    expect(quietWindowAt(windows, at("2030-01-02T12:10:00Z"))?.window.text).toBe("12:00-12:15");
    expect(() => loadOperatorConfig({ TRICKLE_QUIET_HOURS: "1-5" })).toThrow(
      /^TRICKLE_QUIET_HOURS: "1-5" must be/,
    );
    expect(() => loadOperatorConfig({ TRICKLE_QUIET_HOURS: "03:00-03:00" })).toThrow(
      /TRICKLE_QUIET_HOURS.*empty/,
    );
  });
});

describe("probe query", () => {
  it("backs off while the probe is slower than its limit, and carries on once it is fast again", async () => {
    const client = await setup();
    const clock = new FakeClock();
    let probeCostMs = 500;
    // The probe really runs; the wrapper only charges its cost to the fake clock, as a slow database would.
    const probed: string[] = [];
    const wrapped = new Proxy(client, {
      get(target, prop) {
        if (prop === "execute") {
          return async (stmt: InStatement) => {
            const result = await target.execute(stmt);
            if (typeof stmt === "string" && stmt.includes("probe_marker")) {
              probed.push(stmt);
              clock.advance(probeCostMs);
            }
            return result;
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    let wall = at("2030-03-01T12:00:00Z");
    const log = new EventLog();
    const runner = new Runner({
      client: wrapped,
      migrations: [COUNTER],
      tuning: TUNING,
      clock,
      wallClock: () => wall,
      throttle: { probe: { sql: "SELECT COUNT(*) AS probe_marker FROM t", maxMs: 100, everyMs: 0 } },
      onEvent: log.listener,
    });

    const slice = await runner.runSlice(1000);
    expect(slice.outcomes[0]?.outcome).toBe("throttled");
    expect(probed.length).toBe(1);
    const row = await rawStateRow(client, "counter_v1");
    expect(row?.throttle_reason).toBe("probe query took 500 ms (limit 100 ms): back off 30 s");
    expect(row?.throttled_until).toBe("2030-03-01T12:00:30.000Z");
    expect(runner.state()[0]?.throttle).toMatchObject({
      policy: "backoff",
      untilMs: at("2030-03-01T12:00:30Z"),
    });

    probeCostMs = 5;
    wall = at("2030-03-01T12:00:31Z");
    await runner.runUntilDone();
    expect((await rawStateRow(client, "counter_v1"))?.status).toBe("done");
    expect(log.of("throttled")).toHaveLength(1);
    // Every probe run is told, with its latency and limit (the status page draws them).
    const runs = log.of("probe");
    expect(runs.length).toBe(probed.length);
    expect(runs[0]).toMatchObject({ name: "counter_v1", durationMs: 500, limitMs: 100, ok: true });
    expect(runs.at(-1)).toMatchObject({ durationMs: 5, ok: true });
  });

  it("holds for minutes with a hold policy, and a probe that fails holds back too (fail safe)", async () => {
    const client = await setup();
    const wall = at("2030-03-01T12:00:00Z");
    const failing: MigrationDefinition = {
      ...COUNTER,
      throttle: {
        probe: { sql: "SELECT * FROM no_such_table", maxMs: 100, policy: { kind: "hold", minutes: 10 } },
      },
    };
    const runner = new Runner({
      client,
      migrations: [failing],
      tuning: TUNING,
      clock: new FakeClock(),
      wallClock: () => wall,
    });
    expect((await runner.runSlice(1000)).outcomes[0]?.outcome).toBe("throttled");
    const row = await rawStateRow(client, "counter_v1");
    expect(row?.throttle_reason).toMatch(
      /^probe query failed: .*no such table: no_such_table.*: hold 10 min$/,
    );
    expect(row?.throttled_until).toBe("2030-03-01T12:10:00.000Z");
  });

  it("rejects a probe that is not a single read query", () => {
    expect(() =>
      loadOperatorConfig({ TRICKLE_PROBE_SQL: "DELETE FROM t", TRICKLE_PROBE_MAX_MS: "50" }),
    ).toThrow(/^TRICKLE_PROBE_SQL: must be a read-only query/);
    expect(() => loadOperatorConfig({ TRICKLE_PROBE_SQL: "SELECT 1" })).toThrow(/must be set together/);
    expect(() =>
      loadOperatorConfig({ TRICKLE_PROBE_SQL: "SELECT 1; SELECT 2", TRICKLE_PROBE_MAX_MS: "50" }),
    ).toThrow(/single statement/);
    expect(
      loadOperatorConfig({
        TRICKLE_PROBE_SQL: "SELECT 1;",
        TRICKLE_PROBE_MAX_MS: "50",
        TRICKLE_PROBE_POLICY: "hold:5m",
      }).throttle.probe,
    ).toEqual({ sql: "SELECT 1", maxMs: 50, policy: { kind: "hold", minutes: 5 } });
    expect(() => parsePolicy("sometimes", "TRICKLE_PROBE_POLICY")).toThrow(/^TRICKLE_PROBE_POLICY must be/);
  });
});

describe("SQLITE_BUSY rate", () => {
  it("backs off once most recent step attempts hit SQLITE_BUSY, with the rate in the reason", async () => {
    const client = await setup(2000);
    let wall = at("2030-03-01T12:00:00Z");
    const log = new EventLog();
    let steps = 0;
    let app: Transaction | undefined;
    // After the third step the application takes the write lock and keeps it: every attempt then hits SQLITE_BUSY.
    const recording = recordingClient(db!.open({ timeout: 5 }), {
      afterBatch: async (statements) => {
        if (
          statements.some((s) => sqlOf(s).startsWith("INSERT INTO _async_migrations_fence")) &&
          ++steps === 3
        )
          app = await client.transaction("write");
      },
    });
    const runner = new Runner({
      client: recording.client,
      migrations: [COUNTER],
      tuning: { ...TUNING, retryMinMs: 1, retryMaxMs: 2 },
      clock: new FakeClock(),
      wallClock: () => wall,
      throttle: { busy: { maxRate: 0.5, window: 4, policy: { kind: "backoff", seconds: 20 } } },
      onEvent: log.listener,
    });
    let slice: Awaited<ReturnType<Runner["runSlice"]>>;
    try {
      slice = await runner.runSlice(100_000);
    } finally {
      await app?.rollback();
    }
    expect(slice.outcomes[0]?.outcome).toBe("throttled");
    expect(log.of("retrying").filter((e) => e.code === "SQLITE_BUSY").length).toBeGreaterThanOrEqual(3);
    const throttled = log.of("throttled")[0];
    expect(throttled).toMatchObject({ signal: "busy", policy: "backoff", untilMs: wall + 20_000 });
    expect(throttled?.reason).toMatch(
      /^SQLITE_BUSY on [34] of the last 4 step attempts \(limit 50%\): back off 20 s$/,
    );
    expect(runner.state()[0]?.throttle?.reason).toBe(throttled?.reason);

    // The lock is free again, but the back-off holds for its 20 s; then the run finishes.
    expect((await runner.runSlice(1000)).outcomes[0]?.outcome).toBe("throttled");
    wall += 20_001;
    await runner.runUntilDone();
    expect(await rawStateRow(client, "counter_v1")).toMatchObject({ status: "done", rows_processed: "2000" });
  });
});

describe("visible to operators", () => {
  it("serves the probe's recent runs in /api/perf for the status page's chart", async () => {
    h = await startHarness({
      transmissions: 300,
      env: {
        TRICKLE_SNAPSHOT_TTL_MS: "0",
        TRICKLE_PROBE_SQL: "SELECT COUNT(*) FROM transmissions",
        TRICKLE_PROBE_MAX_MS: "60000",
        TRICKLE_PROBE_EVERY_MS: "0",
      },
    });
    expect((await h.service.controls.tune(TX, { initialBatch: 100, maxBatch: 100 })).status).toBe("ok");
    while ((await h.service.tick(100)).moreWork) {}
    const perf = (await (await h.request("GET", "/api/perf", { token: null })).json()) as {
      recentProbes: Record<string, { durationMs: number; limitMs: number; ok: boolean }[]>;
    };
    const runs = perf.recentProbes[TX] ?? [];
    // One probe before each step at least (every 0 ms), none of them slow or failed.
    expect(runs.length).toBeGreaterThanOrEqual(3);
    for (const run of runs) expect(run).toMatchObject({ limitMs: 60000, ok: true });
    expect(runs.every((r) => r.durationMs >= 0 && r.durationMs < 60000)).toBe(true);
  });

  it("shows the throttle in /api/healthz, the control API and trickle status", async () => {
    h = await startHarness({ transmissions: 50, env: { TRICKLE_SNAPSHOT_TTL_MS: "0" } });
    const until = new Date(Date.now() + 3_600_000).toISOString();
    await h.client.execute({
      sql: "UPDATE _async_migrations SET status = 'running', started_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), throttle_reason = 'quiet hours 01:00-05:00 UTC: holding until the window ends', throttled_until = ? WHERE name = ?",
      args: [until, TX],
    });
    const health = (await (await h.request("GET", "/api/healthz", { token: null })).json()) as {
      async_migrations: { throttle: unknown; stuck: boolean }[];
    };
    expect(health.async_migrations[0]?.throttle).toEqual({
      reason: "quiet hours 01:00-05:00 UTC: holding until the window ends",
      until,
    });
    const detail = (await (await h.request("GET", `/api/migrations/${TX}`)).json()) as {
      migration: { throttle: { until: string } };
    };
    expect(detail.migration.throttle.until).toBe(until);
    // A tick respects it: no step.
    const tick = await h.service.tick(500);
    expect(tick.outcomes).toEqual([{ name: TX, outcome: "throttled" }]);
    await h.service.stop();
    const status = await cli(["status", "--json"], { DATABASE_URL: h.db.url });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)[0]).toMatchObject({ throttle: { until }, stuck: false });
    const human = await cli(["status"], { DATABASE_URL: h.db.url });
    expect(human.stdout).toContain(`throttled until ${until}: quiet hours 01:00-05:00 UTC`);
  });

  it("configuration errors name the variable and never echo the webhook URL", () => {
    expect(() => loadOperatorConfig({ TRICKLE_THROTTLE_BUSY_RATE: "2" })).toThrow(
      /^TRICKLE_THROTTLE_BUSY_RATE must be/,
    );
    expect(() => loadOperatorConfig({ TRICKLE_STUCK_AFTER_MS: "soon" })).toThrow(
      /^TRICKLE_STUCK_AFTER_MS must be/,
    );
    expect(() => loadOperatorConfig({ TRICKLE_MAX_QUARANTINED: "-1" })).toThrow(
      /^TRICKLE_MAX_QUARANTINED must be/,
    );
    let message = "";
    try {
      loadOperatorConfig({ TRICKLE_WEBHOOK_URL: "ftp://user:s3cret@example.test/hook" });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^TRICKLE_WEBHOOK_URL must be an http/);
    expect(message).not.toContain("s3cret");
    expect(loadOperatorConfig({ TRICKLE_THROTTLE_BUSY_RATE: "0.3" }).throttle.busy).toEqual({ maxRate: 0.3 });
  });
});
