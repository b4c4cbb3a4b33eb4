/**
 * The remote libSQL client for runtimes without native addons (Cloudflare Workers, Deno Deploy): HTTP through
 * `@libsql/client/web`, integers as `bigint` so keys and counters stay exact and travel as Hrana integers
 * (design invariant 8). Portable: no `node:*` imports.
 */
import { type Client, createClient } from "@libsql/client/web";

const REMOTE_SCHEMES = ["libsql:", "https:", "http:", "wss:", "ws:"];

/**
 * Opens a client for `DATABASE_URL`. `where` names the runtime in messages ("Cloudflare Workers"). Throws an
 * `Error` naming the variable; messages never repeat the URL (it may carry a token in its query).
 */
export function openRemoteClient(
  url: string | undefined,
  authToken: string | undefined,
  where: string,
): Client {
  if (url === undefined) {
    throw new Error(
      `DATABASE_URL is required on ${where}: a remote libSQL URL such as libsql://<db>-<org>.turso.io`,
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("DATABASE_URL is not a valid URL; expected libsql://, https:// or http://");
  }
  if (parsed.protocol === "file:") {
    throw new Error(
      `DATABASE_URL: file: databases cannot be opened on ${where}; use a remote libSQL URL (libsql://, https:// or http://)`,
    );
  }
  if (!REMOTE_SCHEMES.includes(parsed.protocol)) {
    throw new Error(
      `DATABASE_URL has unsupported scheme "${parsed.protocol}"; use one of ${REMOTE_SCHEMES.join(", ")}`,
    );
  }
  if (parsed.hostname === "") throw new Error("DATABASE_URL must name a host");
  return createClient({ url, ...(authToken === undefined ? {} : { authToken }), intMode: "bigint" });
}
