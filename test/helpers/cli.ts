/** Runs the real CLI (as `npm run trickle` does) as a child process with `env` on top of a clean environment. */
import { type ChildProcess, spawn } from "node:child_process";

/**
 * Node's arguments for the CLI, as the `trickle` npm script runs it: tsx as a loader in the same process. The
 * `tsx` launcher would put a parent in between that relays signals and SIGKILLs its child when the child does
 * not acknowledge within 30 ms, which a child busy in a 50 ms step cannot.
 */
export const CLI = ["--import", "tsx", "src/cli/main.ts"] as const;

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Starts the CLI; the test process's own TRICKLE_* and DATABASE_* variables do not leak into what is tested. */
export function startCli(args: readonly string[], env: Record<string, string>): ChildProcess {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("TRICKLE_") && !k.startsWith("DATABASE_")),
  );
  return spawn(process.execPath, [...CLI, ...args], { env: { ...base, ...env } });
}

/** Collects a started CLI's output until it exits. */
export function finished(child: ChildProcess): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

export function cli(args: readonly string[], env: Record<string, string>): Promise<CliResult> {
  return finished(startCli(args, env));
}
