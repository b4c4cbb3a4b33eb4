/**
 * Property-based fuzzing of every HTTP route (fast-check): methods, paths (path traversal on the static assets
 * included), headers, query strings and bodies (non-JSON, unicode, unknown fields, prototype keys, oversized).
 *
 * Each generated request is sent to a target — the in-process app (`app.request`) or a real server over HTTP —
 * and the answer must satisfy, whatever the request:
 * - never a 5xx;
 * - the secure headers on every response, errors and 404s included;
 * - no secret (admin token, cron secret) and no token the request carried in the response, body or headers;
 * - no file of the repository served (path traversal);
 * - without the valid token for the route, no state change: `_async_migrations`, the audit table, the data
 *   tables and the schema are compared before and after.
 * Used by the torture program (`fuzz` scenario) and by test/security/*.test.ts.
 */
import fc from "fast-check";

/** Headers `secureHeaders()` puts on every response (the banner's resource policy is relaxed on purpose). */
export const SECURE_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "SAMEORIGIN",
  "referrer-policy": "no-referrer",
  "strict-transport-security": "max-age=15552000; includeSubDomains",
  "cross-origin-opener-policy": "same-origin",
  "x-permitted-cross-domain-policies": "none",
  "x-xss-protection": "0",
};

/** A wrong token that is long and distinctive enough to be recognised if it were ever echoed or logged. */
export const WRONG_TOKEN = "wrong-token-Zq8vK3xLp0";

/** Strings that only a served repository file would contain. */
const FILE_MARKERS = ['"devDependencies"', "compilerOptions", "#!/usr/bin/env", "root:x:0:0"];

export const TRAVERSAL_PATHS: readonly string[] = [
  "/../package.json",
  "/%2e%2e/package.json",
  "/%2E%2E/%2E%2E/package.json",
  "/..%2fpackage.json",
  "/..%5cpackage.json",
  "/warmup-banner.js/..",
  "/warmup-banner.js/../package.json",
  "/warmup-banner.js/%2e%2e/%2e%2e/package.json",
  "/warmup-banner.js%00.json",
  "/api/../package.json",
  "/api/migrations/../../tsconfig.json",
  "//etc/passwd",
  "/.env",
  "/.git/config",
  "/src/config.ts",
  "/node_modules/.bin/tsx",
  "/data/trickle.db",
  "/%c0%ae%c0%ae/package.json",
  "/static/..%252fpackage.json",
];

export interface FuzzRequest {
  readonly method: string;
  /** Path and query, as sent. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | undefined;
}

export interface FuzzResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

export interface FuzzTarget {
  /** `undefined`: the control API is disabled on this target (it must answer 403). */
  readonly adminToken: string | undefined;
  readonly cronSecret: string | undefined;
  /**
   * Tokens the generator uses: sent as they are (unless `offerValidTokens` is false) and in near-miss variants
   * (another scheme, a byte more or less, no scheme). A target with no token configured still gets them.
   */
  readonly knownTokens: readonly string[];
  /** Send the known tokens as they are (default true); false: only near-misses, so nothing may change. */
  readonly offerValidTokens?: boolean;
  /** Registered migration names. */
  readonly migrations: readonly string[];
  send(request: FuzzRequest): Promise<FuzzResponse>;
  /** Everything a request may change: state, audit, data tables, schema. */
  state(): Promise<string>;
}

export interface FuzzFigures {
  requests: number;
  fiveXX: number;
  /** Requests with a valid token that changed state (so "no change without one" is not vacuous). */
  authorizedChanges: number;
  unauthorizedChanges: number;
  missingSecureHeaders: number;
  echoedSecrets: number;
  servedFiles: number;
  statuses: Record<string, number>;
  /** Human-readable descriptions of violations (at most a few). */
  readonly violations: string[];
}

