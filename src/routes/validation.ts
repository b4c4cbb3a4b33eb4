/** Request parsing shared by the control and tick routes: JSON errors that name the field, never a 500. */
import type { Context } from "hono";
import type { z } from "zod";
import { firstIssue } from "./schemas.ts";

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
