/**
 * Remote faults, CI-sized: two runners on `@libsql/client/web` through the Hrana test server while it answers
 * 5xx, drops connections, delays responses (before or after running the request) and restarts on the same file
 * — the non-idempotent counter migration ends with every row changed exactly once, and the run completes.
 */
import { describe, expect, it } from "vitest";
import { verdict } from "../../torture/common.ts";
import { remoteFaultsScenario } from "../../torture/remote-faults.ts";

describe("remote faults scenario", () => {
  it("no double-apply, no lost step, completion through 5xx, drops, delays and server restarts", async () => {
    const result = await remoteFaultsScenario({
      kills: 25,
      rows: 20_000,
      restarts: 3,
      deadline: Date.now() + 40_000,
      seed: 1725,
      progress: () => {},
    });
    expect(verdict(result)).toEqual({ problems: [], lost: 0, doubleApplies: 0, fiveXX: 0 });
    expect(result.rowsVerified).toBe(20_000);
    // Restarts are spread over the run's progress; the last one may come too late for a run that ends first.
    const restarts = Number(/(\d+) server restarts/.exec(result.notes.join(" "))?.[1]);
    expect(restarts).toBeGreaterThanOrEqual(2);
    expect(result.faults).toBeGreaterThanOrEqual(10);
  });
});
