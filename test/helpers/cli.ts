/** Runs the real CLI (`tsx src/cli/main.ts`) as a child process with `env` on top of a clean environment. */
import { spawn } from "node:child_process";

export function cli(
  args: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // The test process's own TRICKLE_*/DATABASE_* variables must not leak into what is tested.
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("TRICKLE_") && !k.startsWith("DATABASE_")),
  );
  const child = spawn("node_modules/.bin/tsx", ["src/cli/main.ts", ...args], { env: { ...base, ...env } });
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
