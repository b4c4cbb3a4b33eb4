/**
 * Opening the database on Node: configuration from the environment, and a client set up the way the engine
 * needs it (`intMode: "bigint"`, a short busy timeout, WAL for local files).
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { reopenAfterBusy } from "../engine/busy-recovery.ts";

export interface DatabaseConfig {
  readonly url: string;
  readonly authToken?: string;
  /** How long a local connection waits for a lock before SQLITE_BUSY, in ms. */
  readonly busyTimeoutMs: number;
}

export const DEFAULT_DATABASE_URL = "file:data/trickle.db";
export const DEFAULT_BUSY_TIMEOUT_MS = 100;

const SCHEMES = ["file", "libsql", "http", "https", "ws", "wss"] as const;

/**
 * Reads `DATABASE_URL`, `DATABASE_AUTH_TOKEN` and `TRICKLE_BUSY_TIMEOUT_MS`. Throws an `Error` naming the
 * variable for anything invalid. Messages never repeat the URL itself: it may carry a token in its query.
 */
export function databaseConfigFromEnv(env: Record<string, string | undefined>): DatabaseConfig {
  const rawUrl = env.DATABASE_URL?.trim();
  const url = rawUrl === undefined || rawUrl === "" ? DEFAULT_DATABASE_URL : rawUrl;
  checkUrl(url);

  const rawToken = env.DATABASE_AUTH_TOKEN;
  let authToken: string | undefined;
  if (rawToken !== undefined && rawToken.trim() !== "") {
    if (/\s/.test(rawToken.trim())) throw new Error("DATABASE_AUTH_TOKEN must not contain whitespace");
    authToken = rawToken.trim();
  }

  const rawTimeout = env.TRICKLE_BUSY_TIMEOUT_MS?.trim();
  let busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS;
  if (rawTimeout !== undefined && rawTimeout !== "") {
    if (!/^\d+$/.test(rawTimeout) || !Number.isSafeInteger(Number(rawTimeout))) {
      throw new Error(
        `TRICKLE_BUSY_TIMEOUT_MS must be an integer number of milliseconds ≥ 0, got ${JSON.stringify(rawTimeout)}`,
      );
    }
    busyTimeoutMs = Number(rawTimeout);
  }
  return authToken === undefined ? { url, busyTimeoutMs } : { url, authToken, busyTimeoutMs };
}

function checkUrl(url: string): void {
  const scheme = /^([A-Za-z][A-Za-z0-9.+-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    throw new Error(`DATABASE_URL must start with one of ${SCHEMES.map((s) => `${s}:`).join(", ")}`);
  }
  if (!(SCHEMES as readonly string[]).includes(scheme)) {
    throw new Error(
      `DATABASE_URL has unsupported scheme "${scheme}:"; use one of ${SCHEMES.map((s) => `${s}:`).join(", ")}`,
    );
  }
  if (scheme === "file") {
    localPath(url); // throws on a malformed file URL
    return;
  }
  let host = "";
  try {
    host = new URL(url).hostname;
  } catch {
    throw new Error(`DATABASE_URL is not a valid ${scheme}: URL`);
  }
  if (host === "")
    throw new Error(`DATABASE_URL (${scheme}:) must name a host, e.g. ${scheme}://db.example.com`);
}

/**
 * The file path of a `file:` URL as libSQL opens it (relative paths are relative to the working directory),
 * or `undefined` for an in-memory database.
 */
export function localPath(url: string): string | undefined {
  let rest = url.slice("file:".length).replace(/[?#].*$/s, "");
  if (rest.startsWith("//")) {
    // file://host/path: libSQL accepts only an empty host or localhost.
    const slash = rest.indexOf("/", 2);
    const host = rest.slice(2, slash === -1 ? undefined : slash).toLowerCase();
    if (host !== "" && host !== "localhost") {
      throw new Error(
        'DATABASE_URL: a file: URL with an absolute path starts with one slash ("file:/abs/path.db") or three ("file:///abs/path.db")',
      );
    }
    rest = slash === -1 ? "" : rest.slice(slash);
  }
  let path: string;
  try {
    path = decodeURIComponent(rest);
  } catch {
    throw new Error("DATABASE_URL: the file path has an invalid percent-escape");
  }
  if (path === "") throw new Error("DATABASE_URL: the file: URL has no path, e.g. file:data/trickle.db");
  if (path === ":memory:") return undefined;
  return resolve(path);
}

/**
 * Opens a client. Local files: the parent directory is created, the busy timeout applied, and WAL switched on
 * once (it is a property of the file), so readers — the HTTP routes, `status` — never wait on the backfill's
 * writer and the writer never waits on them; only writers queue for the lock.
 */
export async function openDatabase(config: DatabaseConfig): Promise<Client> {
  if (/^file:/i.test(config.url)) {
    const path = localPath(config.url);
    if (path !== undefined) mkdirSync(dirname(path), { recursive: true });
    const client = createClient({ url: config.url, intMode: "bigint", timeout: config.busyTimeoutMs });
    try {
      await client.execute("PRAGMA journal_mode=WAL");
    } catch (error) {
      client.close();
      throw error;
    }
    // Control routes and the CLI share this client; see busy-recovery.ts for why SQLITE_BUSY needs a reopen.
    return reopenAfterBusy(client);
  }
  return createClient({ url: config.url, authToken: config.authToken, intMode: "bigint" });
}
