/** The summary table of a torture run, and its JSON form. */
import { formatCount } from "../src/cli/progress.ts";
import { passed, type ScenarioResult } from "./common.ts";

const COLUMNS = [
  "scenario",
  "runs",
  "kills survived",
  "faults survived",
  "rows verified",
  "double-applies",
  "lost",
  "5xx seen",
  "duration",
  "result",
] as const;

function cells(r: ScenarioResult): string[] {
  return [
    r.scenario,
    formatCount(r.runs),
    formatCount(r.kills),
    formatCount(r.faults),
    formatCount(r.rowsVerified),
    formatCount(r.doubleApplies),
    formatCount(r.lost),
    formatCount(r.fiveXX),
    `${(r.durationMs / 1000).toFixed(1)} s`,
    passed(r) ? "ok" : "FAILED",
  ];
}

/** A plain-text table, numbers right-aligned. */
export function renderTable(results: readonly ScenarioResult[]): string {
  const rows = [COLUMNS.slice() as string[], ...results.map(cells)];
  const totals = results.reduce(
    (t, r) => ({
      runs: t.runs + r.runs,
      kills: t.kills + r.kills,
      faults: t.faults + r.faults,
      rows: t.rows + r.rowsVerified,
      doubles: t.doubles + r.doubleApplies,
      lost: t.lost + r.lost,
      fiveXX: t.fiveXX + r.fiveXX,
      ms: t.ms + r.durationMs,
    }),
    { runs: 0, kills: 0, faults: 0, rows: 0, doubles: 0, lost: 0, fiveXX: 0, ms: 0 },
  );
  rows.push([
    "total",
    formatCount(totals.runs),
    formatCount(totals.kills),
    formatCount(totals.faults),
    formatCount(totals.rows),
    formatCount(totals.doubles),
    formatCount(totals.lost),
    formatCount(totals.fiveXX),
    `${(totals.ms / 1000).toFixed(1)} s`,
    results.every(passed) ? "ok" : "FAILED",
  ]);
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, i) =>
        i === 0 || i === row.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!),
      )
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(rows[0]!), rule, ...rows.slice(1, -1).map(line), rule, line(rows.at(-1)!)].join("\n");
}

/** Problems and notes, one line each, under the scenario they belong to. */
export function renderDetails(results: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    for (const note of r.notes) lines.push(`${r.scenario}: ${note}`);
    for (const problem of r.problems.slice(0, 20)) lines.push(`${r.scenario}: PROBLEM: ${problem}`);
    if (r.problems.length > 20) lines.push(`${r.scenario}: … and ${r.problems.length - 20} more problems`);
  }
  return lines.join("\n");
}

export interface TortureReport {
  readonly startedAt: string;
  readonly options: { readonly kills: number; readonly seconds: number; readonly seed: number };
  readonly passed: boolean;
  readonly results: readonly (ScenarioResult & { readonly passed: boolean })[];
}

export function toReport(
  results: readonly ScenarioResult[],
  options: TortureReport["options"],
  startedAt: Date,
): TortureReport {
  return {
    startedAt: startedAt.toISOString(),
    options,
    passed: results.every(passed),
    results: results.map((r) => ({ ...r, passed: passed(r) })),
  };
}
