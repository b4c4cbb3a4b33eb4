/**
 * Progress output for the CLI: number formats, a bar, and a renderer that redraws lines in place on a terminal
 * or prints at most one plain block per interval elsewhere (logs, CI, pipes).
 */

/** `1234567` → `1,234,567`. */
export function formatCount(n: number | bigint): string {
  const text = typeof n === "bigint" ? n.toString() : String(Math.round(n));
  const negative = text.startsWith("-");
  const digits = negative ? text.slice(1) : text;
  return (negative ? "-" : "") + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Rows per second with k/M suffixes: `850/s`, `12.3k/s`, `1.25M/s`. */
export function formatRate(rowsPerSecond: number): string {
  if (!Number.isFinite(rowsPerSecond) || rowsPerSecond <= 0) return "–/s";
  if (rowsPerSecond >= 1e6) return `${(rowsPerSecond / 1e6).toFixed(rowsPerSecond >= 1e7 ? 1 : 2)}M/s`;
  if (rowsPerSecond >= 1e3) return `${(rowsPerSecond / 1e3).toFixed(rowsPerSecond >= 1e4 ? 0 : 1)}k/s`;
  return `${rowsPerSecond >= 10 ? Math.round(rowsPerSecond) : rowsPerSecond.toFixed(1)}/s`;
}

/** Seconds as `1h02m`, `3m05s` or `12s`; `–` when unknown. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "–";
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

/** `[#######-------]` for a fraction in 0..1. */
export function renderBar(fraction: number, width = 24): string {
  const clamped = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const filled = Math.round(clamped * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

export interface ProgressFigures {
  readonly label: string;
  readonly done: number | bigint;
  readonly total: number | bigint;
  readonly rate: number;
  readonly etaSeconds: number | null;
  readonly note?: string;
}

/** One line: `label [####----] 1,234 / 5,678 rows  21.7%  12.3k/s  ETA 3m05s`. */
export function progressLine(figures: ProgressFigures, options: { bar?: boolean } = {}): string {
  const done = Number(figures.done);
  const total = Number(figures.total);
  const fraction = total > 0 ? done / total : 0;
  const parts = [
    figures.label,
    ...(options.bar === false ? [] : [renderBar(fraction)]),
    `${formatCount(figures.done)} / ${formatCount(figures.total)} rows`,
    `${(Math.min(1, fraction) * 100).toFixed(1)}%`,
    formatRate(figures.rate),
    `ETA ${formatDuration(figures.etaSeconds)}`,
  ];
  if (figures.note) parts.push(figures.note);
  return parts.join("  ");
}

/** The part of a stream the renderer needs (`process.stderr` fits). */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/**
 * Shows a block of lines that changes over time. On a TTY the block is redrawn in place (at most every
 * `ttyIntervalMs`); otherwise a new block is printed at most once per `plainIntervalMs`, so logs stay readable.
 */
export class ProgressRenderer {
  readonly #stream: ProgressStream;
  readonly #tty: boolean;
  readonly #interval: number;
  readonly #now: () => number;
  #drawnLines = 0;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #pending: readonly string[] | undefined;

  constructor(
    stream: ProgressStream,
    options: { tty?: boolean; ttyIntervalMs?: number; plainIntervalMs?: number; now?: () => number } = {},
  ) {
    this.#stream = stream;
    this.#tty = options.tty ?? stream.isTTY === true;
    this.#interval = this.#tty ? (options.ttyIntervalMs ?? 100) : (options.plainIntervalMs ?? 1000);
    this.#now = options.now ?? (() => performance.now());
  }

  get tty(): boolean {
    return this.#tty;
  }

  /** Offers new lines; they are drawn now or, if the last draw was too recent, kept for the next one. */
  update(lines: readonly string[]): void {
    this.#pending = lines;
    if (this.#now() - this.#lastDraw >= this.#interval) this.#draw();
  }

  /** Draws whatever is pending (the final state) and stops redrawing in place. */
  finish(): void {
    if (this.#pending) this.#draw();
    this.#drawnLines = 0;
  }

  #draw(): void {
    const lines = this.#pending ?? [];
    this.#pending = undefined;
    this.#lastDraw = this.#now();
    if (!this.#tty) {
      for (const line of lines) this.#stream.write(`${line}\n`);
      return;
    }
    const width = this.#stream.columns ?? 120;
    let out = this.#drawnLines > 0 ? `\x1b[${this.#drawnLines}A` : "";
    for (const line of lines)
      out += `\r\x1b[2K${line.length > width - 1 ? line.slice(0, width - 1) : line}\n`;
    // Lines left over from a taller previous block are cleared.
    for (let i = lines.length; i < this.#drawnLines; i++) out += "\r\x1b[2K\n";
    const extra = Math.max(0, this.#drawnLines - lines.length);
    if (extra > 0) out += `\x1b[${extra}A`;
    this.#drawnLines = lines.length;
    this.#stream.write(out);
  }
}
