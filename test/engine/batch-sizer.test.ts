/**
 * Invariant 5 (time budget): batch sizes adapt to the measured rate with bounded growth and fast shrink, and a
 * slice never starts a step it expects to overrun. All time here is injected; nothing reads the wall clock.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { BatchSizer, FIRST_STEP_DOUBLINGS } from "../../src/engine/batch-sizer.ts";
import { Runner } from "../../src/engine/runner.ts";
import { resolveTuning, type Tuning } from "../../src/engine/tuning.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import {
  counterMigration,
  countersById,
  createCounterTable,
  EventLog,
  FakeClock,
  recordingClient,
  stepSizeOf,
} from "../helpers/engine.ts";

function tuning(overrides: Partial<Tuning> = {}): Tuning {
  return resolveTuning({ stepTargetMs: 50, initialBatch: 100, minBatch: 1, maxBatch: 100_000, ...overrides });
}

describe("BatchSizer", () => {
  it("starts at initialBatch, clamped to the bounds", () => {
    expect(new BatchSizer(tuning({ initialBatch: 37 })).size).toBe(37);
    expect(new BatchSizer(tuning({ initialBatch: 10, minBatch: 20, maxBatch: 30 })).size).toBe(20);
    expect(new BatchSizer(tuning({ initialBatch: 50, minBatch: 1, maxBatch: 30 })).size).toBe(30);
    expect(new BatchSizer(tuning(), { size: 500 }).size).toBe(500); // a resumed run keeps its size
  });

  it("jumps toward rate x target after the first measured step (at most 32x), then grows at most 2x per step", () => {
    const sizer = new BatchSizer(tuning({ initialBatch: 10 }));
    const sizes = [sizer.size];
    for (let i = 0; i < 10; i++) {
      sizer.observe(sizer.size, 0.01);
      sizes.push(sizer.size);
    }
    expect(sizes[1]).toBe(10 * 2 ** FIRST_STEP_DOUBLINGS);
    for (let i = 2; i < sizes.length; i++) expect(sizes[i]!).toBeLessThanOrEqual(2 * sizes[i - 1]!);
    expect(sizes.slice(0, 5)).toEqual([10, 320, 640, 1280, 2560]);
    expect(sizes.at(-1)).toBe(100_000); // maxBatch
    // A first step that shows the rate: straight to rate x target (20 keys per ms x 50 ms), no doublings.
    const measured = new BatchSizer(tuning({ initialBatch: 100 }));
    measured.observe(100, 5);
    expect(measured.size).toBe(1000);
    // A first step that overran still halves.
    const slow = new BatchSizer(tuning({ initialBatch: 100 }));
    slow.observe(100, 80);
    expect(slow.size).toBe(50);
  });

  it("converges to rate x target", () => {
    const keysPerMs = 20; // so 50 ms of work is 1000 keys
    const sizer = new BatchSizer(tuning({ initialBatch: 10 }));
    for (let i = 0; i < 30; i++) sizer.observe(sizer.size, sizer.size / keysPerMs);
    expect(sizer.size).toBe(1000);
    expect(sizer.rate).toBeCloseTo(keysPerMs, 9);
    expect(sizer.expectedMs()).toBeCloseTo(50, 6);
  });

  it("follows a slowdown down to the new rate x target", () => {
    const sizer = new BatchSizer(tuning({ initialBatch: 1000 }), { size: 1000, rate: 20 });
    for (let i = 0; i < 40; i++) sizer.observe(sizer.size, sizer.size / 4); // now 4 keys per ms
    expect(sizer.size).toBe(200);
  });

  it("halves at once on an overrun above 1.5x the target, not below", () => {
    const justUnder = new BatchSizer(tuning({ initialBatch: 1000 }), { size: 1000, rate: 20 });
    justUnder.observe(1000, 74); // 1.48x the target: no overrun, the smoothed rate decides
    expect(justUnder.size).toBeGreaterThan(500);

    const over = new BatchSizer(tuning({ initialBatch: 1000 }), { size: 1000, rate: 20 });
    over.observe(1000, 76); // 1.52x: overrun, halve even though the smoothed rate still says ~900
    expect(over.size).toBe(500);

    const wayOver = new BatchSizer(tuning({ initialBatch: 1000 }), { size: 1000, rate: 20 });
    wayOver.observe(1000, 5000); // a 100x overrun: the rate-based size is far below half
    expect(wayOver.size).toBeLessThanOrEqual(500);
  });

  it("halves on shrink() (SQLITE_BUSY), clamped to minBatch", () => {
    const sizer = new BatchSizer(tuning({ initialBatch: 64, minBatch: 5 }));
    sizer.shrink();
    expect(sizer.size).toBe(32);
    for (let i = 0; i < 10; i++) sizer.shrink();
    expect(sizer.size).toBe(5);
  });

  it("never leaves [minBatch, maxBatch]", () => {
    const sizer = new BatchSizer(tuning({ initialBatch: 100, minBatch: 7, maxBatch: 300 }));
    for (let i = 0; i < 10; i++) sizer.observe(sizer.size, 0.001);
    expect(sizer.size).toBe(300);
    for (let i = 0; i < 10; i++) sizer.observe(sizer.size, 1e6);
    expect(sizer.size).toBe(7);
  });

  it("sizeWithin never proposes a step expected to overrun, and 0 when not even minBatch fits", () => {
    const sizer = new BatchSizer(tuning({ initialBatch: 1000, minBatch: 10 }), { size: 1000, rate: 2 });
    expect(sizer.sizeWithin(10_000)).toBe(1000); // never above the current size
    expect(sizer.sizeWithin(100)).toBe(200); // 2 keys per ms x 100 ms
    expect(sizer.expectedMs(sizer.sizeWithin(100))).toBeLessThanOrEqual(100);
    expect(sizer.sizeWithin(5)).toBe(10); // exactly minBatch fits
    expect(sizer.sizeWithin(4.9)).toBe(0); // minBatch would take 5 ms
    expect(sizer.sizeWithin(0)).toBe(0);
    expect(sizer.sizeWithin(-3)).toBe(0);
    // Before anything was measured there is no expectation: the (small) initial size is used.
    expect(new BatchSizer(tuning({ initialBatch: 20 })).sizeWithin(1)).toBe(20);
  });

  it("keeps every invariant for random measurement sequences", () => {
    const knobs = fc.record({
      initialBatch: fc.integer({ min: 1, max: 1000 }),
      minBatch: fc.integer({ min: 1, max: 50 }),
      maxBatch: fc.integer({ min: 50, max: 100_000 }),
      stepTargetMs: fc.integer({ min: 1, max: 500 }),
    });
    const durations = fc.array(fc.double({ min: 0, max: 10_000, noNaN: true }), {
      minLength: 1,
      maxLength: 40,
    });
    fc.assert(
      fc.property(knobs, durations, fc.double({ min: 0, max: 5000, noNaN: true }), (k, ms, remaining) => {
        const t = tuning(k);
        const sizer = new BatchSizer(t);
        expect(sizer.size).toBe(Math.max(t.minBatch, Math.min(t.maxBatch, t.initialBatch)));
        for (const [i, d] of ms.entries()) {
          const before = sizer.size;
          sizer.observe(before, d);
          expect(sizer.size).toBeGreaterThanOrEqual(t.minBatch);
          expect(sizer.size).toBeLessThanOrEqual(t.maxBatch);
          const growth = i === 0 ? 2 ** FIRST_STEP_DOUBLINGS : 2;
          expect(sizer.size).toBeLessThanOrEqual(Math.max(t.minBatch, growth * before));
          if (d > 1.5 * t.stepTargetMs)
            expect(sizer.size).toBeLessThanOrEqual(Math.max(t.minBatch, before / 2));
        }
        const within = sizer.sizeWithin(remaining);
        if (within > 0) {
          expect(within).toBeGreaterThanOrEqual(t.minBatch);
          expect(within).toBeLessThanOrEqual(sizer.size);
          expect(sizer.expectedMs(within)!).toBeLessThanOrEqual(remaining + 1e-9);
        } else {
          expect(sizer.expectedMs(t.minBatch)!).toBeGreaterThan(remaining - 1e-9);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("Runner with a fake clock", () => {
  let db: TempDb;
  afterEach(() => db?.cleanup());

  it("starts each run at initialBatch and never starts a step that would overrun the slice", async () => {
    db = tempDb();
    const real = db.open();
    const keys = Array.from({ length: 600 }, (_, i) => BigInt(i + 1));
    await createCounterTable(real, keys);
    const MS_PER_KEY = 0.5; // the real batch runs; the fake clock charges 0.5 ms per key the step covers
    const BUDGET = 120;
    const clock = new FakeClock();
    const stepEnds: number[] = [];
    const recording = recordingClient(real, {
      beforeBatch: (statements) => {
        const size = stepSizeOf(statements);
        if (size !== undefined) clock.advance(size * MS_PER_KEY);
      },
      afterBatch: (statements) => {
        if (stepSizeOf(statements) !== undefined) stepEnds.push(clock.now());
      },
    });
    const log = new EventLog();
    const runner = new Runner({
      client: recording.client,
      migrations: [counterMigration()],
      tuning: { initialBatch: 20, maxBatch: 10_000, stepTargetMs: 50, yieldMs: 10, sliceBudgetMs: BUDGET },
      clock,
      onEvent: log.listener,
    });

    const slices: { start: number; stepEnds: number[] }[] = [];
    for (let i = 0; i < 50; i++) {
      const start = clock.now();
      const before = stepEnds.length;
      const result = await runner.runSlice(BUDGET);
      slices.push({ start, stepEnds: stepEnds.slice(before) });
      if (!result.moreWork) break;
    }

    const steps = log.of("step");
    expect(steps[0]?.batchSize).toBe(20);
    expect(slices.length).toBeGreaterThan(1);
    for (const slice of slices) {
      for (const end of slice.stepEnds) expect(end).toBeLessThanOrEqual(slice.start + BUDGET);
    }
    // The budget was actually binding: at least one step was cut below the size the sizer wanted.
    expect(steps.some((s, i) => i > 0 && s.batchSize < steps[i - 1]!.nextBatchSize)).toBe(true);
    const counters = await countersById(real);
    expect([...counters.values()].every((n) => n === 1n)).toBe(true);
    expect((await runner.store.get("counter_v1"))?.status).toBe("done");
  });
});
