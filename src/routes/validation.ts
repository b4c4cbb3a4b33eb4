/** Request parsing shared by the control and tick routes: JSON errors that name the field, never a 500. */
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { z } from "zod";
import { firstIssue } from "./schemas.ts";

/** Largest request body the control and tick routes read. */
export const MAX_BODY_BYTES = 16 * 1024;

/**
 * Refuses a body over `MAX_BODY_BYTES` with a JSON 413 and closes the connection: the rest of the body is never
 * read, so a kept-alive connection would begin its next request in the middle of it (a pooled client then saw
 * "other side closed").
 */
export function limitBody(): MiddlewareHandler {
  return bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => {
      c.header("Connection", "close");
      return c.json(
        { error: `the request body must be at most ${MAX_BODY_BYTES} bytes`, field: "body" },
        413,
      );
    },
  });
}

export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly response: Response };

function invalid(c: Context, field: string, message: string): Response {
  return c.json({ error: message, field }, 400);
}

/** Validates the query string (each parameter given once) against `schema`. */
export function parseQuery<S extends z.ZodType>(c: Context, schema: S): Parsed<z.output<S>> {
  const all = c.req.queries();
  const query: Record<string, string> = {};
  for (const [key, values] of Object.entries(all)) {
    if (values.length > 1) return { ok: false, response: invalid(c, key, `${key} must be given once`) };
    query[key] = values[0] ?? "";
  }
  const result = schema.safeParse(query);
  if (result.success) return { ok: true, value: result.data };
  const { field, message } = firstIssue(result.error);
  return { ok: false, response: invalid(c, field, message) };
}

/**
 * Reads a JSON body and validates it against `schema`. An empty body is `undefined` before validation, so a
 * schema may accept it (`.optional()`) or not.
 */
export async function parseJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
): Promise<Parsed<z.output<S>>> {
  let text: string;
  try {
    text = await c.req.text();
  } catch {
    return { ok: false, response: invalid(c, "body", "the request body could not be read") };
  }
  let value: unknown;
  if (text.trim() !== "") {
    try {
      value = JSON.parse(text);
    } catch {
      return { ok: false, response: invalid(c, "body", "the request body is not valid JSON") };
    }
  }
  const result = schema.safeParse(value);
  if (result.success) return { ok: true, value: result.data };
  const { field, message } = firstIssue(result.error);
  return { ok: false, response: invalid(c, field, message) };
}