/** Control routes and the rest: every route the app serves, with the methods it answers. */
function routes(names: readonly string[]): fc.Arbitrary<readonly [string, string]> {
  const name = fc.oneof(
    { arbitrary: fc.constantFrom(...names), weight: 4 },
    {
      arbitrary: fc.constantFrom(
        "nope_v1",
        "obs_hop_count_v1",
        "x'; DROP TABLE transmissions;--",
        "tx_last_seen_backfill_v1' OR '1'='1",
        "..",
        "%2e%2e",
        "ü",
        "a".repeat(300),
      ),
      weight: 1,
    },
  );
  const segment = (n: string) => encodeURIComponent(n).replace(/%2525/g, "%25");
  const action = fc.constantFrom("pause", "resume", "cancel", "retry", "dry-run", "explode", "");
  return fc.oneof(
    {
      arbitrary: fc.constantFrom(
        ["GET", "/"] as const,
        ["GET", "/warmup-banner.js"] as const,
        ["GET", "/api/healthz"] as const,
        ["GET", "/api/perf"] as const,
        ["GET", "/metrics"] as const,
        ["GET", "/api/openapi.json"] as const,
        ["GET", "/api/migrations"] as const,
        ["GET", "/api/tick"] as const,
        ["POST", "/api/tick"] as const,
      ),
      weight: 4,
    },
    {
      arbitrary: fc.tuple(
        fc.constant("GET"),
        name.map((n) => `/api/migrations/${segment(n)}`),
      ),
      weight: 2,
    },
    {
      arbitrary: fc.tuple(
        fc.constant("PATCH"),
        name.map((n) => `/api/migrations/${segment(n)}`),
      ),
      weight: 2,
    },
    {
      arbitrary: fc
        .tuple(name, action)
        .map(([n, a]) => ["POST", `/api/migrations/${segment(n)}/${a}`] as const),
      weight: 4,
    },
    {
      arbitrary: fc.tuple(
        fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND"),
        fc.oneof(
          fc.constantFrom(...TRAVERSAL_PATHS),
          fc.constantFrom("/", "/warmup-banner.js", "/api/healthz", "/api/perf", "/metrics", "/api/tick"),
          fc.constantFrom(
            "/api/migrations",
            "/api/openapi.json",
            "/api",
            "/api/",
            "/index.html",
            "/favicon.ico",
          ),
          fc.string({ maxLength: 30 }).map((s) => `/${encodeURIComponent(s)}`),
          fc.stringMatching(/^[a-z0-9/._%-]{0,40}$/).map((s) => `/${s}`),
          fc.constant(`/${"a/".repeat(500)}`),
        ),
      ),
      weight: 3,
    },
  );
}

function query(): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constant(""), weight: 6 },
    {
      arbitrary: fc.constantFrom(
        "?budgetMs=10",
        "?budgetMs=0",
        "?budgetMs=-1",
        "?budgetMs=1e9",
        "?budgetMs=9999999",
        "?budgetMs=",
        "?budgetMs=10&budgetMs=20",
        "?steps=2",
        "?steps=51",
        "?steps=x",
        "?steps=%00",
        "?__proto__=1",
        "?constructor=x",
        `?token=${WRONG_TOKEN}`,
        "?%ff=1",
        `?q=${"x".repeat(3000)}`,
      ),
      weight: 2,
    },
    {
      arbitrary: fc
        .dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 12 }), { maxKeys: 3 })
        .map((d) => `?${new URLSearchParams(d).toString()}`),
      weight: 1,
    },
  );
}

/** Header values must be ByteStrings without line breaks (fetch and HTTP refuse anything else). */
const headerText = (maxLength: number) =>
  fc.string({ maxLength }).map((s) => s.replace(/[^\x20-\x7e]/g, "").trim());

function authorization(known: readonly string[], offerValid: boolean): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 2 },
    ...(offerValid && known.length > 0
      ? [{ arbitrary: fc.constantFrom(...known.map((t) => `Bearer ${t}`)), weight: 4 }]
      : []),
    {
      arbitrary: fc.constantFrom(
        `Bearer ${WRONG_TOKEN}`,
        "Bearer",
        "Bearer ",
        ...known.flatMap((t) => [
          `Basic ${t}`,
          t,
          `Bearer ${t} extra`,
          `Bearer ${t}x`,
          `Bearer ${t.slice(1)}`,
        ]),
        `Bearer ${"a".repeat(5000)}`,
        `Bearer ${WRONG_TOKEN.toUpperCase()}`,
      ),
      weight: 3,
    },
    { arbitrary: headerText(40), weight: 1 },
  );
}

