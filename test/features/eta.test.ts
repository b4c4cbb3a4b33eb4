/**
 * Honest ETA, stuck detection, verification: the effective rate counts wall time (gaps, throttles, holds); the
 * ETA band is p10–p90 of the effective rates of recent intervals (the runner records a point per slice); `stuck`
 * means running without cursor progress for TRICKLE_STUCK_AFTER_MS; `verifiedAt`/`residual` are recorded at the
 * end of every run. All of it shows in the API, `trickle status`, the status page and the banner.
 */
import type { InStatement } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { loadOperatorConfig } from "../../src/engine/operator-config.ts";
import { Runner } from "../../src/engine/runner.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import { computeProgress, type ProgressInput } from "../../src/progress/rate.ts";
import { buildSnapshot, type MigrationInfo } from "../../src/progress/snapshot.ts";
import { createService, type Service } from "../../src/service.ts";
import { STATUS_PAGE_HTML } from "../../src/ui/status-page.ts";
import { WARMUP_BANNER_JS } from "../../src/ui/warmup-banner.ts";
import { cli } from "../helpers/cli.ts";
import { createCoreScopeSchema, insertCoreScopeRows, type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  createCounterTable,
  FakeClock,
  legacyTransmissions,
  recordingClient,
  sqlOf,
} from "../helpers/engine.ts";
import { FakeAnswer, type FakeElement, runScript } from "./fake-dom.ts";

let db: TempDb | undefined;
let service: Service | undefined;
afterEach(async () => {
  await service?.stop();
  service = undefined;
  db?.cleanup();
  db = undefined;
});

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();

function running(overrides: Partial<ProgressInput>): ProgressInput {
  return {
    status: "running",
    rowsProcessed: 600n,
    rowsTotal: 1000n,
    startedAt: iso(T0),
    endedAt: null,
    busyMs: 10_000,
    ...overrides,
  };
}

