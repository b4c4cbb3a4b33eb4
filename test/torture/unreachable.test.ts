/**
 * Database unreachable at start, CI-sized: the in-process service (what Workers, Deno and Bun run) and the Node
 * entry (`tsx src/node.ts`) are started against a remote database whose server is not up yet. Both must serve
 * `/api/healthz` 503 with the reason, and recover without a restart when the server comes up (and survive a
 * second outage mid-run), finishing with the one-shot statement's result.
 */
import { describe, expect, it } from "vitest";
import { verdict } from "../../torture/common.ts";
import { unreachableScenario } from "../../torture/unreachable.ts";

describe("database unreachable at start", () => {
  it("serves 503 with the reason and recovers without a restart (in-process service and npm start)", async () => {
    const result = await unreachableScenario({
      kills: 25,
      transmissions: 5_000,
      deadline: Date.now() + 50_000,
      seed: 7,
      progress: () => {},
    });
    expect(verdict(result)).toEqual({ problems: [], lost: 0, doubleApplies: 0, fiveXX: 0 });
    expect(result.rowsVerified).toBe(10_000);
    expect(result.notes.join(" ")).toMatch(/healthz while down: 503 could not read migration state/);
  });
});
