/**
 * `npm run torture` end to end, at the size CI can afford (`--kills 5 --seconds 30`, well under a minute on two idle
 * cores; each scenario also has its own test): every scenario runs, the crash scenario survives all 5 SIGKILLs, the JSON report says nothing was
 * lost, and the table is printed. Bad flags are refused with a message naming the flag.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { REPO } from "../fixtures/server-process.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function run(command: string, args: readonly string[], timeoutMs: number) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(command, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `${command} ${args.join(" ")} did not finish within ${timeoutMs} ms:\n${stdout}\n${stderr}`,
        ),
      );
    }, timeoutMs);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

interface Report {
  passed: boolean;
  options: { kills: number; seconds: number };
  results: {
    scenario: string;
    passed: boolean;
    kills: number;
    lost: number;
    doubleApplies: number;
    problems: string[];
  }[];
}

describe("npm run torture", () => {
  it("--kills 5 --seconds 30: every scenario passes and the crash scenario survives 5 kills", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trickle-torture-"));
    dirs.push(dir);
    const json = join(dir, "torture.json");
    const { code, stdout, stderr } = await run(
      "npm",
      ["run", "--silent", "torture", "--", "--kills", "5", "--seconds", "30", "--json", json],
      280_000,
    );
    const report = JSON.parse(readFileSync(json, "utf8")) as Report;
    const failed = report.results
      .filter((r) => !r.passed)
      .map((r) => `${r.scenario}: ${r.problems.join("; ")}`);
    expect(failed, `${stdout}\n${stderr.slice(-2000)}`).toEqual([]);
    expect(code).toBe(0);
    expect(report.passed).toBe(true);
    expect(report.results.map((r) => r.scenario)).toEqual([
      "crash",
      "many runners",
      "freeze",
      "starvation",
      "client faults",
      "remote faults",
      "unreachable",
      "disk full",
      "http fuzz",
    ]);
    expect(report.results.find((r) => r.scenario === "crash")?.kills).toBe(5);
    expect(report.results.reduce((sum, r) => sum + r.lost + r.doubleApplies, 0)).toBe(0);
    expect(stdout).toMatch(/scenario\s+runs\s+kills survived/);
    expect(stdout).toMatch(/torture: nothing lost/);
    // Progress went to stderr while it ran.
    expect(stderr).toMatch(/crash: kill \d+\/5/);
  }, 300_000);

  it("refuses bad flags with exit code 2, naming the flag", async () => {
    const tsx = join(REPO, "node_modules", ".bin", "tsx");
    for (const [args, message] of [
      [["--kills", "0"], /--kills must be a whole number from 1/],
      [["--kills", "many"], /--kills must be a whole number/],
      [["--seconds", "-5"], /--seconds/],
      [["--only", "crash,nope"], /--only: unknown scenario nope/],
      [["--bogus"], /bogus/],
    ] as const) {
      const { code, stderr } = await run(tsx, ["torture/main.ts", ...args], 30_000);
      expect(code, args.join(" ")).toBe(2);
      expect(stderr, args.join(" ")).toMatch(message);
    }
  });
});