describe("ETA band", () => {
  it("is p10–p90 of the window's effective rates, and contains the point estimate", () => {
    // Intervals of 10 s at 10, 20, 10 and 20 rows/s; 400 rows left.
    const rateWindow: [number, number][] = [
      [T0, 0],
      [T0 + 10_000, 100],
      [T0 + 20_000, 300],
      [T0 + 30_000, 400],
      [T0 + 40_000, 600],
    ];
    const p = computeProgress(running({ rateWindow }), T0 + 40_000);
    expect(p.rate).toBeCloseTo(15, 9); // 600 rows over 40 s of wall time
    expect(p.etaSeconds).toBeCloseTo(400 / 15, 6);
    expect(p.etaLowSeconds).toBeCloseTo(20, 6); // 400 rows at the p90 rate, 20/s
    expect(p.etaHighSeconds).toBeCloseTo(40, 6); // at the p10 rate, 10/s
  });

  it("is never narrower than the point ETA's ±25 % accuracy, however steady the slices were", () => {
    // Four intervals at 10 rows/s within 1 % of each other: p10–p90 alone would be 40 ± 0.4 s.
    const rateWindow: [number, number][] = [
      [T0, 0],
      [T0 + 10_000, 100],
      [T0 + 20_000, 201],
      [T0 + 30_000, 300],
      [T0 + 40_000, 400],
    ];
    const p = computeProgress(running({ rowsProcessed: 400n, rateWindow }), T0 + 40_000);
    expect(p.etaSeconds).toBeCloseTo(60, 6); // 600 rows left at 10/s
    // Within ±25 % of the time left means that time lies between point / 1.25 and point / 0.75.
    expect(p.etaLowSeconds).toBeCloseTo(48, 6);
    expect(p.etaHighSeconds).toBeCloseTo(80, 6);
  });

  it("counts the gaps: an interval without progress (a hold) leaves the slow end unbounded", () => {
    const rateWindow: [number, number][] = [
      [T0, 0],
      [T0 + 10_000, 200],
      [T0 + 20_000, 400],
      [T0 + 80_000, 400], // a minute-long hold
      [T0 + 90_000, 600],
    ];
    const p = computeProgress(running({ rateWindow }), T0 + 90_000);
    expect(p.rate).toBeCloseTo(600 / 90, 9); // the hold counts in the effective rate
    expect(p.etaLowSeconds).toBeCloseTo(20, 6);
    expect(p.etaHighSeconds).toBeNull();
  });

  it("before three intervals has the point's accuracy as its band; the open interval counts once a second long", () => {
    // 100 rows/10 s, then 200 rows/10 s: p10–p90 would be 10–20 rows/s.
    const twoIntervals: [number, number][] = [
      [T0, 0],
      [T0 + 10_000, 100],
      [T0 + 20_000, 300],
    ];
    const early = computeProgress(running({ rateWindow: twoIntervals, rowsProcessed: 300n }), T0 + 20_500);
    expect(early.etaSeconds).toBeCloseTo(700 / (300 / 20.5), 6);
    expect(early.etaLowSeconds).toBeCloseTo(early.etaSeconds! / 1.25, 6);
    expect(early.etaHighSeconds).toBeCloseTo(early.etaSeconds! / 0.75, 6);
    // A third interval (the open one, 100 rows in 10 s): the rates' band, 600 rows at 20/s to 600 at 10/s.
    const withOpen = computeProgress(running({ rateWindow: twoIntervals, rowsProcessed: 400n }), T0 + 30_000);
    expect(withOpen.etaLowSeconds).toBeCloseTo(30, 6);
    expect(withOpen.etaHighSeconds).toBeCloseTo(60, 6);
  });

  it("leaves out the time before the first row was covered (counting): it does not recur", () => {
    // 20 s counting the candidates, then 10 rows/s; 300 of 1,000 rows covered after 50 s.
    const rateWindow: [number, number][] = [
      [T0, 0],
      [T0 + 20_000, 0],
      [T0 + 30_000, 100],
      [T0 + 40_000, 200],
      [T0 + 50_000, 300],
    ];
    const p = computeProgress(running({ rowsProcessed: 300n, rateWindow }), T0 + 50_000);
    expect(p.rate).toBeCloseTo(6, 9); // rows over the time since the start, as CoreScope reads `rate`
    expect(p.etaSeconds).toBeCloseTo(70, 6); // 700 rows at 10/s, not 700 at 6/s (117 s)
    // The counting interval is not a slow sample: the rates are all 10/s, so the band is the point's own
    // accuracy, 70 s / 1.25 to 70 s / 0.75 (with the counting interval in it, the slow end would be unbounded).
    expect(p.etaLowSeconds).toBeCloseTo(56, 6);
    expect(p.etaHighSeconds).toBeCloseTo(70 / 0.75, 6);
    // A window that still only counts: the rate since the start, no band.
    const counting = computeProgress(
      running({ rowsProcessed: 0n, rateWindow: rateWindow.slice(0, 2) }),
      T0 + 20_000,
    );
    expect(counting.etaSeconds).toBeNull();
    expect(counting.etaLowSeconds).toBeNull();
  });

  it("counts quarantined rows as covered", () => {
    const p = computeProgress(running({ rowsProcessed: 590n, quarantined: 10n }), T0 + 40_000);
    expect(p.percent).toBeCloseTo(60, 9);
    expect(p.rate).toBeCloseTo(15, 9);
  });
});

