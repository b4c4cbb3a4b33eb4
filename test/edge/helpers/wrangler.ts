/**
 * wrangler for the tests: `wrangler deploy --dry-run` (the bundle a deploy would upload) and `wrangler dev` as a
 * child process serving that bundle in workerd (the runtime Cloudflare deploys), locally. A test fires the cron
 * handler with `GET /cdn-cgi/handler/scheduled` (miniflare's trigger; `--test-scheduled`'s `/__scheduled` is a
 * bundling middleware, absent with `--no-bundle`). Secrets go through an env file
 * in a temp directory (never on the command line); tuning overrides through `--var`.
 *
 * `wranglerD1Execute` runs SQL against the local D1 database (`--local --persist-to`) that `wrangler dev` serves.
 *
 * Offline: metrics, error reports and the `Request.cf` download are switched off; nothing else is fetched.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ServerChild, spawnChild, tail } from "./child.ts";

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const WRANGLER_BIN = join(
  dirname(createRequire(import.meta.url).resolve("wrangler/package.json")),
  "bin",
  "wrangler.js",
);

/**
 * The environment every wrangler child gets (logs and dev registry under `dir`): no telemetry, no network
 * besides what the Worker does.
 */
export function wranglerEnv(dir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    // Each instance gets a dev registry of its own: instances sharing one watch each other's entries and
    // reload their Worker when another one starts or stops, which drops the requests in flight.
    WRANGLER_REGISTRY_PATH: join(dir, "registry"),
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_SEND_ERROR_REPORTS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_LOG_PATH: join(dir, "logs"),
    NO_COLOR: "1",
    FORCE_COLOR: "0",
  };
}

/** Runs the wrangler CLI from this repository's node_modules. */
export function wranglerCommand(): { command: string; prefix: string[] } {
  return { command: process.execPath, prefix: [WRANGLER_BIN] };
}

export interface WranglerDev {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly child: ServerChild;
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** Fires the cron handler once (`* * * * *`); answers when the invocation, `waitUntil` included, ended. */
  scheduled(): Promise<Response>;
  stop(): Promise<void>;
}

export interface WranglerDevOptions {
  readonly label: string;
  /** Entry module overriding wrangler.toml's `main` (a test entry under test/edge/fixtures/). */
  readonly entry?: string;
  /** wrangler configuration file (default: the repository's wrangler.toml), e.g. `D1_CONFIG`. */
  readonly config?: string;
  /**
   * Local state directory (`--persist-to`), e.g. one seeded with `wranglerD1Execute` beforehand; the caller
   * owns it. Default: a fresh one, removed on `stop()`.
   */
  readonly persistTo?: string;
  /** Secret bindings (written to an env file). */
  readonly secrets: Readonly<Record<string, string>>;
  /** Plain variables, overriding wrangler.toml `[vars]`. */
  readonly vars?: Readonly<Record<string, string>>;
  readonly startTimeoutMs?: number;
}

export interface DryRun {
  readonly status: number | null;
  /** stdout and stderr. */
  readonly output: string;
  /** The bundle's JavaScript files (absolute paths). */
  readonly bundles: readonly string[];
}

/** A wrangler configuration with a local D1 database bound as `DB` and `DATABASE_BINDING = "DB"`. */
export const D1_CONFIG = join(REPO_ROOT, "test/edge/fixtures/wrangler-d1.toml");

/**
 * `wrangler deploy --dry-run --outdir <outdir>` with the repository's wrangler.toml (or `config`): bundles the
 * Worker (or `extra`'s entry) exactly as a deploy would, offline, without uploading anything.
 */
export function wranglerDryRun(
  outdir: string,
  extra: readonly string[] = [],
  config: string = join(REPO_ROOT, "wrangler.toml"),
): Promise<DryRun> {
  const { command, prefix } = wranglerCommand();
  const args = [...prefix, "deploy", "--dry-run", "--outdir", outdir, "--config", config, ...extra];
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: REPO_ROOT,
      env: wranglerEnv(join(outdir, ".wrangler-home")),
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    const finish = (status: number | null) => {
      const bundles = existsSync(outdir)
        ? readdirSync(outdir)
            .filter((f) => f.endsWith(".js"))
            .map((f) => join(outdir, f))
        : [];
      resolve({ status, output, bundles });
    };
    child.once("error", (error) => {
      output += `\n[spawn error] ${error.message}`;
      finish(null);
    });
    child.once("close", (code) => finish(code));
  });
}

/**
 * Bundles the Worker with `wrangler deploy --dry-run` (the artefact a deploy would upload), then serves that
 * bundle with `wrangler dev --no-bundle` and waits until it is ready. Serving the built file rather than the
 * sources also keeps wrangler from watching src/ and reloading the Worker (a new isolate) when a file changes.
 */
