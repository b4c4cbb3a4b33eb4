/**
 * Property-based fuzzing of every route on the in-process app (torture/http-fuzz.ts generates the requests and
 * judges each answer): never a 5xx, the secure headers always, no token echoed, no repository file served, and
 * no state change — state, audit, data tables or schema — without the valid token for the route. Once with the
 * control API and the HTTP tick configured, once with neither, where every control and tick request must be
 * refused with 403 whatever it carries.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { databaseState, inProcessTarget } from "../../torture/fuzz.ts";
import { fuzzRequests, fuzzTarget, routedPath } from "../../torture/http-fuzz.ts";
import { type Harness, startHarness } from "../fixtures/server-harness.ts";

let harnesses: Harness[] = [];
afterEach(async () => {
  for (const h of harnesses) await h.cleanup();
  harnesses = [];
});

describe("fuzz: every route, in process", () => {
  it("with the tokens configured: no 5xx, no leak, no change without the valid token", async () => {
    const h = await startHarness({ transmissions: 100, env: { TRICKLE_SNAPSHOT_TTL_MS: "0" } });
    harnesses.push(h);
    const figures = await fuzzTarget(inProcessTarget(h, { admin: true, cron: true }), {
      numRuns: 500,
      seed: 20261124,
    });
    expect(figures.violations).toEqual([]);
    expect(figures).toMatchObject({
      requests: 500,
      fiveXX: 0,
      unauthorizedChanges: 0,
      missingSecureHeaders: 0,
      echoedSecrets: 0,
      servedFiles: 0,
    });
    // Not vacuous: valid requests did change state, and every kind of refusal was exercised.
    expect(figures.authorizedChanges).toBeGreaterThanOrEqual(5);
    for (const status of ["200", "400", "401", "404", "409", "413"])
      expect(figures.statuses[status], status).toBeGreaterThan(0);
  });

  it("with no token configured: control routes and the tick refuse everything with 403, and nothing changes", async () => {
    const h = await startHarness({
      transmissions: 30,
      env: { ADMIN_TOKEN: "", CRON_SECRET: "", TRICKLE_SNAPSHOT_TTL_MS: "0" },
    });
    harnesses.push(h);
    const target = inProcessTarget(h, { admin: false, cron: false });
    const figures = await fuzzTarget(target, { numRuns: 200, seed: 42 });
    expect(figures.violations).toEqual([]);
    expect(figures).toMatchObject({ fiveXX: 0, unauthorizedChanges: 0, authorizedChanges: 0 });

    const before = await databaseState(h.client);
    await fc.assert(
      fc.asyncProperty(fuzzRequests(target), async (request) => {
        const path = routedPath(request.path);
        const guarded =
          path === "/api/tick" || path === "/api/migrations" || path.startsWith("/api/migrations/");
        fc.pre(guarded);
        const res = await target.send(request);
        expect(res.status, `${request.method} ${request.path}`).toBe(403);
      }),
      { numRuns: 150, seed: 43 },
    );
    expect(await databaseState(h.client)).toBe(before);
  });
});
