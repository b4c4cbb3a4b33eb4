/**
 * `npm run torture -- [--kills N] [--seconds S] [--json FILE] [--only a,b] [--seed N]`
 *
 * Runs every torture scenario one after another (crash, many runners, freeze, starvation, client faults,
 * remote faults, unreachable at start, disk full, HTTP fuzz), shows progress on stderr while they run, prints a
 * table of figures on stdout, and exits 1 if any scenario lost a row, applied one twice, answered a 5xx or
 * found any other problem (2 on bad arguments).
 *
 * --kills N    SIGKILLs of the crash scenario (default 25; the long mode is 200 or more). The other scenarios
 *              scale from it: runners killed, freezes, lock holds, outages and fuzz runs grow with N.
 * --seconds S  Soft time limit for the whole run (default 900): once a scenario's share is used up it stops
 *              adding disruptions and finishes its backfill, so every run still ends verified.
 * --json FILE  Also write the figures as JSON.
 * --only LIST  Comma-separated scenario names (see --help).
 * --seed N     Seed of all random choices (default: random; printed, so a failing run can be repeated).
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ProgressRenderer } from "../src/cli/progress.ts";
import { passed, type ScenarioResult } from "./common.ts";
import { renderDetails, renderTable, toReport } from "./report.ts";
import { SCENARIOS } from "./scenarios.ts";

const USAGE = `usage: npm run torture -- [--kills N] [--seconds S] [--json FILE] [--only NAMES] [--seed N]
scenarios: ${SCENARIOS.map((s) => s.name).join(", ")}`;

interface TortureArgs {
  readonly kills: number;
  readonly seconds: number;
  readonly json: string | undefined;
  readonly only: readonly string[];
  readonly seed: number;
}

function positiveInteger(value: string | undefined, flag: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max)
    throw new Error(`${flag} must be a whole number from 1 to ${max}, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** Parses the command line; throws an `Error` naming the bad flag. */
function parseTortureArgs(argv: readonly string[]): TortureArgs | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        kills: { type: "string" },
        seconds: { type: "string" },
        json: { type: "string" },
        only: { type: "string" },
        seed: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new Error((error as Error).message);
  }
  if (values.help) return "help";
  const only =
    typeof values.only === "string"
      ? values.only
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : [];
  const unknown = only.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length > 0)
    throw new Error(
      `--only: unknown scenario ${unknown.join(", ")}; known: ${SCENARIOS.map((s) => s.name).join(", ")}`,
    );
  if (typeof values.only === "string" && only.length === 0)
    throw new Error("--only needs at least one scenario");
  if (values.json === "") throw new Error("--json needs a file name");
  return {
    kills: positiveInteger(values.kills as string | undefined, "--kills", 25, 100_000),
    seconds: positiveInteger(values.seconds as string | undefined, "--seconds", 900, 86_400),
    json: values.json as string | undefined,
    only,
    seed: positiveInteger(
      values.seed as string | undefined,
      "--seed",
      1 + Math.floor(Math.random() * 1e9),
      2 ** 31,
    ),
  };
}

async function runTorture(args: TortureArgs): Promise<ScenarioResult[]> {
  const selected = SCENARIOS.filter((s) => args.only.length === 0 || args.only.includes(s.name));
  const began = Date.now();
  const end = began + args.seconds * 1000;
  const totalWeight = selected.reduce((sum, s) => sum + s.weight, 0);
  const renderer = new ProgressRenderer(process.stderr);
  const results: ScenarioResult[] = [];
  // On a terminal the finished scenarios stay on screen above the current one; in a log, one line at a time.
  const status = (current: string) => [
    ...(renderer.tty
      ? results.map(
          (r) => `  ${passed(r) ? "ok    " : "FAILED"} ${r.scenario} (${(r.durationMs / 1000).toFixed(1)} s)`,
        )
      : []),
    `  …      ${current}`,
  ];
  process.stderr.write(
    `torture: ${selected.length} scenarios, --kills ${args.kills}, --seconds ${args.seconds}, --seed ${args.seed}\n`,
  );
  let weightLeft = totalWeight;
  for (const [index, scenario] of selected.entries()) {
    const now = Date.now();
    // Each scenario's share of the time that is left, in proportion to its weight.
    const share = Math.max(0, end - now) * (scenario.weight / weightLeft);
    weightLeft -= scenario.weight;
    renderer.update(status(`${scenario.name}: starting`));
    const result = await scenario.run({
      kills: args.kills,
      deadline: now + share,
      seed: args.seed + index,
      progress: (detail) => renderer.update(status(`${scenario.name}: ${detail}`)),
    });
    results.push(result);
    if (!renderer.tty)
      process.stderr.write(
        `  ${passed(result) ? "ok    " : "FAILED"} ${result.scenario} (${(result.durationMs / 1000).toFixed(1)} s)\n`,
      );
    renderer.update(status(index + 1 < selected.length ? "next scenario" : "done"));
  }
  renderer.finish();
  return results;
}

async function main(): Promise<number> {
  let args: TortureArgs | "help";
  try {
    args = parseTortureArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`torture: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (args === "help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const startedAt = new Date();
  const results = await runTorture(args);
  process.stdout.write(`\n${renderTable(results)}\n`);
  const details = renderDetails(results);
  if (details) process.stdout.write(`\n${details}\n`);
  const report = toReport(results, { kills: args.kills, seconds: args.seconds, seed: args.seed }, startedAt);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(
    report.passed
      ? `\ntorture: nothing lost (seed ${args.seed})\n`
      : `\ntorture: FAILED — see the problems above (repeat with --seed ${args.seed})\n`,
  );
  return report.passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`torture: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