function body(): fc.Arbitrary<string | undefined> {
  const tuningValue = fc.oneof(
    fc.integer(),
    fc.integer({ min: 1, max: 1000 }),
    fc.double(),
    fc.string({ maxLength: 5 }),
    fc.constant(null),
    fc.constant(Number.MAX_VALUE),
  );
  return fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 4 },
    {
      arbitrary: fc
        .record(
          {
            stepTargetMs: tuningValue,
            yieldMs: tuningValue,
            sliceBudgetMs: tuningValue,
            initialBatch: tuningValue,
            maxBatch: tuningValue,
            note: fc.oneof(fc.string({ maxLength: 40 }), fc.string({ minLength: 490, maxLength: 520 })),
            unknownField: fc.anything(),
            leaseTtlMs: fc.integer(),
          },
          { requiredKeys: [] },
        )
        .map((o) => JSON.stringify(o, (_k, v) => (typeof v === "bigint" ? v.toString() : v))),
      weight: 3,
    },
    {
      arbitrary: fc.constantFrom(
        "{}",
        "[]",
        "null",
        "1",
        '"x"',
        "{",
        '{"note": "x\'; DROP TABLE transmissions;--"}',
        '{"__proto__": {"stepTargetMs": 1}}',
        '{"constructor": {"prototype": {"admin": true}}}',
        '{"stepTargetMs": 10, "stepTargetMs": "x"}',
        '{"stepTargetMs": 1e309}',
        '{"stepTargetMs": 10.0000000000000001}',
        `{"note": "${WRONG_TOKEN}"}`,
        "\u0000\u0001",
        "\ufeff{}",
        '{"note": "\ud800"}',
      ),
      weight: 2,
    },
    { arbitrary: fc.json({ maxDepth: 4 }), weight: 1 },
    { arbitrary: fc.string({ maxLength: 300, unit: "binary" }), weight: 1 },
    // Oversized: around and well beyond the 16 KiB limit.
    {
      arbitrary: fc
        .integer({ min: 16 * 1024 - 16, max: 256 * 1024 })
        .map((n) => JSON.stringify({ note: "x".repeat(n) })),
      weight: 1,
    },
  );
}

/** A control action or tuning change as an operator would send it: these are the requests that change state. */
function wellFormed(target: Pick<FuzzTarget, "knownTokens" | "migrations" | "offerValidTokens">) {
  const name = fc.constantFrom(...target.migrations);
  type Route = readonly [method: string, path: string];
  return fc.record({
    route: fc.oneof<fc.Arbitrary<Route>[]>(
      name.chain((n) =>
        fc
          // Mostly the reversible pair, so a cancel early on does not leave the rest of the run nothing to change.
          .constantFrom("pause", "resume", "pause", "resume", "pause", "resume", "cancel", "retry", "dry-run")
          .map((a) => ["POST", `/api/migrations/${n}/${a}`] as const),
      ),
      name.map((n) => ["PATCH", `/api/migrations/${n}`] as const),
      fc.constant(["POST", "/api/tick"] as const),
    ),
    query: fc.constantFrom("", "?budgetMs=50"),
    authorization: authorization(target.knownTokens, target.offerValidTokens !== false),
    contentType: fc.constant("application/json"),
    extra: fc.constant({}),
    body: fc.oneof(
      fc.constant(undefined),
      fc.string({ maxLength: 30 }).map((note) => JSON.stringify({ note })),
      fc.integer({ min: 1, max: 500 }).map((ms) => JSON.stringify({ stepTargetMs: ms, yieldMs: null })),
    ),
  });
}

export function fuzzRequests(target: Pick<FuzzTarget, "knownTokens" | "migrations" | "offerValidTokens">) {
  const anything = fc.record({
    route: routes(target.migrations),
    query: query(),
    authorization: authorization(target.knownTokens, target.offerValidTokens !== false),
    contentType: fc.constantFrom(
      undefined,
      "application/json",
      "application/json; charset=utf-8",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ),
    extra: fc.dictionary(
      fc.constantFrom(
        "x-forwarded-for",
        "origin",
        "accept",
        "cookie",
        "x-request-id",
        "accept-language",
        "range",
      ),
      headerText(60),
      { maxKeys: 3 },
    ),
    body: body(),
  });
  return fc
    .oneof({ arbitrary: anything, weight: 4 }, { arbitrary: wellFormed(target), weight: 1 })
    .map(({ route: [method, path], ...r }): FuzzRequest => {
      const headers: Record<string, string> = { ...r.extra };
      if (r.authorization !== undefined) headers.authorization = r.authorization;
      if (r.contentType !== undefined) headers["content-type"] = r.contentType;
      const bodyless = method === "GET" || method === "HEAD";
      return { method, path: `${path}${r.query}`, headers, body: bodyless ? undefined : r.body };
    });
}

