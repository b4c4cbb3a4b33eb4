/**
 * The one error body every route answers with: RFC 9457 problem details (`application/problem+json`).
 *
 * `{ type, title, status, detail }` as the RFC has them, plus `error` (the same text as `detail`, the field
 * clients of earlier versions read), `field` for the first request field that is wrong, and `problems` with
 * every wrong field when a request was validated. Routes add members of their own (a 409 names the
 * migration's status).
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export interface Problem {
  readonly field: string;
  readonly message: string;
}

const TITLES: Partial<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/** The body of a problem response. */
export function problemBody(
  status: number,
  detail: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { type: "about:blank", title: TITLES[status] ?? "Error", status, detail, error: detail, ...extra };
}

/** Answers a problem on `c` (headers set on `c` before, such as `Allow` or `Retry-After`, are kept). */
export function problem(
  c: Context,
  status: ContentfulStatusCode,
  detail: string,
  extra: Record<string, unknown> = {},
): Response {
  return c.body(JSON.stringify(problemBody(status, detail, extra)), status, {
    "Content-Type": PROBLEM_CONTENT_TYPE,
  });
}

/** A 400 listing every wrong field; `detail` and `field` describe the first, `problems` all of them. */
export function invalidRequest(c: Context, problems: readonly Problem[]): Response {
  const first = problems[0] ?? { field: "body", message: "invalid request" };
  const detail =
    problems.length > 1 ? `${first.message} (and ${problems.length - 1} more: see problems)` : first.message;
  return problem(c, 400, detail, { field: first.field, problems });
}
