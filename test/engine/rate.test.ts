/**
 * Rate and ETA (progress/rate.ts): the seed PR's pin, terminal states measured to `ended_at`, and the legacy
 * `YYYY-MM-DD HH:MM:SS` times CoreScope wrote read as UTC whatever the process's time zone.
 */
import { afterEach, describe, expect, it } from "vitest";
import { computeProgress, type ProgressInput, parseTime } from "../../src/progress/rate.ts";

const START = "2026-06-14T12:00:00.000Z";
const START_MS = Date.UTC(2026, 5, 14, 12, 0, 0);

function input(overrides: Partial<ProgressInput>): ProgressInput {
  return {
    status: "running",
    rowsProcessed: 100n,
    rowsTotal: 1000n,
    startedAt: START,
    endedAt: null,
    busyMs: 0,
    ...overrides,
  };
}

describe("computeProgress", () => {
  it("pins the seed PR's numbers: 10 s elapsed, 100 of 1000 → rate 10/s, ETA 90 s", () => {
    const p = computeProgress(input({}), START_MS + 10_000);
    expect(p.elapsedSeconds).toBeCloseTo(10, 9);
    expect(p.rate).toBeCloseTo(10, 9);
    expect(p.etaSeconds).toBeCloseTo(90, 9);
    expect(p.percent).toBeCloseTo(10, 9);
  });

  it("counts a paused run's elapsed time up to now (the pause included), with its rate but no ETA", () => {
    const p = computeProgress(
      input({ status: "paused", rowsProcessed: 400n, lastUpdateAt: "2026-06-14T12:00:20.000Z" }),
      START_MS + 40_000,
    );
    expect(p.elapsedSeconds).toBeCloseTo(40, 9);
    expect(p.rate).toBeCloseTo(10, 9);
    expect(p.etaSeconds).toBeNull();
  });

  it("measures a failed row without ended_at (as CoreScope writes it) up to its last update", () => {
    const p = computeProgress(
      input({ status: "failed", endedAt: null, lastUpdateAt: "2026-06-14T12:00:05.000Z" }),
      START_MS + 3_600_000,
    );
    expect(p.elapsedSeconds).toBeCloseTo(5, 9);
  });

  it.each(["done", "failed", "cancelled"])("measures a %s run up to ended_at, with no ETA", (status) => {
    const p = computeProgress(
      input({ status, rowsProcessed: 400n, endedAt: "2026-06-14T12:00:20.000Z" }),
      START_MS + 3_600_000, // an hour later: must not count
    );
    expect(p.elapsedSeconds).toBeCloseTo(20, 9);
    expect(p.rate).toBeCloseTo(20, 9);
    expect(p.etaSeconds).toBeNull();
  });

  it("reports done as 100 % and a running run with nothing processed as no rate and no ETA", () => {
    expect(
      computeProgress(input({ status: "done", rowsProcessed: 0n, rowsTotal: 0n }), START_MS).percent,
    ).toBe(100);
    const idle = computeProgress(input({ rowsProcessed: 0n }), START_MS + 5_000);
    expect(idle.rate).toBe(0);
    expect(idle.etaSeconds).toBeNull();
  });

  it("computes the busy rate from time spent in steps", () => {
    expect(computeProgress(input({ busyMs: 2_000 }), START_MS + 10_000).busyRate).toBeCloseTo(50, 9);
  });

  it("keeps counts beyond 2^53 finite", () => {
    const p = computeProgress(input({ rowsProcessed: 2n ** 60n, rowsTotal: 2n ** 61n }), START_MS + 1_000);
    expect(Number.isFinite(p.rate)).toBe(true);
    expect(p.percent).toBeCloseTo(50, 9);
  });
});

