/**
 * Server processes for the real-runtime tests (wrangler dev + workerd, Deno, Bun): spawned in a process group of
 * their own so that stopping one also stops what it started (wrangler starts workerd), with their output kept
 * for assertions and failure messages, bounded waits, and a registry so `stopAllChildren()` in `afterEach`
 * never leaves one behind.
 */
import { type ChildProcess, spawn } from "node:child_process";

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ServerChild {
  readonly label: string;
  readonly pid: number;
  /** Everything written to stdout and stderr so far, interleaved. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output; rejects after `timeoutMs` or on exit. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  readonly exited: Promise<ChildExit>;
  /**
   * Sends `signal` to the child's process group and waits for the child to exit; after `timeoutMs` the group
   * gets SIGKILL. Idempotent.
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ChildExit>;
}

const MAX_OUTPUT = 2 * 1024 * 1024;
const live = new Set<ServerChild>();

export function spawnChild(
  label: string,
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): ServerChild {
  const child: ChildProcess = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  if (child.pid === undefined) throw new Error(`${label}: could not start ${command}`);
  const pid = child.pid;
  let text = "";
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    if (text.length < MAX_OUTPUT) text += chunk.toString("utf8");
    for (const listener of listeners) listener();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let hasExited = false;
  const exited = new Promise<ChildExit>((resolve) => {
    child.once("exit", (code, signal) => {
      hasExited = true;
      for (const listener of listeners) listener();
      resolve({ code, signal });
    });
    child.once("error", (error) => {
      hasExited = true;
      text += `\n[spawn error] ${error.message}\n`;
      for (const listener of listeners) listener();
      resolve({ code: null, signal: null });
    });
  });

  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // the group is gone already
    }
  };

  let stopping: Promise<ChildExit> | undefined;
  const handle: ServerChild = {
    label,
    pid,
    output: () => text,
    exited,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = text.match(pattern);
          if (match) return finish(() => resolve(match));
          if (hasExited) {
            finish(() =>
              reject(new Error(`${label} exited before printing ${pattern}; output:\n${tail(text)}`)),
            );
          }
        };
        const timer = setTimeout(
          () =>
            finish(() =>
              reject(
                new Error(`${label} did not print ${pattern} within ${timeoutMs} ms; output:\n${tail(text)}`),
              ),
            ),
          timeoutMs,
        );
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      });
    },
    stop(signal = "SIGTERM", timeoutMs = 10_000) {
      stopping ??= (async () => {
        if (!hasExited) signalGroup(signal);
        const timer = setTimeout(() => signalGroup("SIGKILL"), timeoutMs);
        const exit = await exited;
        clearTimeout(timer);
        // Whatever the leader started (workerd under wrangler) goes with it.
        signalGroup("SIGKILL");
        live.delete(handle);
        return exit;
      })();
      return stopping;
    },
  };
  live.add(handle);
  return handle;
}

/** Stops every child still running (for `afterEach`). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...live].map((child) => child.stop("SIGTERM", 5_000)));
}

export function tail(text: string, lines = 60): string {
  return text.split("\n").slice(-lines).join("\n");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
