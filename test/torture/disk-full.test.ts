/**
 * Disk full, CI-sized: on a small tmpfs filled up mid-run (where this machine allows mounting one; otherwise with
 * SQLITE_FULL injected at the client boundary, which the second test always does) the run holds with the
 * reason visible and status `running`, continues once space returns, and ends exact and uncorrupted.
 */
import { describe, expect, it } from "vitest";
import { verdict } from "../../torture/common.ts";
import { diskFullScenario } from "../../torture/disk-full.ts";

describe("disk full", () => {
  it("pauses with SQLITE_FULL as the reason and resumes when space returns (tmpfs where possible)", async () => {
    const result = await diskFullScenario({
      kills: 25,
      rows: 10_000,
      episodes: 2,
      deadline: Date.now() + 50_000,
      seed: 3,
      progress: () => {},
    });
    expect(verdict(result)).toEqual({ problems: [], lost: 0, doubleApplies: 0, fiveXX: 0 });
    expect(result.faults).toBe(2);
    expect(result.rowsVerified).toBe(10_000);
  });

  it("the same with SQLITE_FULL injected at the client boundary", async () => {
    const result = await diskFullScenario({
      kills: 25,
      rows: 6_000,
      episodes: 2,
      forceInjected: true,
      deadline: Date.now() + 50_000,
      seed: 4,
      progress: () => {},
    });
    expect(verdict(result)).toEqual({ problems: [], lost: 0, doubleApplies: 0, fiveXX: 0 });
    expect(result.notes.join(" ")).toMatch(/injected/);
    expect(result.faults).toBe(2);
  });
});
