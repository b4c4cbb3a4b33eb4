/**
 * Checks an answer of the app against the route declarations (src/routes/api.ts): the status must be one the
 * route declares (its own, or derived from its guard, validation and path), the content type the declared one,
 * and a JSON or problem body must parse with the declared schema. The service harness runs it on every answer,
 * so every route test also checks that the declarations (and the OpenAPI document built from them) are true.
 */
import { guardOf, type RouteDeclaration, repliesOf, routesAt } from "../../src/routes/api.ts";
import { PROBLEM_CONTENT_TYPE } from "../../src/routes/problem.ts";
import { ErrorSchema } from "../../src/routes/schemas.ts";

function declarationOf(method: string, path: string): RouteDeclaration | undefined {
  const m = method === "HEAD" ? "GET" : method;
  return routesAt(path).find((r) => r.methods.some((x) => x === m));
}

/** Throws naming the route, the status and what does not match. */
export async function checkDeclaredReply(method: string, url: string, response: Response): Promise<void> {
  const path = new URL(url, "http://app").pathname;
  const route = declarationOf(method, path);
  const where = `${method} ${path} → ${response.status}`;
  const type = response.headers.get("content-type") ?? "";
  if (!route) {
    // Not a declared route: the app's own 404 or 405 (under a guarded prefix, the guard's refusal first).
    const allowed = guardOf(path) ? [401, 403, 404, 405, 413] : [404, 405];
    if (!allowed.includes(response.status) || !type.startsWith(PROBLEM_CONTENT_TYPE))
      throw new Error(`${where}: an undeclared route must answer one of ${allowed.join(", ")} as a problem`);
    return;
  }
  const reply = repliesOf(route)[response.status];
  if (!reply) throw new Error(`${where}: status not declared for ${route.path}`);
  if (method === "HEAD") return;
  const expected =
    reply.kind === "json"
      ? "application/json"
      : reply.kind === "problem"
        ? PROBLEM_CONTENT_TYPE
        : reply.contentType;
  if (!type.startsWith(expected)) throw new Error(`${where}: content type ${type}, declared ${expected}`);
  if (reply.kind === "text") return;
  const schema = reply.kind === "json" ? reply.schema : (reply.schema ?? ErrorSchema);
  const parsed = schema.safeParse(await response.clone().json());
  if (!parsed.success)
    throw new Error(`${where}: body does not match its declaration: ${JSON.stringify(parsed.error.issues)}`);
}
