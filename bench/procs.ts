/**
 * Child processes of the benchmark: the service (Node on a build of src/, as `npm start` runs it), and bench
 * children that talk JSON lines over stdout (`{"type": …}`) and take commands as lines on stdin. Plus the things around them: a free port,
 * the peak RSS of a process tree from /proc, and a clock that all processes share.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export { freePort } from "../test/fixtures/server-process.ts";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
const TSC = join(REPO, "node_modules", "typescript", "bin", "tsc");

/**
 * Compiles `src/` as `npm run build` compiles it into `dist/` (tsconfig.build.json, no declarations) and returns
 * the service's entry. The benchmark serves from this build, as `npm start` does, so that the serving process's
 * memory is the service's own, not TypeScript's loader's. The build goes to a directory of its own under
 * node_modules/.cache (so that its imports resolve, and a benchmark never races `npm run build` or the package
 * test), removed when the process exits.
 */
export function buildService(): string {
  const cache = join(REPO, "node_modules", ".cache");
  mkdirSync(cache, { recursive: true });
  const outDir = mkdtempSync(join(cache, "trickle-bench-"));
  process.once("exit", () => rmSync(outDir, { recursive: true, force: true }));
  const tsc = spawnSync(
    process.execPath,
    [TSC, "-p", join(REPO, "tsconfig.build.json"), "--outDir", outDir, "--declaration", "false"],
    { cwd: REPO, encoding: "utf8" },
  );
  if (tsc.status !== 0) throw new Error(`building the service failed:\n${tsc.stdout}${tsc.stderr}`);
  return join(outDir, "node.js");
}

/** Wall-clock epoch ms with sub-millisecond resolution; comparable between the benchmark's processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export type Message = { readonly type: string } & Record<string, unknown>;

/** A bench child: JSON messages out, command lines in. */
export class JsonChild {
  readonly child: ChildProcess;
  readonly name: string;
  readonly exited: Promise<number | null>;
  #buffer = "";
  #stderr = "";
  readonly #messages: Message[] = [];
  readonly #waiters: { type: string; resolve: (m: Message) => void; reject: (e: Error) => void }[] = [];
  #onMessage: ((m: Message) => void) | undefined;
  #exitCode: number | null | undefined;

  /** Runs `bench/<script>` under Node with tsx's loader (no extra launcher process in between). */
  constructor(name: string, script: string, args: readonly string[], onMessage?: (m: Message) => void) {
    this.name = name;
    this.#onMessage = onMessage;
    this.child = spawn(process.execPath, ["--import", "tsx", join(REPO, "bench", script), ...args], {
      cwd: REPO,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stdout?.setEncoding("utf8");
    this.child.stdout?.on("data", (chunk: string) => this.#read(chunk));
    this.child.stderr?.setEncoding("utf8");
    this.child.stderr?.on("data", (chunk: string) => {
      this.#stderr = (this.#stderr + chunk).slice(-4000);
    });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code) => {
        this.#exitCode = code;
        for (const w of this.#waiters.splice(0)) {
          w.reject(
            new Error(`${this.name} exited (code ${code}) before "${w.type}": ${this.#stderr.trim()}`),
          );
        }
        resolve(code);
      });
    });
  }

  /** Resolves with the first message of `type` (already received or still to come). */
  waitFor(type: string, timeoutMs = 120_000): Promise<Message> {
    const seen = this.#messages.find((m) => m.type === type);
    if (seen) return Promise.resolve(seen);
    if (this.#exitCode !== undefined) {
      return Promise.reject(
        new Error(`${this.name} exited (code ${this.#exitCode}): ${this.#stderr.trim()}`),
      );
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(`${this.name}: no "${type}" within ${timeoutMs} ms; stderr: ${this.#stderr.trim()}`),
        );
      }, timeoutMs);
      this.#waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  send(command: string): void {
    this.child.stdin?.write(`${command}\n`);
  }

  stderr(): string {
    return this.#stderr;
  }

  kill(): void {
    if (this.#exitCode === undefined) this.child.kill("SIGKILL");
  }

  #read(chunk: string): void {
    this.#buffer += chunk;
    for (let nl = this.#buffer.indexOf("\n"); nl >= 0; nl = this.#buffer.indexOf("\n")) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (!line.startsWith("{")) continue;
      let message: Message;
      try {
        message = JSON.parse(line) as Message;
      } catch {
        continue;
      }
      this.#messages.push(message);
      this.#onMessage?.(message);
      for (let i = this.#waiters.length - 1; i >= 0; i--) {
        const w = this.#waiters[i]!;
        if (w.type === message.type) {
          this.#waiters.splice(i, 1);
          w.resolve(message);
        }
      }
    }
  }
}

/** The service as `npm start` starts it: Node on its build (`buildService`), with exactly `env` (plus PATH and HOME). */
export class ServiceProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<number | null>;
  #output = "";

  constructor(entry: string, port: number, env: Record<string, string>) {
    this.port = port;
    this.child = spawn(process.execPath, [entry], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env, PORT: String(port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString()).slice(-8000);
    };
    this.child.stdout?.on("data", keep);
    this.child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  output(): string {
    return this.#output;
  }

  /** Polls `/api/healthz` until it answers 200. */
  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    while (Date.now() < deadline && !exited) {
      try {
        const res = await fetch(this.url("/api/healthz"));
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(
      `the service did not become ready${exited ? " (it exited)" : ` within ${timeoutMs} ms`}; output:\n${this.#output}`,
    );
  }

  /** SIGTERM (graceful stop), then SIGKILL for the whole tree after `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<void> {
    const pids = processTree(this.child.pid);
    this.child.kill("SIGTERM");
    const timedOut = await Promise.race([this.exited.then(() => false), sleep(timeoutMs).then(() => true)]);
    if (timedOut) {
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      await this.exited;
    }
  }
}

/** `pid` and its descendants (Linux /proc); just `[pid]` elsewhere. */
export function processTree(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    const p = all[i]!;
    try {
      for (const task of readdirSync(`/proc/${p}/task`)) {
        const children = readFileSync(`/proc/${p}/task/${task}/children`, "utf8").trim();
        if (children) for (const c of children.split(/\s+/)) all.push(Number(c));
      }
    } catch {
      // not Linux, or the process is gone
    }
  }
  return all;
}

/**
 * Peak resident set (VmHWM) in MB of the largest process in `pid`'s tree — the serving Node process (its engine
 * thread included). Null when /proc cannot be read.
 */
export function peakRssMb(pid: number | undefined): number | null {
  let best: number | null = null;
  for (const p of processTree(pid)) {
    try {
      const status = readFileSync(`/proc/${p}/status`, "utf8");
      const kb = Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1]);
      if (Number.isFinite(kb)) best = Math.max(best ?? 0, kb / 1024);
    } catch {
      // gone, or not Linux
    }
  }
  return best;
}
