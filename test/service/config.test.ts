/** Configuration from the environment: defaults, bounds, and errors that name the variable but no secret. */
import { describe, expect, it } from "vitest";
import { DEFAULT_PORT, loadConfig } from "../../src/config.ts";
import { DEFAULT_TUNING } from "../../src/engine/tuning.ts";

describe("loadConfig", () => {
  it("has documented defaults with no environment at all", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: DEFAULT_PORT,
      databaseUrl: undefined,
      adminToken: undefined,
      cronSecret: undefined,
      tickMs: 1000,
      snapshotTtlMs: 1000,
    });
    expect(c.port).toBe(8787);
    expect(c.tuning).toEqual(DEFAULT_TUNING);
    expect(c.migrations.map((m) => m.name)).toEqual(["tx_last_seen_backfill_v1"]);
  });

  it("reads every variable", () => {
    const c = loadConfig({
      PORT: "9000",
      DATABASE_URL: " libsql://db.example.com ",
      DATABASE_AUTH_TOKEN: "tok",
      ADMIN_TOKEN: " admin ",
      CRON_SECRET: "cron",
      TRICKLE_MIGRATIONS: "all",
      TRICKLE_TICK_MS: "250",
      TRICKLE_SLICE_BUDGET_MS: "500",
      TRICKLE_STEP_TARGET_MS: "20",
      TRICKLE_YIELD_MS: "0",
      TRICKLE_LEASE_TTL_MS: "5000",
      TRICKLE_SNAPSHOT_TTL_MS: "0",
    });
    expect(c).toMatchObject({
      port: 9000,
      databaseUrl: "libsql://db.example.com",
      databaseAuthToken: "tok",
      adminToken: "admin",
      cronSecret: "cron",
      tickMs: 250,
      snapshotTtlMs: 0,
      tuning: { sliceBudgetMs: 500, stepTargetMs: 20, yieldMs: 0, leaseTtlMs: 5000 },
    });
    expect(c.migrations.map((m) => m.name)).toEqual(["tx_last_seen_backfill_v1", "obs_hop_count_v1"]);
  });

  it("treats empty secrets as unset", () => {
    expect(loadConfig({ ADMIN_TOKEN: "", CRON_SECRET: "   " })).toMatchObject({
      adminToken: undefined,
      cronSecret: undefined,
    });
  });

  it.each([
    [{ PORT: "http" }, /^PORT /],
    [{ PORT: "65536" }, /^PORT /],
    [{ PORT: "-1" }, /^PORT /],
    [{ TRICKLE_TICK_MS: "1.5" }, /^TRICKLE_TICK_MS /],
    [{ TRICKLE_TICK_MS: "1" }, /^TRICKLE_TICK_MS must be at least 10/],
    [{ TRICKLE_SLICE_BUDGET_MS: "soon" }, /^TRICKLE_SLICE_BUDGET_MS /],
    [{ TRICKLE_STEP_TARGET_MS: "0" }, /^TRICKLE_STEP_TARGET_MS /],
    [{ TRICKLE_YIELD_MS: "-5" }, /^TRICKLE_YIELD_MS /],
    [
      { TRICKLE_LEASE_TTL_MS: "1000", TRICKLE_SLICE_BUDGET_MS: "2000" },
      /^TRICKLE_LEASE_TTL_MS .*TRICKLE_SLICE_BUDGET_MS/,
    ],
    [{ TRICKLE_SNAPSHOT_TTL_MS: "x" }, /^TRICKLE_SNAPSHOT_TTL_MS /],
    [{ TRICKLE_MIGRATIONS: "nope_v1" }, /^TRICKLE_MIGRATIONS: unknown migration nope_v1/],
  ])("rejects %j naming the variable", (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it("never repeats a secret in an error", () => {
    for (const name of ["ADMIN_TOKEN", "CRON_SECRET", "DATABASE_AUTH_TOKEN"]) {
      const secret = "s3cr3t value-with-space";
      let message = "";
      try {
        loadConfig({ [name]: secret });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(new RegExp(`^${name} must not contain whitespace`));
      expect(message).not.toContain("s3cr3t");
    }
  });
});