describe("stuck", () => {
  it("is a running migration whose cursor has not moved for the threshold, unless it is throttled", () => {
    const now = T0 + 3_600_000;
    const old = running({ progressAt: iso(now - 11 * 60_000) });
    expect(computeProgress(old, now).stuck).toBe(true); // default 10 min
    expect(computeProgress(old, now, { stuckAfterMs: 20 * 60_000 }).stuck).toBe(false);
    expect(computeProgress(running({ progressAt: iso(now - 60_000) }), now).stuck).toBe(false);
    expect(computeProgress({ ...old, throttledUntil: iso(now + 60_000) }, now).stuck).toBe(false);
    expect(computeProgress({ ...old, status: "paused" }, now).stuck).toBe(false);
    // Rows written before progress_at existed fall back to last_update_at.
    expect(computeProgress(running({ lastUpdateAt: iso(now - 11 * 60_000) }), now).stuck).toBe(true);
  });

  it("shows as stuck: true in the API and STUCK in trickle status", async () => {
    db = tempDb();
    const client = db.open();
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, legacyTransmissions(100));
    service = createService({
      client,
      config: loadConfig({ ADMIN_TOKEN: "admin-token-0123456789", TRICKLE_SNAPSHOT_TTL_MS: "0" }),
      operator: loadOperatorConfig({ TRICKLE_STUCK_AFTER_MS: "60000" }),
      log: () => {},
    });
    await service.runner.init();
    const hourAgo = iso(Date.now() - 3_600_000);
    await client.execute({
      sql: "UPDATE _async_migrations SET status = 'running', started_at = ?, progress_at = ?, rows_total = 100 WHERE name = ?",
      args: [hourAgo, hourAgo, txLastSeenBackfillV1.name],
    });
    const auth = { authorization: "Bearer admin-token-0123456789" };
    const detail = (await (
      await service.app.request(`/api/migrations/${txLastSeenBackfillV1.name}`, { headers: auth })
    ).json()) as {
      migration: MigrationInfo;
    };
    expect(detail.migration).toMatchObject({ stuck: true, progressAt: hourAgo });
    const health = (await (await service.app.request("/api/healthz")).json()) as {
      async_migrations: MigrationInfo[];
    };
    expect(health.async_migrations[0]?.stuck).toBe(true);
    const metrics = await (await service.app.request("/metrics")).text();
    expect(metrics).toContain(`trickle_migration_stuck{migration="${txLastSeenBackfillV1.name}"} 1`);
    await service.stop();
    service = undefined;
    const status = await cli(["status"], { DATABASE_URL: db.url, TRICKLE_STUCK_AFTER_MS: "60000" });
    expect(status.stdout).toMatch(/STUCK: the cursor has not moved since .* \(threshold 1m00s\)/);
  });
});

/**
 * A 3,000-key counter migration on a fake clock that charges 10 ms for each batch `charge` picks, with a wall
 * clock the test moves (starting at T0).
 */
async function counterRunOverWallTime(options: {
  readonly batch: number;
  readonly charge: (statements: readonly InStatement[]) => boolean;
  readonly onCounted?: (wallMs: number) => void;
}) {
  db = tempDb();
  const client = db.open();
  await createCounterTable(
    client,
    Array.from({ length: 3000 }, (_, i) => BigInt(i + 1)),
  );
  let wallMs = T0;
  const clock = new FakeClock();
  const recording = recordingClient(client, {
    beforeBatch: (statements) => {
      if (options.charge(statements)) clock.advance(10);
    },
  });
  const runner = new Runner({
    client: recording.client,
    migrations: [counterMigration({ name: "counter_v1", filter: "done = 0", set: "n = n + 1, done = 1" })],
    tuning: { initialBatch: options.batch, maxBatch: options.batch, yieldMs: 0 },
    clock,
    wallClock: () => wallMs,
    onEvent: (event) => {
      if (event.type === "counted") options.onCounted?.(wallMs);
    },
  });
  const wall = {
    now: () => wallMs,
    advance: (ms: number) => {
      wallMs += ms;
    },
  };
  return { runner, wall };
}

