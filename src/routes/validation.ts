/** Request validation shared by the control and tick routes: 400s that name every wrong field, never a 500. */
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { z } from "zod";
import { invalidRequest, type Problem, problem } from "./problem.ts";
import { issuesOf } from "./schemas.ts";

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
      return problem(c, 413, `the request body must be at most ${MAX_BODY_BYTES} bytes`, { field: "body" });
    },
  });
}

type Checked<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly problems: Problem[] };

/** The query string (each parameter given once) against `schema`. */
function checkQuery<S extends z.ZodType>(c: Context, schema: S): Checked<z.output<S>> {
  const query: Record<string, string> = {};
  const problems: Problem[] = [];
  for (const [key, values] of Object.entries(c.req.queries())) {
    if (values.length > 1) problems.push({ field: key, message: `${key} must be given once` });
    query[key] = values[0] ?? "";
  }
  const result = schema.safeParse(query);
  problems.push(...(result.success ? [] : issuesOf(result.error)));
  return problems.length === 0 && result.success ? { ok: true, value: result.data } : { ok: false, problems };
}

/** The JSON body against `schema`; an empty body is `undefined` before validation (`.optional()` accepts it). */
async function checkBody<S extends z.ZodType>(c: Context, schema: S): Promise<Checked<z.output<S>>> {
  let text: string;
  try {
    text = await c.req.text();
  } catch {
    return { ok: false, problems: [{ field: "body", message: "the request body could not be read" }] };
  }
  let value: unknown;
  if (text.trim() !== "") {
    try {
      value = JSON.parse(text);
    } catch {
      return { ok: false, problems: [{ field: "body", message: "the request body is not valid JSON" }] };
    }
  }
  const result = schema.safeParse(value);
  return result.success ? { ok: true, value: result.data } : { ok: false, problems: issuesOf(result.error) };
}

/**
 * Validation as middleware: the query string and (when given a schema) the JSON body are checked together, and a
 * request with problems in both gets one 400 listing every one. The handler reads `c.var.query` and `c.var.body`
 * (typed by mount.ts from the route's declaration).
 */
export function validate(schemas: {
  readonly query?: z.ZodType | undefined;
  readonly body?: z.ZodType | undefined;
}): MiddlewareHandler {
  return async function validated(c, next) {
    const query = schemas.query ? checkQuery(c, schemas.query) : ({ ok: true, value: undefined } as const);
    const body = schemas.body ? await checkBody(c, schemas.body) : ({ ok: true, value: undefined } as const);
    if (!query.ok || !body.ok)
      return invalidRequest(c, [...(query.ok ? [] : query.problems), ...(body.ok ? [] : body.problems)]);
    c.set("query", query.value);
    c.set("body", body.value);
    await next();
  };
}
