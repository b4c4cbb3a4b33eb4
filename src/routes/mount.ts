/**
 * Mounts handlers on declared routes (api.ts). What the declaration says is what runs before the handler, in
 * this order: the bearer check of its path's guard (403 disabled, 401 wrong token) with the body limit (413),
 * then the check of each path parameter (the migration-name lookup: 404 before any SQL), then the query and
 * body validation (one 400 listing every problem). The handler reads the parsed values from `c.var.query` and
 * `c.var.body`.
 */
import type { Context, Handler, Hono, MiddlewareHandler } from "hono";
import type { z } from "zod";
import { GUARDS, guardOf, type RouteDeclaration } from "./api.ts";
import { requireBearer } from "./auth.ts";
import type { AppDeps } from "./deps.ts";
import { limitBody, validate } from "./validation.ts";

type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;

/** The context a handler of `route` gets: the parsed query and body, typed from the declaration. */
export type RouteContext<Q, B> = Context<{ Variables: { query: Parsed<Q>; body: Parsed<B> } }>;

export type Mount = <Q extends z.ZodType | undefined, B extends z.ZodType | undefined>(
  route: RouteDeclaration<Q, B>,
  handler: (c: RouteContext<Q, B>) => Response | Promise<Response>,
) => void;

/**
 * Mounts routes on `app`. Guards read their secret from `deps.config` on every request (Workers bindings arrive
 * late); each path parameter of a route needs its check in `params` (`:name` → `params.name`). The first route
 * mounted under a guarded prefix (api.ts) puts the guard on the whole prefix, declared routes or not.
 */
export function mounter(
  app: Hono,
  deps?: Pick<AppDeps, "config">,
  params: Readonly<Record<string, MiddlewareHandler>> = {},
): Mount {
  const guarded = new Set<string>();
  const guard = (path: string): void => {
    const found = guardOf(path);
    if (!found || guarded.has(found.prefix)) return;
    if (!deps) throw new Error(`${path} needs the app's configuration to be mounted (it is guarded)`);
    const { secret, what } = GUARDS[found.guard];
    const check = requireBearer(() => deps.config[secret], `${what} disabled`);
    for (const prefix of [found.prefix, `${found.prefix}/*`]) app.use(prefix, check, limitBody());
    guarded.add(found.prefix);
  };
  const paramChecks = (path: string) =>
    [...path.matchAll(/:(\w+)/g)].map(([, param]) => {
      const check = param === undefined ? undefined : params[param];
      if (!check) throw new Error(`no check for the path parameter :${param} of ${path}`);
      return check;
    });
  return (route, handler) => {
    guard(route.path);
    const chain: MiddlewareHandler[] = [
      ...paramChecks(route.path),
      ...(route.query || route.body ? [validate({ query: route.query, body: route.body })] : []),
    ];
    app.on([...route.methods], [route.path], ...chain, handler as unknown as Handler);
  };
}
