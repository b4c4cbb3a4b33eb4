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
