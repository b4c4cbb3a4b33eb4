/**
 * Rate and ETA from a migration's row.
 *
 * The effective rate is rows over wall time since the run started — gaps between ticks, throttles, holds,
 * back-offs and other migrations' turns included — because that is what predicts when the run will actually end.
 * The busy rate (rows over time spent inside steps) says how fast a step is, for tuning. Both are rows per second.
 *
 * The ETA comes from the row's `rate_window`: (wall time, rows covered) points the runner adds at the end of each
 * of its slices; the window starts over when counting ends. Its leading points before the first row was covered
 * (start-up, counting) are left out: that time does not recur, and counting it made the ETA at 10 % progress
 * twice the time really left in the benchmark. The point ETA is the remaining rows at the window's effective rate
 * (rows over wall time from the first covered row's interval to now, gaps included); without a window, at
 * `rate`. Each interval between two points (and the open one up to now) is an effective rate sample, gaps
 * included; the band is the remaining rows over the time-weighted 90th and 10th percentile of those rates
 * (p10–p90 of the ETA), widened to at least the point ETA's own accuracy (`POINT_ACCURACY`). With fewer than
 * three intervals the band is that accuracy alone. `stuck`: running, not throttled, and
 * the cursor has not moved for `stuckAfterMs`.
 *
 * After the data walk the run walks the keys once more, read-only, to verify them (engine/run/walk.ts). That walk
 * reads the keys counting read, in pieces like counting's, so the point ETA adds three quarters of counting's
 * duration while the data walk runs, and while verification runs the share of that still ahead (by keys left);
 * the band adds half of it to one and a half times it. Measured on the CoreScope backfill at 1M / 15M rows,
 * verification took 0.6–1.8 times counting's time in six runs (most rows now fail the filter's first test,
 * which makes each key cheaper; the machine's noise does the rest), about half at 71,000 rows; of half, three
 * quarters and all of it, three quarters put the most samples within ±25 % of the time left. Without this the
 * ETA read 0 for the last seconds of every run.
 *
 * Rows: `rowsTotal` is the candidates counted when the run started plus the rows each re-sweep found;
 * `rowsProcessed` the candidate rows committed steps changed; `quarantined` the poison rows skipped (not
 * processed). Progress and ETA count both processed and quarantined rows as covered, so a finished run on a quiet
 * database has `rowsProcessed + quarantined = rowsTotal`.
 */

export interface ProgressInput {
  readonly status: string;
  readonly rowsProcessed: bigint;
  readonly rowsTotal: bigint;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  readonly busyMs: number;
  readonly quarantined?: bigint;
  readonly lastUpdateAt?: string | null;
  /** When the cursor last moved. */
  readonly progressAt?: string | null;
  readonly throttledUntil?: string | null;
  readonly rateWindow?: ReadonlyArray<readonly [number, number]> | null;
  // The read-only walks (the ETA's verification estimate); rows without them get an ETA of the data walk alone.
  readonly phase?: "counting" | "verifying" | null;
  /** Wall ms counting took; null until counting has ended. */
  readonly countingMs?: number | null;
  /** Verification covers `(scanCursor, scanEnd]` of the candidates' range `[minKey, scanEnd]`. */
  readonly scanCursor?: bigint | null;
  readonly scanEnd?: bigint | null;
  readonly minKey?: bigint | null;
}

export interface ProgressFigures {
  /** Effective rows per second over wall time. */
  readonly rate: number;
  /** Rows per second of time spent in steps. */
  readonly busyRate: number;
  /** Seconds until done at the effective rate; null when unknown or not running. */
  readonly etaSeconds: number | null;
  readonly elapsedSeconds: number;
  /** 0..100 */
  readonly percent: number;
  /** p10–p90 of the ETA from the spread of recent effective rates; null when not enough is known. */
  readonly etaLowSeconds: number | null;
  /** Null also when the slow end is unbounded (an interval without progress in the window). */
  readonly etaHighSeconds: number | null;
  /** Running, not throttled, and the cursor has not moved for the stuck threshold. */
  readonly stuck: boolean;
  /** Held back by a throttle decision right now. */
  readonly throttled: boolean;
}

export const DEFAULT_STUCK_AFTER_MS = 600_000;
const TERMINAL: ReadonlySet<string> = new Set(["done", "failed", "cancelled"]);
/** The open interval from the last point up to now counts once it is this long. */
const OPEN_INTERVAL_MIN_MS = 1_000;
const MIN_INTERVALS = 3;

