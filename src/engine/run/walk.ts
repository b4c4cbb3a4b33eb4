/**
 * The read-only walks of a run (invariant 10): `counting` the candidates before the data walk (which also proves
 * every key an integer, invariant 11) and `verifying` after it (rows still needing work). Each walks the key in
 * budgeted pieces; each piece is read and recorded in one small fenced batch, so the walk's cursor survives a
 * lease change and a restart, and no statement scales with the table.
 */
import { BatchSizer } from "../batch-sizer.ts";
import type { MigrationPlan } from "../plan.ts";
import type { Lease, MigrationRow, ScanPhase } from "../state/row.ts";
import type { Tuning } from "../tuning.ts";
import { fail, type MigrationOutcome, type RunContext } from "./context.ts";
import { writeBatch } from "./write-batch.ts";

/** Keys in the first piece of a read-only walk, and the most one piece may cover (time bounds it first). */
const SCAN_INITIAL_PIECE = 1_000;
const SCAN_MAX_PIECE = 1_000_000;

/**
 * Sizes the pieces of the walks. They only read the table, many times faster per key than a data step, so they
 * start larger and may grow further; time still bounds each piece.
 */
export function walkSizer(t: Tuning): BatchSizer {
  const scanTuning = {
    ...t,
    initialBatch: Math.max(t.initialBatch, SCAN_INITIAL_PIECE),
    maxBatch: Math.max(t.maxBatch, SCAN_MAX_PIECE),
  };
  return new BatchSizer(scanTuning, { size: scanTuning.initialBatch });
}

/**
 * One piece of a walk: the next keys are counted and the walk's cursor and count move in ONE fenced write batch
 * (`MigrationPlan.scanBatch`), sized like a step, so a piece is counted exactly once. On a local file the keys are
 * counted by a read just before the batch, so the write lock covers the record alone (a step reads its range end
 * first for the same reason); remote databases and D1 count inside the batch, where a separate read would cost a
 * round trip. A key that is not an integer stops the run before the data walk changes anything (invariant 11).
 * The piece that completes the count hands over to the data walk. Returns the row as it now stands with the time
 * the write lock was waited for and held, or how this slice ends.
 */
export async function walkPiece(
  ctx: RunContext,
  plan: MigrationPlan,
  lease: Lease,
  row: MigrationRow,
  phase: ScanPhase,
  sizer: BatchSizer,
  deadline: number,
): Promise<{ row: MigrationRow; contendedMs: number } | MigrationOutcome> {
  const name = plan.migration.name;
  const size = sizer.sizeWithin(deadline - ctx.clock.now());
  if (size === 0) return "budget";
  const began = ctx.clock.now();
  const counted =
    ctx.client.protocol === "file" ? await plan.readScanPiece(ctx.client, phase, row, size) : undefined;
  const batch = plan.scanBatch(lease, phase, row, size, counted);
  const { results, waitedMs, heldMs } = await writeBatch(ctx.client, ctx.clock, batch.statements);
  // The piece's time but its wait for the lock sizes the next one (the deadline bounds it); the wait and the hold
  // size the writers' yield (./write-batch.ts).
  sizer.observe(size, ctx.clock.now() - began - waitedMs);
  const contendedMs = waitedMs + heldMs;
  const piece = batch.decode(results);
  if (piece.kind === "bad-key") return fail(ctx, lease, plan.badKeyMessage(piece.badKey), { row });
  const next: MigrationRow = {
    ...row,
    scanCursor: piece.scanCursor,
    scanCount: piece.scanCount,
    minKey: piece.minKey,
    maxKey: piece.maxKey,
  };
  ctx.emit({ type: "scan", name, phase, scanCursor: piece.scanCursor, scanCount: next.scanCount });
  if (phase === "counting" && piece.scanCursor === row.scanEnd) {
    // The ETA window starts over with the data walk: counting's time does not recur (progress/rate.ts).
    const rateWindow: Array<readonly [number, number]> = [[ctx.wallClock(), 0]];
    await ctx.store.finishCounting(lease, JSON.stringify(rateWindow));
    ctx.emit({
      type: "counted",
      name,
      rowsTotal: next.scanCount,
      minKey: next.minKey,
      maxKey: next.maxKey,
    });
    return {
      row: { ...next, phase: null, rowsTotal: next.scanCount, cursor: null, rateWindow },
      contendedMs,
    };
  }
  return { row: next, contendedMs };
}

/** The data walk covered its range: verification walks it again, read-only, from the start. */
export async function startVerifying(
  ctx: RunContext,
  lease: Lease,
  row: MigrationRow,
): Promise<MigrationRow> {
  await ctx.store.startVerifying(lease);
  return { ...row, phase: "verifying", scanCursor: null, scanCount: 0n, scanEnd: row.maxKey };
}
