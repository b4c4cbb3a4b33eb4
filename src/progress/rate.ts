/**
 * Rate and ETA from a migration's row.
 *
 * The effective rate is rows over wall time since the run started — gaps between ticks, back-offs and other
 * migrations' turns included — because that is what predicts when the run will actually end. The busy rate
 * (rows over time spent inside steps) says how fast a step is, for tuning. Both are rows per second.
 */

export interface ProgressInput {
  readonly status: string;
  readonly rowsProcessed: bigint;
  readonly rowsTotal: bigint;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  readonly busyMs: number;
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
}

/** Parses trickle's ISO-8601 times and the `YYYY-MM-DD HH:MM:SS` (UTC) text older CoreScope rows carry. */
export function parseTime(value: string | null | undefined): number | null {
  if (!value) return null;
  const iso = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$/.test(value)
    ? `${value.replace(" ", "T")}Z`
    : value;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : null;
}

export function computeProgress(row: ProgressInput, nowMs: number): ProgressFigures {
  const started = parseTime(row.startedAt);
  const ended = row.status === "running" ? null : parseTime(row.endedAt);
  const end = ended ?? (row.status === "running" ? nowMs : null);
  const elapsedSeconds = started !== null && end !== null ? Math.max(0, (end - started) / 1000) : 0;
  const processed = Number(row.rowsProcessed);
  const total = Number(row.rowsTotal);
  const rate = elapsedSeconds > 0 && processed > 0 ? processed / elapsedSeconds : 0;
  const busyRate = row.busyMs > 0 && processed > 0 ? processed / (row.busyMs / 1000) : 0;
  const remaining = Math.max(0, total - processed);
  const etaSeconds = row.status === "running" && rate > 0 ? (remaining > 0 ? remaining / rate : 0) : null;
  const percent = row.status === "done" ? 100 : total > 0 ? Math.min(100, (processed / total) * 100) : 0;
  return { rate, busyRate, etaSeconds, elapsedSeconds, percent };
}