/** Parses trickle's ISO-8601 times and the `YYYY-MM-DD HH:MM:SS` (UTC) text older CoreScope rows carry. */
export function parseTime(value: string | null | undefined): number | null {
  if (!value) return null;
  const iso = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$/.test(value)
    ? `${value.replace(" ", "T")}Z`
    : value;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : null;
}

export function computeProgress(
  row: ProgressInput,
  nowMs: number,
  options: { readonly stuckAfterMs?: number } = {},
): ProgressFigures {
  const started = parseTime(row.startedAt);
  // A run that has not ended (running, paused, or pending again after a retry) counts up to now, pauses and
  // holds included, like the rate; an ended one up to its end (or its last update, for rows without one).
  const ended = TERMINAL.has(row.status);
  const end = ended ? (parseTime(row.endedAt) ?? parseTime(row.lastUpdateAt)) : nowMs;
  const elapsedSeconds = started !== null && end !== null ? Math.max(0, (end - started) / 1000) : 0;
  const processed = Number(row.rowsProcessed);
  const covered = processed + Number(row.quarantined ?? 0n);
  const total = Number(row.rowsTotal);
  const rate = elapsedSeconds > 0 && covered > 0 ? covered / elapsedSeconds : 0;
  const busyRate = row.busyMs > 0 && processed > 0 ? processed / (row.busyMs / 1000) : 0;
  const remaining = Math.max(0, total - covered);
  const running = row.status === "running";
  const window = running ? progressWindow(row.rateWindow ?? []) : [];
  const etaRate = windowRate(window, covered, nowMs) ?? rate;
  const walkLeft = running ? verificationSecondsLeft(row) : 0;
  const walkPoint = walkLeft * VERIFY_SHARE;
  const walkLow = walkLeft * VERIFY_SHARE_LOW;
  const walkHigh = walkLeft * VERIFY_SHARE_HIGH;
  const dataEta = running && etaRate > 0 ? (remaining > 0 ? remaining / etaRate : 0) : null;
  const verifying = running && row.phase === "verifying";
  const etaSeconds = dataEta !== null ? dataEta + walkPoint : verifying ? walkPoint : null;
  const percent = row.status === "done" ? 100 : total > 0 ? Math.min(100, (covered / total) * 100) : 0;
  const heldUntil = parseTime(row.throttledUntil);
  const throttled = running || row.status === "pending" ? heldUntil !== null && heldUntil > nowMs : false;
  const band = running ? etaBand(window, covered, nowMs, remaining, dataEta) : null;
  const movedAt = parseTime(row.progressAt ?? row.lastUpdateAt ?? row.startedAt);
  const stuckAfter = options.stuckAfterMs ?? DEFAULT_STUCK_AFTER_MS;
  const stuck = running && !throttled && movedAt !== null && nowMs - movedAt > stuckAfter;
  return {
    rate,
    busyRate,
    etaSeconds,
    elapsedSeconds,
    percent,
    ...etaBandSeconds(band, walkLow, walkHigh, etaSeconds),
    stuck,
    throttled,
  };
}

/**
 * The point ETA's accuracy: within ±25 % of the time really left (the benchmark's goal, and what it measures: 91 %
 * of the samples from 10 % on in two medium runs). The band spans at least the times for which that holds,
 * point / 1.25 to point / 0.75, however steady the recent slices were: their rates varied by a few per cent
 * while the run's real uncertainty (the verification walk's share, the last slices, the machine) did not, and a
 * band of recent rates alone contained the time left in only 36–82 % of the samples; with 2 s slices a medium run
 * had no band at all for its first third.
 */
const POINT_ACCURACY = 0.25;

/**
 * The band shown: the rates' band plus the verification walk's low and high share, widened to the point's
 * accuracy; before three intervals are known (the first slices of a run), the point's accuracy alone.
 */
function etaBandSeconds(
  band: { low: number; high: number | null } | null,
  walkLow: number,
  walkHigh: number,
  eta: number | null,
): { etaLowSeconds: number | null; etaHighSeconds: number | null } {
  const accurateLow = eta === null ? null : eta / (1 + POINT_ACCURACY);
  const accurateHigh = eta === null ? null : eta / (1 - POINT_ACCURACY);
  if (!band) return { etaLowSeconds: accurateLow, etaHighSeconds: accurateHigh };
  const low = band.low + walkLow;
  const high = band.high === null ? null : band.high + walkHigh;
  return {
    etaLowSeconds: accurateLow === null ? low : Math.min(low, accurateLow),
    etaHighSeconds: high === null || accurateHigh === null ? high : Math.max(high, accurateHigh),
  };
}