describe("the runner's window", () => {
  it("records a point per slice over wall time, so a running migration gets a band", async () => {
    // Each step's batch costs 10 ms of fake time.
    const { runner, wall } = await counterRunOverWallTime({
      batch: 50,
      charge: (statements) =>
        statements.some((s) => sqlOf(s).startsWith("INSERT INTO _async_migrations_fence")),
    });
    // Five slices of 100 ms of work, one every 5 s of wall time, with uneven gaps.
    for (const gap of [5_000, 5_000, 8_000, 5_000, 12_000]) {
      await runner.runSlice(100);
      wall.advance(gap);
    }
    await runner.runSlice(100);
    const row = await runner.store.get("counter_v1");
    // The run's start, then one point per slice — except the first, which ended within a second of the start.
    expect(row?.rateWindow?.map(([t]) => t - T0)).toEqual([0, 5_000, 10_000, 18_000, 23_000, 35_000]);
    expect(row?.rateWindow?.[0]).toEqual([T0, 0]);
    const info = buildSnapshot([row!], { names: ["counter_v1"], takenAt: wall.now() + 500 }).migrations[0]!;
    expect(info.status).toBe("running");
    expect(info.etaLowSeconds).not.toBeNull();
    expect(info.etaHighSeconds).not.toBeNull();
    expect(info.etaLowSeconds!).toBeLessThanOrEqual(info.etaSeconds!);
    expect(info.etaHighSeconds!).toBeGreaterThanOrEqual(info.etaSeconds!);
    expect(info.etaHighSeconds!).toBeGreaterThan(info.etaLowSeconds!); // the gaps were uneven
  });

  it("starts over when counting ends: the counting slices' time is not in the ETA", async () => {
    // Every batch (counting pieces included) costs 10 ms of fake time.
    let countedAt: number | undefined;
    const { runner, wall } = await counterRunOverWallTime({
      batch: 10,
      charge: () => true,
      onCounted: (at) => {
        countedAt = at;
      },
    });
    // Slices of 30 ms, 5 s of wall time apart: counting 3,000 keys takes more than one.
    while (countedAt === undefined) {
      await runner.runSlice(30);
      wall.advance(5_000);
    }
    expect(countedAt).toBeGreaterThan(T0); // counting took more than the first slice
    await runner.runSlice(30);
    const row = await runner.store.get("counter_v1");
    expect(row?.rateWindow?.[0]).toEqual([countedAt, 0]);
  });

  it("keeps counting's duration, and the ETA counts the verification walk down from it", async () => {
    const { runner, wall } = await counterRunOverWallTime({ batch: 10, charge: () => true });
    await runner.runSlice(30);
    const counting = await runner.store.get("counter_v1");
    expect(counting?.phase).toBe("counting");
    expect(counting?.countingMs).toBeNull();
    // Counting has run for 20 s by the database's clock (its own times, so no clock of the test's is involved).
    await db!
      .open()
      .execute(
        "UPDATE _async_migrations SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ','now','-20 seconds') WHERE name = 'counter_v1'",
      );
    let row = counting!;
    while (row.phase === "counting") {
      await runner.runSlice(30);
      wall.advance(1_000);
      row = (await runner.store.get("counter_v1"))!;
    }
    expect(row.countingMs).toBeGreaterThanOrEqual(20_000);
    expect(row.countingMs).toBeLessThan(80_000);
    // The data walk: its own rows at the window's rate, then the whole verification walk.
    for (let i = 0; i < 3; i++) {
      await runner.runSlice(30);
      wall.advance(1_000);
    }
    row = (await runner.store.get("counter_v1"))!;
    expect(row.rowsProcessed).toBeLessThan(row.rowsTotal);
    const seconds = row.countingMs! / 1000;
    const snapshotOf = (r: typeof row) =>
      buildSnapshot([r], { names: ["counter_v1"], takenAt: wall.now() }).migrations[0]!;
    const backfilling = snapshotOf(row);
    expect(backfilling.etaSeconds).toBeGreaterThan(0.75 * seconds);
    expect(backfilling.etaLowSeconds ?? seconds).toBeGreaterThanOrEqual(seconds / 2);
    if (backfilling.etaHighSeconds !== null)
      expect(backfilling.etaHighSeconds).toBeGreaterThan(1.5 * seconds);
    // Verification a third of the way through its keys: every row covered, two thirds of the walk's estimate
    // (3/4 of counting's time) left (this row is the real one with the walk's fields moved, to catch the walk part-way).
    const { minKey, maxKey } = row;
    const third = minKey! + (maxKey! - minKey! + 1n) / 3n - 1n;
    const verifying = {
      ...row,
      rowsProcessed: row.rowsTotal,
      phase: "verifying" as const,
      scanCursor: third,
    };
    expect(snapshotOf({ ...verifying, scanEnd: maxKey }).etaSeconds).toBeCloseTo(seconds / 2, 0);
    // Run to the end: a finished run has no ETA.
    while (row.status === "running") {
      await runner.runSlice(1_000);
      row = (await runner.store.get("counter_v1"))!;
    }
    expect(row.status).toBe("done");
    expect(snapshotOf(row).etaSeconds).toBeNull();
  });
});

