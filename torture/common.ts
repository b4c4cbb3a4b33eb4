/**
 * Shared pieces of the torture program: what a scenario reports, how it is told its size and time limit, and
 * small helpers (seeded randomness, waiting, reading the state row as text).
 *
 * A scenario never decides on its own that something was "probably fine": every figure it reports comes from
 * the database at the end (or after each disruption), compared with an oracle computed independently of the
 * engine. `lost` and `doubleApplies` are counted rows, not guesses.
 */
import type { Client } from "@libsql/client";

export { prng } from "../test/helpers/db.ts";

export interface ScenarioOptions {
  /** The scale knob (`--kills`): SIGKILLs of the crash scenario; other scenarios scale from it. */
  readonly kills: number;
  /** Wall-clock ms (`Date.now()`) after which a scenario stops adding disruptions and finishes its run. */
  readonly deadline: number;
  /** Seed of the scenario's random choices (data sets, kill moments, faults). */
  readonly seed: number;
  /** Short status text while the scenario runs (drawn by the progress renderer). */
  readonly progress: (detail: string) => void;
}

/**
 * The soft time limit between disruptions: true (and noted) once the deadline has passed, but never before the
 * first disruption, so a scenario on a slow machine or under a short `--seconds` still tests something.
 */
export function timeIsUp(
  result: ScenarioResult,
  options: ScenarioOptions,
  done: number,
  planned: number,
  what: string,
): boolean {
  if (done === 0 || Date.now() <= options.deadline) return false;
  result.notes.push(`time limit reached after ${done} of ${planned} ${what}`);
  return true;
}

export interface ScenarioResult {
  readonly scenario: string;
  /** What was tried, in a few words, for the summary table. */
  readonly tried: string;
  /** Runner processes or runner instances started. */
  runs: number;
  /** SIGKILLs the run survived. */
  kills: number;
  /** Other disruptions survived: freezes, lock holds, injected errors, HTTP faults, outages, full disks. */
  faults: number;
  /** Rows whose final value was checked against the oracle. */
  rowsVerified: number;
  /** Rows changed more than once (or counted more than once). */
  doubleApplies: number;
  /** Rows left unchanged, wrong, or missing from the counts. */
  lost: number;
  /** HTTP 5xx answers from trickle's own service (injected 5xx from a database server are `faults`). */
  fiveXX: number;
  durationMs: number;
  /** Everything that went wrong; a scenario passes only with none. */
  readonly problems: string[];
  /** Things worth knowing that are not failures (a run cut short by the time limit, the mode used…). */
  readonly notes: string[];
}

export function newResult(scenario: string, tried: string): ScenarioResult {
  return {
    scenario,
    tried,
    runs: 0,
    kills: 0,
    faults: 0,
    rowsVerified: 0,
    doubleApplies: 0,
    lost: 0,
    fiveXX: 0,
    durationMs: 0,
    problems: [],
    notes: [],
  };
}

export function passed(result: ScenarioResult): boolean {
  return (
    result.problems.length === 0 && result.lost === 0 && result.doubleApplies === 0 && result.fiveXX === 0
  );
}

/** Records `problem` unless `condition` holds; returns `condition`. */
export function check(result: ScenarioResult, condition: boolean, problem: string): boolean {
  if (!condition) result.problems.push(problem);
  return condition;
}

/** An integer in `[min, max]`. */
export function randomInt(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every `intervalMs` until it holds; throws naming `what` after `timeoutMs`. */
export async function waitUntil(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Awaits `promise`, rejecting with a message naming `what` after `ms`. */
export async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** One integer from a single-row, single-column query (COUNT(*) and the like). */
export async function scalar(
  client: Client,
  sql: string,
  args: Record<string, bigint | string | number | null> | (bigint | string | number | null)[] = [],
): Promise<bigint> {
  const result = await client.execute({ sql: `SELECT CAST((${sql}) AS TEXT) AS v`, args });
  const value = result.rows[0]?.v;
  if (value === null || value === undefined) return 0n;
  return BigInt(String(value));
}

/** `Error: message` for anything thrown, for problem lists. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Runs `body`, turning a thrown error into a recorded problem, and times the scenario. */
export async function runScenario(
  result: ScenarioResult,
  body: () => Promise<void>,
  cleanup: () => Promise<void> | void = () => {},
): Promise<ScenarioResult> {
  const began = performance.now();
  try {
    await body();
  } catch (error) {
    result.problems.push(`aborted: ${describeError(error)}`);
  } finally {
    try {
      await cleanup();
    } catch (error) {
      result.notes.push(`cleanup failed: ${describeError(error)}`);
    }
    result.durationMs = Math.round(performance.now() - began);
  }
  return result;
}

/** The part of a result a test compares: no problems, nothing lost, nothing applied twice, no 5xx. */
export function verdict(result: ScenarioResult): {
  problems: string[];
  lost: number;
  doubleApplies: number;
  fiveXX: number;
} {
  return {
    problems: result.problems,
    lost: result.lost,
    doubleApplies: result.doubleApplies,
    fiveXX: result.fiveXX,
  };
}