/** The verification walk's time as a share of counting's: the point ETA, the band's fast end, its slow end. */
const VERIFY_SHARE = 0.75;
const VERIFY_SHARE_LOW = 0.5;
const VERIFY_SHARE_HIGH = 1.5;

/**
 * Counting's duration in seconds, as the measure of the verification walk still ahead: all of it while the data
 * walk runs, its share of the keys left while verification runs; 0 while counting or when it is unknown.
 */
export function verificationSecondsLeft(row: ProgressInput): number {
  const { phase = null, countingMs = null, scanCursor = null, scanEnd = null, minKey = null } = row;
  if (countingMs === null || countingMs <= 0) return 0;
  const whole = countingMs / 1000;
  if (phase === null) return whole;
  if (phase === "counting" || scanEnd === null || minKey === null) return 0;
  if (scanCursor === null) return whole;
  const span = Number(scanEnd - minKey) + 1;
  const left = Number(scanEnd - scanCursor);
  return span > 0 ? whole * Math.min(1, Math.max(0, left / span)) : 0;
}

/**
 * The window from the last point before the first covered row on: the leading points at which nothing was covered
 * yet (counting, start-up) are dropped, all but the last of them (the interval in which covering began counts).
 */
export function progressWindow(
  points: ReadonlyArray<readonly [number, number]>,
): ReadonlyArray<readonly [number, number]> {
  const first = points[0];
  if (!first) return points;
  let start = 0;
  while (start + 1 < points.length && points[start + 1]![1] <= first[1]) start++;
  return points.slice(start);
}

/** Rows per second over the window's wall time up to now (gaps included); null until it spans a second. */
function windowRate(
  points: ReadonlyArray<readonly [number, number]>,
  covered: number,
  nowMs: number,
): number | null {
  const first = points[0];
  if (!first || nowMs - first[0] < OPEN_INTERVAL_MIN_MS || covered <= first[1]) return null;
  return (covered - first[1]) / ((nowMs - first[0]) / 1000);
}

/** Effective rates of the window's intervals (rows per second, weighted by their length in ms). */
export function windowRates(
  points: ReadonlyArray<readonly [number, number]>,
  covered: number,
  nowMs: number,
): Array<{ rate: number; weight: number }> {
  const all = [...points];
  const last = all.at(-1);
  if (last && nowMs - last[0] >= OPEN_INTERVAL_MIN_MS) all.push([nowMs, Math.max(covered, last[1])]);
  const rates: Array<{ rate: number; weight: number }> = [];
  for (let i = 1; i < all.length; i++) {
    const [t0, r0] = all[i - 1]!;
    const [t1, r1] = all[i]!;
    const dt = t1 - t0;
    if (dt <= 0) continue;
    rates.push({ rate: Math.max(0, r1 - r0) / (dt / 1000), weight: dt });
  }
  return rates;
}

/** The time-weighted `q` quantile (0..1) of `samples`. */
export function weightedQuantile(
  samples: ReadonlyArray<{ rate: number; weight: number }>,
  q: number,
): number {
  const sorted = [...samples].sort((a, b) => a.rate - b.rate);
  const total = sorted.reduce((sum, s) => sum + s.weight, 0);
  let seen = 0;
  for (const s of sorted) {
    seen += s.weight;
    if (seen >= q * total) return s.rate;
  }
  return sorted.at(-1)?.rate ?? 0;
}

function etaBand(
  points: ReadonlyArray<readonly [number, number]>,
  covered: number,
  nowMs: number,
  remaining: number,
  eta: number | null,
): { low: number; high: number | null } | null {
  const rates = windowRates(points, covered, nowMs);
  if (rates.length < MIN_INTERVALS) return null;
  if (remaining <= 0) return { low: 0, high: 0 };
  const fast = weightedQuantile(rates, 0.9);
  const slow = weightedQuantile(rates, 0.1);
  if (fast <= 0) return null;
  let low = remaining / fast;
  let high = slow > 0 ? remaining / slow : null;
  // The band always contains the point estimate.
  if (eta !== null) {
    low = Math.min(low, eta);
    high = high === null ? null : Math.max(high, eta);
  }
  return { low, high };
}