export async function startWranglerDev(options: WranglerDevOptions): Promise<WranglerDev> {
  const dir = mkdtempSync(join(tmpdir(), "trickle-wrangler-"));
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  const config = options.config ?? join(REPO_ROOT, "wrangler.toml");
  const build = await wranglerDryRun(join(dir, "bundle"), options.entry ? [options.entry] : [], config);
  const bundle = build.bundles[0];
  if (build.status !== 0 || bundle === undefined || build.bundles.length !== 1) {
    removeDir();
    throw new Error(
      `${options.label}: wrangler deploy --dry-run failed (${build.status}):\n${tail(build.output)}`,
    );
  }
  const envFile = join(dir, "secrets.env");
  writeFileSync(
    envFile,
    Object.entries(options.secrets)
      .map(([name, value]) => `${name}=${envFileValue(value)}\n`)
      .join(""),
    { mode: 0o600 },
  );
  const { command, prefix } = wranglerCommand();
  const args = [
    ...prefix,
    "dev",
    bundle,
    "--no-bundle",
    "--config",
    config,
    "--env-file",
    envFile,
    "--ip",
    "127.0.0.1",
    "--port",
    "0",
    "--inspector-port",
    "0",
    "--persist-to",
    options.persistTo ?? join(dir, "state"),
    "--log-level",
    "log",
    "--show-interactive-dev-session=false",
    ...Object.entries(options.vars ?? {}).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
  ];
  const child = spawnChild(options.label, command, args, {
    cwd: REPO_ROOT,
    env: wranglerEnv(dir),
  });
  const cleanup = async () => {
    await child.stop("SIGTERM", 5_000);
    removeDir();
  };
  let url: string;
  try {
    const ready = await child.waitFor(
      /Ready on (http:\/\/127\.0\.0\.1:\d+)/,
      options.startTimeoutMs ?? 60_000,
    );
    url = ready[1]!;
  } catch (error) {
    await cleanup();
    throw error;
  }
  // A failed or hung request reports what the Worker printed, which is where the reason is.
  const request = async (path: string, init?: RequestInit) => {
    try {
      return await fetch(new URL(path, url), {
        ...init,
        signal: init?.signal ?? AbortSignal.timeout(30_000),
      });
    } catch (error) {
      throw new Error(
        `${options.label}: ${path} failed: ${(error as Error).message}\n${tail(child.output())}`,
      );
    }
  };
  return {
    url,
    child,
    fetch: request,
    scheduled: () => request("/cdn-cgi/handler/scheduled?cron=*+*+*+*+*"),
    stop: cleanup,
  };
}

/** A value for the env file (dotenv): one with line breaks goes in double quotes, which expand `\n`. */
function envFileValue(value: string): string {
  return /[\r\n]/.test(value) ? `"${value.replace(/\r?\n/g, "\\n")}"` : value;
}

export interface D1ExecuteOptions {
  /** The local state directory `wrangler dev --persist-to` uses. */
  readonly persistTo: string;
  /** A .sql file to run, or… */
  readonly file?: string;
  /** …one or more statements separated by `;`. */
  readonly command?: string;
  readonly config?: string;
}

/**
 * `wrangler d1 execute DB --local --persist-to <dir>` (offline): runs a SQL file or command against the local
 * D1 database `wrangler dev --persist-to <dir>` serves. Returns the result sets (`--json`); throws with
 * wrangler's output when it fails.
 */
export async function wranglerD1Execute(
  options: D1ExecuteOptions,
): Promise<Array<{ results: Record<string, unknown>[] }>> {
  const { command, prefix } = wranglerCommand();
  const args = [
    ...prefix,
    "d1",
    "execute",
    "DB",
    "--local",
    "--persist-to",
    options.persistTo,
    "--config",
    options.config ?? D1_CONFIG,
    "--json",
    ...(options.file !== undefined ? ["--file", options.file] : []),
    ...(options.command !== undefined ? ["--command", options.command] : []),
  ];
  const home = mkdtempSync(join(tmpdir(), "trickle-d1-execute-"));
  try {
    const { status, stdout, stderr } = await new Promise<{
      status: number | null;
      stdout: string;
      stderr: string;
    }>((resolve) => {
      const child = spawn(command, args, {
        cwd: REPO_ROOT,
        env: wranglerEnv(home),
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 180_000,
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString("utf8");
      });
      child.stderr.on("data", (chunk: Buffer) => {
        err += chunk.toString("utf8");
      });
      child.once("error", (error) =>
        resolve({ status: null, stdout: out, stderr: `${err}\n${error.message}` }),
      );
      child.once("close", (code) => resolve({ status: code, stdout: out, stderr: err }));
    });
    if (status !== 0) {
      throw new Error(`wrangler d1 execute failed (${status}):\n${tail(stdout)}\n${tail(stderr)}`);
    }
    return JSON.parse(stdout) as Array<{ results: Record<string, unknown>[] }>;
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
