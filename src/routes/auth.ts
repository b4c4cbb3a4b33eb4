/**
 * Bearer-token checks for the control API and the HTTP tick. The secret is read per request (Workers bindings
 * do not exist at module load), compared in constant time, and never logged or echoed.
 */
import type { Context, MiddlewareHandler } from "hono";
import { problem } from "./problem.ts";

const encoder = new TextEncoder();

/**
 * Compares two strings over their UTF-8 bytes in time that depends only on the longer length, not on where
 * they differ. Portable (no `node:crypto`).
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  let diff = x.length ^ y.length;
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * Middleware: a 403 problem saying `disabledMessage` when `secret(c)` is unset, 401 when the request carries no
 * token or the wrong one.
 */
export function requireBearer(
  secret: (c: Context) => string | undefined,
  disabledMessage: string,
): MiddlewareHandler {
  return async function bearer(c, next) {
    const expected = secret(c);
    if (expected === undefined || expected === "") return problem(c, 403, disabledMessage);
    const given = bearerToken(c.req.header("authorization"));
    if (given === undefined || !constantTimeEqual(given, expected)) {
      c.header("WWW-Authenticate", 'Bearer realm="trickle"');
      return problem(c, 401, "missing or invalid bearer token");
    }
    await next();
  };
}
