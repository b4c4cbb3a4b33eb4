/**
 * Opening the database on Node: the database settings (validated in src/settings.ts), and a client set up the
 * way the engine needs it (`intMode: "bigint"`, a short busy timeout, WAL for local files).
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { reopenAfterBusy } from "../engine/busy-recovery.ts";
import { classifyError } from "../engine/errors.ts";
import { type Env, fileUrlPath, loadSettings, type Settings } from "../settings.ts";

export interface DatabaseConfig {
  readonly url: string;
  readonly authToken?: string;
  /** How long a local connection waits for a lock before SQLITE_BUSY, in ms. */
  readonly busyTimeoutMs: number;
}

export const DEFAULT_DATABASE_URL = "file:data/trickle.db";
export { DEFAULT_BUSY_TIMEOUT_MS } from "../settings.ts";

/** The database part of the settings, with Node's default URL. */
export function databaseConfig(
  settings: Pick<Settings, "databaseUrl" | "databaseAuthToken" | "busyTimeoutMs">,
): DatabaseConfig {
  const url = settings.databaseUrl ?? DEFAULT_DATABASE_URL;
  const { busyTimeoutMs } = settings;
  return settings.databaseAuthToken === undefined
    ? { url, busyTimeoutMs }
    : { url, authToken: settings.databaseAuthToken, busyTimeoutMs };
}

/**
 * Reads the settings (`DATABASE_URL`, `DATABASE_AUTH_TOKEN`, `TRICKLE_BUSY_TIMEOUT_MS` and every other one, see
 * src/settings.ts) and returns the database part. Throws an `Error` naming the variable for anything invalid;
 * messages never repeat the URL itself: it may carry a token in its query.
 */
export function databaseConfigFromEnv(env: Env): DatabaseConfig {
  return databaseConfig(loadSettings(env, { workers: false }));
}

/**
 * The file path of a `file:` URL as libSQL opens it (relative paths are relative to the working directory),
 * or `undefined` for an in-memory database.
 */
export function localPath(url: string): string | undefined {
  const path = fileUrlPath(url);
  return path === undefined ? undefined : resolve(path);
}

/** `openDatabase(…, { create: false })` on a local file that does not exist. */
export class MissingDatabaseError extends Error {
  readonly path: string;

  constructor(path: string) {
    super(`no database at ${path}`);
    this.name = "MissingDatabaseError";
    this.path = path;
  }
}

export interface OpenOptions {
  /**
   * Whether a local file that does not exist is created, with its parent directory (default true: `npm start`
   * on a fresh clone creates data/trickle.db). With false, a missing file throws `MissingDatabaseError` and
   * nothing is created: read-only commands must not turn a mistyped path into a new, empty database.
   */
  readonly create?: boolean;
}

/**
 * Opens a client. Local files: the parent directory is created (unless `create` is false), the busy timeout
 * applied, and WAL switched on once (it is a property of the file), so readers — the HTTP routes, `status` —
 * never wait on the backfill's writer and the writer never waits on them; only writers queue for the lock.
 * A read-only database (a read-only mount or file, or a header that says so) still opens, as it is: it can be
 * read (`status`, `fleet status`), and the first write fails with SQLITE_READONLY, a deterministic error that
 * fails the migration with SQLite's own message instead of making the database look unreachable.
 */
export async function openDatabase(config: DatabaseConfig, options: OpenOptions = {}): Promise<Client> {
  if (/^file:/i.test(config.url)) {
    const path = localPath(config.url);
    if (path !== undefined) {
      if (options.create === false) {
        if (!existsSync(path)) throw new MissingDatabaseError(path);
      } else {
        mkdirSync(dirname(path), { recursive: true });
      }
    }
    const client = createClient({ url: config.url, intMode: "bigint", timeout: config.busyTimeoutMs });
    try {
      await client.execute("PRAGMA journal_mode=WAL");
    } catch (error) {
      if (!classifyError(error).code.startsWith("SQLITE_READONLY")) {
        client.close();
        throw error;
      }
    }
    // Control routes and the CLI share this client; see busy-recovery.ts for why SQLITE_BUSY needs a reopen.
    return reopenAfterBusy(client);
  }
  return createClient({ url: config.url, authToken: config.authToken, intMode: "bigint" });
}