/** Whether `request` carries the valid token for the route it targets (only then may it change state). */
export function mayChangeState(target: FuzzTarget, request: FuzzRequest): boolean {
  const auth = request.headers.authorization;
  const path = routedPath(request.path);
  if (
    target.adminToken !== undefined &&
    auth === `Bearer ${target.adminToken}` &&
    path.startsWith("/api/migrations")
  )
    return true;
  return (
    target.cronSecret !== undefined && auth === `Bearer ${target.cronSecret}` && path.startsWith("/api/tick")
  );
}

/** The path a server routes on: dot segments resolved, the query dropped (`/api/migrations/../x` is `/api/x`). */
export function routedPath(pathAndQuery: string): string {
  try {
    return new URL(`http://localhost${pathAndQuery}`).pathname;
  } catch {
    return pathAndQuery.split("?")[0]!;
  }
}

/** Checks one answer; records figures and violations. Returns false on a violation. */
export function judgeResponse(
  target: FuzzTarget,
  request: FuzzRequest,
  response: FuzzResponse,
  figures: FuzzFigures,
): boolean {
  const what = `${request.method} ${request.path.slice(0, 120)}`;
  let ok = true;
  const violation = (text: string) => {
    ok = false;
    if (figures.violations.length < 20) figures.violations.push(`${what}: ${text}`);
  };
  figures.requests++;
  figures.statuses[String(response.status)] = (figures.statuses[String(response.status)] ?? 0) + 1;
  if (response.status >= 500) {
    figures.fiveXX++;
    violation(`answered ${response.status}: ${response.text.slice(0, 200)}`);
  }
  const missing = Object.entries(SECURE_HEADERS).filter(([k, v]) => response.headers.get(k) !== v);
  if (missing.length > 0) {
    figures.missingSecureHeaders++;
    violation(`missing secure headers ${missing.map(([k]) => k).join(", ")}`);
  }
  const secrets = [...target.knownTokens, WRONG_TOKEN];
  const carried = bearerOf(request.headers.authorization);
  if (carried !== undefined && carried.length >= 12) secrets.push(carried);
  const headerText = [...response.headers.entries()].map(([k, v]) => `${k}: ${v}`).join("\n");
  // A secret the request put in its own query or body may legitimately come back as data (a note, a path).
  const inRequest = (s: string) => request.path.includes(s) || (request.body ?? "").includes(s);
  const echoed = secrets.filter(
    (s) => !inRequest(s) && (response.text.includes(s) || headerText.includes(s)),
  );
  if (echoed.length > 0) {
    figures.echoedSecrets++;
    violation("echoed a token");
  }
  if (FILE_MARKERS.some((m) => response.text.includes(m))) {
    figures.servedFiles++;
    violation("served a file of the repository");
  }
  return ok;
}

function bearerOf(header: string | undefined): string | undefined {
  return header === undefined ? undefined : /^\s*Bearer\s+(\S+)/i.exec(header)?.[1];
}

export function emptyFigures(): FuzzFigures {
  return {
    requests: 0,
    fiveXX: 0,
    authorizedChanges: 0,
    unauthorizedChanges: 0,
    missingSecureHeaders: 0,
    echoedSecrets: 0,
    servedFiles: 0,
    statuses: {},
    violations: [],
  };
}

/**
 * Sends `numRuns` generated requests to `target`, checking each answer and, for requests without the valid
 * token, that nothing changed. Returns the figures; never throws on a violation (the caller judges them).
 */
export async function fuzzTarget(
  target: FuzzTarget,
  options: {
    numRuns: number;
    seed: number;
    figures?: FuzzFigures;
    onRequest?: (figures: FuzzFigures) => void;
  },
): Promise<FuzzFigures> {
  const figures = options.figures ?? emptyFigures();
  await fc.assert(
    fc.asyncProperty(fuzzRequests(target), async (request) => {
      const mayChange = mayChangeState(target, request);
      const before = await target.state();
      const response = await target.send(request);
      judgeResponse(target, request, response, figures);
      const after = await target.state();
      if (after !== before) {
        if (mayChange) figures.authorizedChanges++;
        else {
          figures.unauthorizedChanges++;
          if (figures.violations.length < 20)
            figures.violations.push(
              `${request.method} ${request.path.slice(0, 120)}: changed state without a valid token`,
            );
        }
      }
      options.onRequest?.(figures);
      // Never fail the property: every request is judged, and all violations are counted.
      return true;
    }),
    { numRuns: options.numRuns, seed: options.seed, endOnFailure: true },
  );
  return figures;
}