describe("verification is recorded and shown", () => {
  it("sets verifiedAt and residual at the end of the run; the API and trickle status show them", async () => {
    db = tempDb();
    const client = db.open();
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, legacyTransmissions(300));
    service = createService({
      client,
      config: loadConfig({ ADMIN_TOKEN: "admin-token-0123456789", TRICKLE_SNAPSHOT_TTL_MS: "0" }),
      log: () => {},
    });
    await service.runner.init();
    while ((await service.runner.store.get(txLastSeenBackfillV1.name))?.status !== "done")
      await service.tick(2000);
    const perf = (await (await service.app.request("/api/perf")).json()) as {
      asyncMigrations: MigrationInfo[];
    };
    expect(perf.asyncMigrations[0]).toMatchObject({ status: "done", residual: 0, quarantined: 0 });
    expect(perf.asyncMigrations[0]?.verifiedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    await service.stop();
    service = undefined;
    const json = await cli(["status", "--json"], { DATABASE_URL: db.url });
    expect(JSON.parse(json.stdout)[0]).toMatchObject({
      residual: 0,
      verifiedAt: perf.asyncMigrations[0]?.verifiedAt,
    });
    const human = await cli(["status"], { DATABASE_URL: db.url });
    expect(human.stdout).toMatch(/verified: \d{4}-.*, 0 rows still needing work/);
  });
  it("records verifiedAt and the residual count of a run that fails verification after its passes", async () => {
    db = tempDb();
    const client = db.open();
    await createCounterTable(
      client,
      Array.from({ length: 50 }, (_, i) => BigInt(i + 1)),
    );
    const runner = new Runner({
      client,
      // The step never clears the verify condition: every pass finds all 50 rows again.
      migrations: [counterMigration({ name: "never_v1", filter: "done = 0", verify: "done = 0" })],
      clock: new FakeClock(),
    });
    await runner.runUntilDone();
    const row = await runner.store.get("never_v1");
    expect(row).toMatchObject({ status: "failed", residual: 50n });
    expect(row?.verifiedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    const info = buildSnapshot([row!], { names: ["never_v1"], takenAt: Date.now() }).migrations[0];
    expect(info).toMatchObject({ residual: 50, verifiedAt: row?.verifiedAt });
  });
});

/** The elements the status page looks up by id. */
const STATUS_PAGE_IDS = [
  "migrations",
  "overall",
  "alert",
  "updated",
  "live",
  "refresh",
  "token-form",
  "token",
  "token-state",
  "forget",
  "fleet",
];

describe("status page and banner show the band", () => {
  const item = (overrides: Partial<MigrationInfo>): MigrationInfo => ({
    name: "tx_last_seen_backfill_v1",
    status: "running",
    rowsProcessed: 600,
    rowsTotal: 1000,
    rate: 15,
    etaSeconds: 240,
    elapsedSeconds: 40,
    errorMessage: null,
    startedAt: iso(T0),
    endedAt: null,
    lastUpdateAt: iso(T0),
    percent: 60,
    busyRate: 100,
    reason: null,
    batchSize: 100,
    leaseOwner: null,
    pass: 1,
    steps: 6,
    etaLowSeconds: 180,
    etaHighSeconds: 300,
    stuck: false,
    progressAt: iso(T0),
    quarantined: 3,
    verifiedAt: null,
    residual: null,
    throttle: null,
    ratePerSec: 15,
    etaSec: 240,
    elapsedSec: 40,
    phase: "backfilling",
    phaseCursor: 600,
    phaseEnd: 1000,
    owned: true,
    ...overrides,
  });
  const health = (items: MigrationInfo[]) => ({
    ready: true,
    status: "migrating",
    async_migrations: items,
    async_migrations_running: true,
    snapshot_age_ms: 0,
  });

  it("the banner says `ETA 3m–5m`", async () => {
    const { document } = await runScript(WARMUP_BANNER_JS, { "/api/healthz": health([item({})]) });
    const lines = [...document.body.all()].filter((e) => e.tagName === "SPAN").map((e) => e.textContent);
    expect(lines).toEqual(["Migration tx_last_seen_backfill_v1: 600 / 1000 rows (60.0%, ETA 3m\u20135m)"]);
    const single = await runScript(WARMUP_BANNER_JS, {
      "/api/healthz": health([item({ etaLowSeconds: null, etaHighSeconds: null })]),
    });
    const text = [...single.document.body.all()].find((e) => e.tagName === "SPAN")?.textContent;
    expect(text).toBe("Migration tx_last_seen_backfill_v1: 600 / 1000 rows (60.0%, ETA 4m 0s)");
  });

  it("the status page shows the band, the stuck flag, the throttle and the quarantined rows", async () => {
    const script = /<script>([\s\S]*?)<\/script>/.exec(STATUS_PAGE_HTML)?.[1] ?? "";
    const until = iso(T0 + 600_000);
    const stuck = item({ name: "b_v1", stuck: true, etaLowSeconds: null, etaHighSeconds: null });
    const held = item({ name: "c_v1", throttle: { reason: "quiet hours 01:00-05:00 UTC", until } });
    const perf = { asyncMigrations: [item({}), stuck, held] };
    const { byId } = await runScript(
      script,
      { "/api/perf": perf, "/api/healthz": health(perf.asyncMigrations) },
      {
        ids: STATUS_PAGE_IDS,
      },
    );
    const cards = byId.get("migrations")!.children;
    expect(cards.map((c) => c.dataset.name)).toEqual(["tx_last_seen_backfill_v1", "b_v1", "c_v1"]);
    const field = (card: FakeElement, name: string) =>
      [...card.all()].find((e) => e.dataset.field === name)?.children[1];
    const flag = (card: FakeElement, name: string) => [...card.all()].find((e) => e.dataset.flag === name);
    expect(field(cards[0]!, "eta")?.textContent).toBe("3 min\u20135 min");
    expect(field(cards[0]!, "quarantined")?.textContent).toBe("3 rows");
    expect(flag(cards[0]!, "stuck")?.hidden).toBe(true);
    expect(flag(cards[1]!, "stuck")?.hidden).toBe(false);
    expect(cards[1]!.dataset.stuck).toBe("true");
    expect(cards[1]!.querySelector(".note")?.textContent).toMatch(/^No progress since /);
    expect(flag(cards[2]!, "throttled")?.hidden).toBe(false);
    expect(cards[2]!.querySelector(".note")?.textContent).toMatch(
      /^Throttled until .*: quiet hours 01:00-05:00 UTC$/,
    );
  });

  it("the status page draws the steps against their target, and the probe's latency against its limit", async () => {
    const script = /<script>([\s\S]*?)<\/script>/.exec(STATUS_PAGE_HTML)?.[1] ?? "";
    const at = iso(T0);
    const steps = [12, 30, 18].map((durationMs, i) => ({
      at,
      batchSize: 100,
      rows: 100,
      rowsProcessed: 100 * (i + 1),
      durationMs,
    }));
    const probes = [4, 9, 6.5].map((durationMs, i) => ({ at, durationMs, limitMs: 50, ok: i !== 1 }));
    const withProbe = item({});
    const withoutProbe = item({ name: "b_v1" });
    const perf = {
      asyncMigrations: [withProbe, withoutProbe],
      recentSteps: { [withProbe.name]: steps, b_v1: steps },
      recentProbes: { [withProbe.name]: probes },
      stepTargetMs: 20,
    };
    const { byId } = await runScript(
      script,
      { "/api/perf": perf, "/api/healthz": health(perf.asyncMigrations) },
      { ids: STATUS_PAGE_IDS },
    );
    const charts = (card: FakeElement) =>
      [...card.all()]
        .filter((e) => e.tagName === "FIGURE")
        .map((f) => ({
          hidden: f.hidden,
          title: f.children[0]?.textContent,
          caption: f.querySelector(".caption")?.textContent,
          points: [...f.all()].find((e) => e.tagName === "POLYLINE")?.attributes.get("points"),
        }));
    const [first, second] = byId.get("migrations")!.children;
    const drawn = charts(first!);
    expect(drawn.map((c) => [c.title, c.hidden])).toEqual([
      ["Step duration", false],
      ["Rows per second", false],
      ["Probe query latency", false],
    ]);
    expect(drawn[0]?.caption).toBe("3 steps: p50 18 ms, max 30 ms (target 20 ms)");
    expect(drawn[2]?.caption).toBe("3 probes: last 6.5 ms, max 9 ms (limit 50 ms), 1 failed");
    // One point per probe run, oldest first.
    expect(drawn[2]?.points?.split(" ")).toHaveLength(3);
    // No probe configured: no probe chart.
    expect(charts(second!).map((c) => c.hidden)).toEqual([false, false, true]);
  });

  it("the status page stops asking for the fleet once the server says it has none", async () => {
    const script = /<script>([\s\S]*?)<\/script>/.exec(STATUS_PAGE_HTML)?.[1] ?? "";
    const perf = { asyncMigrations: [item({})] };
    const { byId, fetched, nextTimer } = await runScript(
      script,
      {
        "/api/perf": perf,
        "/api/healthz": health(perf.asyncMigrations),
        "/api/fleet": new FakeAnswer(404, { status: 404, detail: "no fleet is configured here" }),
      },
      { ids: STATUS_PAGE_IDS },
    );
    expect(byId.get("fleet")!.hidden).toBe(true);
    await nextTimer(); // the next refresh
    const count = (path: string) => fetched.filter((p) => p === path).length;
    expect(count("/api/perf")).toBe(2);
    expect(count("/api/fleet")).toBe(1);
  });

  it("the status page finds its API under a prefix opened without the trailing slash", async () => {
    const script = /<script>([\s\S]*?)<\/script>/.exec(STATUS_PAGE_HTML)?.[1] ?? "";
    const perf = { asyncMigrations: [item({})] };
    const { byId } = await runScript(
      script,
      { "/admin/trickle/api/perf": perf, "/admin/trickle/api/healthz": health(perf.asyncMigrations) },
      {
        ids: STATUS_PAGE_IDS,
        pathname: "/admin/trickle",
      },
    );
    // Without the fix, `api/perf` from /admin/trickle would resolve to /admin/api/perf and fail.
    expect(byId.get("migrations")!.children.map((c) => c.dataset.name)).toEqual(["tx_last_seen_backfill_v1"]);
    expect(byId.get("alert")!.hidden).toBe(true);
  });
});
