/**
 * The benchmark chart as a self-contained SVG: one panel per phase (idle, oneShot, fixedBatch, trickle) on a
 * shared time axis relative to each backfill's start, latency on a log scale. Each sample is a dot (dots that
 * land on the same pixel are drawn once, which keeps the file small); the backfill window is shaded.
 */
import type { HttpSample, IngestSample, StepSample, Window } from "./stats.ts";

export interface ChartPhase {
  readonly name: string;
  /** One line under the panel title (total time, p99s…). */
  readonly caption: string;
  readonly window: Window;
  /** False for the idle baseline: its window is a measurement window, not a backfill. */
  readonly backfill: boolean;
  readonly http: readonly HttpSample[];
  readonly ingest: readonly IngestSample[];
  readonly steps: readonly StepSample[];
}

export type ChartSeries = "http" | "ingest" | "steps" | "busy";

export interface ChartInput {
  readonly title: string;
  readonly subtitle: string;
  readonly phases: readonly ChartPhase[];
  /** The series the legend lists (default all); a benchmark that records only some leaves the others out. */
  readonly legend?: readonly ChartSeries[];
  /** The dashed line across every panel (the step target, or a goal) and its label. */
  readonly guide: { readonly ms: number; readonly label: string };
}

const WIDTH = 1100;
const PANEL_HEIGHT = 190;
const PANEL_GAP = 46;
const TOP = 104;
const LEFT = 78;
const RIGHT = 24;
const PLOT_WIDTH = WIDTH - LEFT - RIGHT;
const COLORS = { http: "#1f6fd1", ingest: "#e8730c", steps: "#333333", busy: "#d62728", window: "#2ca02c" };

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function formatMs(ms: number): string {
  if (ms >= 1000) return `${ms / 1000} s`;
  return `${ms} ms`;
}

