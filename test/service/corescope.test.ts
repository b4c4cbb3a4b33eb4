/**
 * The CoreScope drop-in (design.md): every migration item the read routes serve carries both field spellings —
 * the seed PR #1725's (`rate`, `etaSeconds`, `elapsedSeconds`) and its re-cut #1735's (`ratePerSec`, `etaSec`,
 * `elapsedSec`) — and `GET /api/perf/async-migrations` serves the bare list #1735's clients read.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, startHarness, TX } from "../fixtures/server-harness.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

const SPELLINGS = [
  ["rate", "ratePerSec"],
  ["etaSeconds", "etaSec"],
  ["elapsedSeconds", "elapsedSec"],
] as const;

describe("CoreScope's field names", () => {
  it("are on every item of /api/healthz, /api/perf, /api/perf/async-migrations and /api/migrations, with equal values", async () => {
    h = await startHarness({ env: { TRICKLE_SNAPSHOT_TTL_MS: "0" } });
    await h.service.tick();
    const health = (await (await h.request("GET", "/api/healthz", { token: null })).json()) as {
      async_migrations: Record<string, unknown>[];
    };
    const perf = (await (await h.request("GET", "/api/perf", { token: null })).json()) as {
      asyncMigrations: Record<string, unknown>[];
    };
    const bare = await h.request("GET", "/api/perf/async-migrations", { token: null });
    expect(bare.status).toBe(200);
    const list = (await bare.json()) as Record<string, unknown>[];
    expect(Array.isArray(list)).toBe(true);
    const admin = (await (await h.request("GET", "/api/migrations")).json()) as {
      migrations: Record<string, unknown>[];
    };
    for (const items of [health.async_migrations, perf.asyncMigrations, list, admin.migrations]) {
      expect(items.map((m) => m.name)).toEqual([TX]);
      for (const item of items)
        for (const [seed, recut] of SPELLINGS) {
          expect(item).toHaveProperty(seed);
          expect(item[recut]).toEqual(item[seed]);
        }
    }
  });
});