describe("the verification walk in the ETA", () => {
  // 10 s elapsed, 100 of 1000 rows: 90 s of data walk left at 10 rows/s. Counting took 12 s.
  const walk = { countingMs: 12_000, minKey: 1n, scanEnd: 1000n } as const;

  it("adds 3/4 of counting's duration to the point, half of it to the fast end, 1.5 times it to the slow end", () => {
    const plain = computeProgress(input({}), START_MS + 10_000);
    const p = computeProgress(input({ ...walk, phase: null }), START_MS + 10_000);
    expect(p.etaSeconds).toBeCloseTo(90 + 9, 9);
    // Uneven slices (4, 20, 4 and 12 rows/s), so that the band is the rates' p10–p90, wider than the point's ±25 %.
    const window: Array<[number, number]> = [
      [START_MS, 0],
      [START_MS + 2_500, 10],
      [START_MS + 5_000, 60],
      [START_MS + 7_500, 70],
    ];
    const banded = { ...walk, phase: null, rateWindow: window, rowsProcessed: 100n };
    const withBand = computeProgress(input(banded), START_MS + 10_000);
    const without = computeProgress(input({ rateWindow: window }), START_MS + 10_000);
    expect(without.etaLowSeconds).toBeCloseTo(900 / 20, 9);
    expect(without.etaHighSeconds).toBeCloseTo(900 / 4, 9);
    expect(withBand.etaLowSeconds).toBeCloseTo(without.etaLowSeconds! + 6, 9);
    expect(withBand.etaHighSeconds).toBeCloseTo(without.etaHighSeconds! + 18, 9);
    expect(withBand.etaLowSeconds!).toBeLessThanOrEqual(withBand.etaSeconds!);
    expect(plain.etaSeconds).toBeCloseTo(90, 9);
  });

  it("counts down the keys verification has left instead of showing 0 once every row is covered", () => {
    const covered = { rowsProcessed: 1000n, phase: "verifying" as const };
    const atStart = computeProgress(input({ ...walk, ...covered, scanCursor: null }), START_MS + 10_000);
    const halfway = computeProgress(input({ ...walk, ...covered, scanCursor: 500n }), START_MS + 10_000);
    const atEnd = computeProgress(input({ ...walk, ...covered, scanCursor: 1000n }), START_MS + 10_000);
    expect(atStart.etaSeconds).toBeCloseTo(9, 9);
    expect(halfway.etaSeconds).toBeCloseTo(4.5, 9);
    expect(atEnd.etaSeconds).toBe(0);
    expect(computeProgress(input({ ...covered, scanCursor: 500n }), START_MS + 10_000).etaSeconds).toBe(0);
  });

  it("adds nothing while counting, before counting has ended, or once the run is not running", () => {
    const counting = input({ ...walk, phase: "counting", rowsProcessed: 0n, rowsTotal: 0n });
    expect(computeProgress(counting, START_MS + 10_000).etaSeconds).toBeNull();
    const unknown = input({ ...walk, countingMs: null, phase: null });
    expect(computeProgress(unknown, START_MS + 10_000).etaSeconds).toBeCloseTo(90, 9);
    const paused = input({ ...walk, phase: null, status: "paused" });
    expect(computeProgress(paused, START_MS + 10_000).etaSeconds).toBeNull();
  });
});

describe("parseTime", () => {
  const savedTz = process.env.TZ;
  afterEach(() => {
    if (savedTz === undefined) delete process.env.TZ;
    else process.env.TZ = savedTz;
  });

  it.each(["America/New_York", "Asia/Kolkata", "UTC"])(
    "reads CoreScope's `YYYY-MM-DD HH:MM:SS` as UTC in time zone %s",
    (tz) => {
      process.env.TZ = tz; // Node applies a changed TZ at once; local-time parsing would be off by hours
      expect(parseTime("2026-06-14 12:00:00")).toBe(START_MS);
      expect(parseTime("2026-06-14 12:00:00.250")).toBe(START_MS + 250);
      expect(parseTime(START)).toBe(START_MS);
      expect(parseTime("2026-06-14T12:00:00Z")).toBe(START_MS);
    },
  );

  it("legacy rows give the same figures as ISO rows", () => {
    process.env.TZ = "America/Los_Angeles";
    const legacy = computeProgress(input({ startedAt: "2026-06-14 12:00:00" }), START_MS + 10_000);
    expect(legacy.rate).toBeCloseTo(10, 9);
    expect(legacy.etaSeconds).toBeCloseTo(90, 9);
  });

  it("returns null for missing or unreadable times", () => {
    expect(parseTime(null)).toBeNull();
    expect(parseTime(undefined)).toBeNull();
    expect(parseTime("")).toBeNull();
    expect(parseTime("yesterday-ish")).toBeNull();
  });
});