/** "Nice" step for a linear axis with about `count` ticks. */
function niceStep(span: number, count: number): number {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

export function renderChart(input: ChartInput): string {
  const { phases } = input;
  // Shared x domain: seconds relative to each phase's window start.
  let xMin = 0;
  let xMax = 1;
  let yMaxMs = 100;
  // The backfills set the time axis; the idle baseline (often longer) is shown clipped to it.
  const scaling = phases.some((p) => p.backfill) ? phases.filter((p) => p.backfill) : phases;
  for (const p of scaling) {
    const rel = (at: number) => (at - p.window.start) / 1000;
    xMax = Math.max(xMax, rel(p.window.end));
    for (const s of [...p.http, ...p.ingest]) {
      xMin = Math.min(xMin, rel(s.at));
      xMax = Math.max(xMax, rel(s.at));
    }
  }
  for (const p of phases) {
    for (const s of [...p.http, ...p.ingest, ...p.steps]) yMaxMs = Math.max(yMaxMs, s.ms);
  }
  const yMin = 0.1;
  const yMax = 10 ** Math.ceil(Math.log10(yMaxMs));
  const x = (seconds: number) => LEFT + ((seconds - xMin) / (xMax - xMin)) * PLOT_WIDTH;
  const yOf = (top: number) => (ms: number) => {
    const clamped = Math.min(yMax, Math.max(yMin, ms));
    const f = (Math.log10(clamped) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin));
    return top + PANEL_HEIGHT - f * PANEL_HEIGHT;
  };

  const height = TOP + phases.length * (PANEL_HEIGHT + PANEL_GAP) + 30;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="24" font-size="17" font-weight="600">${escapeXml(input.title)}</text>`,
    `<text x="${LEFT}" y="44" fill="#555">${escapeXml(input.subtitle)}</text>`,
  );

  // Legend
  const { guide } = input;
  const shown = new Set<ChartSeries>(input.legend ?? ["http", "ingest", "steps", "busy"]);
  const legend = (
    [
      ["http", COLORS.http, "GET /api/healthz latency (from its intended start)"],
      ["ingest", COLORS.ingest, "writer latency from intended start (insert + last_seen bump)"],
      ["steps", COLORS.steps, "backfill step (write transaction) duration"],
      ["busy", COLORS.busy, "ingest SQLITE_BUSY failure"],
    ] as const
  ).filter(([kind]) => shown.has(kind));
  let lx = LEFT;
  for (const [kind, color, label] of legend) {
    if (kind === "busy") {
      out.push(`<path d="M${lx - 4},${62} l8,8 M${lx + 4},${62} l-8,8" stroke="${color}" stroke-width="2"/>`);
    } else if (kind === "steps") {
      out.push(`<rect x="${lx - 4}" y="63" width="8" height="6" fill="${color}"/>`);
    } else {
      out.push(`<circle cx="${lx}" cy="66" r="4" fill="${color}"/>`);
    }
    out.push(`<text x="${lx + 9}" y="70">${escapeXml(label)}</text>`);
    lx += 18 + label.length * 6.4;
  }
  out.push(
    `<rect x="${LEFT - 4}" y="78" width="14" height="10" fill="${COLORS.window}" fill-opacity="0.15" stroke="${COLORS.window}" stroke-opacity="0.5"/>`,
    `<text x="${LEFT + 15}" y="87">backfill window (idle: measurement window)</text>`,
    `<line x1="${LEFT + 290}" y1="83" x2="${LEFT + 320}" y2="83" stroke="#888" stroke-dasharray="4 3"/>`,
    `<text x="${LEFT + 325}" y="87">${escapeXml(guide.label)}</text>`,
  );

  const xStep = niceStep(xMax - xMin, 12);
  phases.forEach((p, index) => {
    const top = TOP + index * (PANEL_HEIGHT + PANEL_GAP) + 26;
    const y = yOf(top);
    const rel = (at: number) => (at - p.window.start) / 1000;
    out.push(
      `<text x="${LEFT}" y="${top - 10}"><tspan font-weight="600" font-size="14">${escapeXml(p.name)}</tspan><tspan fill="#555" dx="10">${escapeXml(p.caption)}</tspan></text>`,
      `<rect x="${LEFT}" y="${top}" width="${PLOT_WIDTH}" height="${PANEL_HEIGHT}" fill="#fafafa" stroke="#bbb"/>`,
    );
    // Backfill window
    const wx0 = Math.min(LEFT + PLOT_WIDTH, Math.max(LEFT, x(0)));
    const wx1 = Math.min(LEFT + PLOT_WIDTH, x(rel(p.window.end)));
    out.push(
      `<rect x="${wx0.toFixed(1)}" y="${top}" width="${Math.max(1, wx1 - wx0).toFixed(1)}" height="${PANEL_HEIGHT}" fill="${COLORS.window}" fill-opacity="${p.backfill ? 0.13 : 0.06}"/>`,
      `<line x1="${wx0.toFixed(1)}" y1="${top}" x2="${wx0.toFixed(1)}" y2="${top + PANEL_HEIGHT}" stroke="${COLORS.window}" stroke-width="1.2"/>`,
      `<line x1="${wx1.toFixed(1)}" y1="${top}" x2="${wx1.toFixed(1)}" y2="${top + PANEL_HEIGHT}" stroke="${COLORS.window}" stroke-width="1.2"/>`,
    );
    // Y grid (log decades)
    for (let v = yMin; v <= yMax * 1.0001; v *= 10) {
      const yy = y(v).toFixed(1);
      out.push(
        `<line x1="${LEFT}" y1="${yy}" x2="${LEFT + PLOT_WIDTH}" y2="${yy}" stroke="#e2e2e2"/>`,
        `<text x="${LEFT - 6}" y="${Number(yy) + 4}" text-anchor="end" fill="#444">${formatMs(Number(v.toPrecision(1)))}</text>`,
      );
    }
    const ty = y(guide.ms).toFixed(1);
    out.push(
      `<line x1="${LEFT}" y1="${ty}" x2="${LEFT + PLOT_WIDTH}" y2="${ty}" stroke="#888" stroke-dasharray="4 3"/>`,
    );
    // X ticks
    for (let t = Math.ceil(xMin / xStep) * xStep; t <= xMax + 1e-9; t += xStep) {
      const xx = x(t).toFixed(1);
      out.push(
        `<line x1="${xx}" y1="${top + PANEL_HEIGHT}" x2="${xx}" y2="${top + PANEL_HEIGHT + 4}" stroke="#666"/>`,
        `<text x="${xx}" y="${top + PANEL_HEIGHT + 16}" text-anchor="middle" fill="#444">${Number(t.toFixed(3))}</text>`,
      );
    }
    out.push(
      `<text transform="translate(${LEFT - 52},${top + PANEL_HEIGHT / 2}) rotate(-90)" text-anchor="middle" fill="#444">latency (log)</text>`,
    );

    const dots = (samples: readonly { at: number; ms: number }[], color: string, radius: number) => {
      const seen = new Set<string>();
      const parts: string[] = [];
      for (const s of samples) {
        if (rel(s.at) < xMin || rel(s.at) > xMax) continue;
        const px = Math.round(x(rel(s.at)));
        const py = Math.round(y(s.ms));
        const key = `${px},${py}`;
        if (seen.has(key)) continue;
        seen.add(key);
        parts.push(
          `M${px - radius},${py}a${radius},${radius} 0 1,0 ${2 * radius},0a${radius},${radius} 0 1,0 ${-2 * radius},0`,
        );
      }
      if (parts.length > 0) out.push(`<path d="${parts.join("")}" fill="${color}" fill-opacity="0.55"/>`);
    };
    dots(
      p.ingest.filter((s) => s.outcome === "ok"),
      COLORS.ingest,
      1.6,
    );
    dots(p.http, COLORS.http, 1.6);
    // Steps: a short bar over the step's own duration on the time axis (a dot for very short ones).
    const stepParts: string[] = [];
    for (const s of p.steps) {
      if (rel(s.endAt) < xMin || rel(s.endAt) > xMax) continue;
      const x1 = x(rel(s.endAt));
      const x0 = Math.min(x1 - 2, x(rel(s.endAt - s.ms)));
      const yy = y(s.ms);
      stepParts.push(
        `M${x0.toFixed(1)},${(yy - 2).toFixed(1)}h${(x1 - x0).toFixed(1)}v4h${(x0 - x1).toFixed(1)}z`,
      );
    }
    if (stepParts.length > 0)
      out.push(`<path d="${stepParts.join("")}" fill="${COLORS.steps}" fill-opacity="0.8"/>`);
    const busy = p.ingest.filter((s) => s.outcome === "busy" && rel(s.at) >= xMin && rel(s.at) <= xMax);
    if (busy.length > 0) {
      const parts = busy.map((s) => {
        const px = x(rel(s.at));
        return `M${(px - 4).toFixed(1)},${top + 4}l8,8M${(px + 4).toFixed(1)},${top + 4}l-8,8`;
      });
      out.push(`<path d="${parts.join("")}" stroke="${COLORS.busy}" stroke-width="2"/>`);
    }
  });
  const last = TOP + phases.length * (PANEL_HEIGHT + PANEL_GAP) + 10;
  out.push(
    `<text x="${LEFT + PLOT_WIDTH / 2}" y="${last}" text-anchor="middle" fill="#444">seconds since the backfill started (idle: since the measurement window started)</text>`,
    "</svg>",
  );
  return `${out.join("\n")}\n`;
}
