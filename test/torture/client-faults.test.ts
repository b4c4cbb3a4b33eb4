/**
 * Faults at the client boundary, CI-sized (the torture program runs the same scenario larger): transient
 * errors, timeouts and network exceptions injected into `execute`/`batch` before or after the call ran — the
 * latter being ambiguous commits — leave the non-idempotent counter migration exactly-once; a persistent
 * deterministic error fails it with its message; a retry through the control API continues from the cursor.
 */
import { describe, expect, it } from "vitest";
import { classifyError } from "../../src/engine/errors.ts";
import { clientFaultsScenario } from "../../torture/client-faults.ts";
import { verdict } from "../../torture/common.ts";
import { deterministicError, FaultInjector, faultError } from "../../torture/faulty-client.ts";
import { counterHistogram, createCounters } from "../fixtures/multiprocess.ts";
import { tempDb } from "../helpers/db.ts";

describe("the fault-injecting client", () => {
  it("throws errors the engine classifies as transient, and a deterministic one as deterministic", () => {
    for (const kind of ["busy", "full", "timeout", "fetch-failed", "reset"] as const)
      expect(classifyError(faultError(kind)).kind, kind).toBe("transient");
    expect(classifyError(deterministicError("CHECK constraint failed: x")).kind).toBe("deterministic");
  });

  it("an AFTER fault commits the write and still throws (the ambiguous commit)", async () => {
    const db = tempDb();
    try {
      const real = db.open();
      await createCounters(real, 10);
      const injector = new FaultInjector({ random: () => 0, rate: 1, afterRate: 1, kinds: ["reset"] });
      const faulty = injector.wrap(real);
      await expect(faulty.execute("UPDATE counters SET n = n + 1")).rejects.toThrow(/ECONNRESET/);
      expect(await counterHistogram(real)).toEqual({ "1": 10n });
      injector.options.afterRate = 0;
      await expect(faulty.batch(["UPDATE counters SET n = n + 1"], "write")).rejects.toThrow(/ECONNRESET/);
      expect(await counterHistogram(real)).toEqual({ "1": 10n }); // BEFORE: nothing ran
      expect(injector.injected.map((f) => f.timing)).toEqual(["after", "before"]);
    } finally {
      db.cleanup();
    }
  });
});

describe("client faults scenario", () => {
  it("retries through injected faults, fails on a deterministic error, and a control-API retry finishes exactly once", async () => {
    const result = await clientFaultsScenario({
      kills: 25,
      rows: 8_000,
      deadline: Date.now() + 50_000,
      seed: 20261124,
      progress: () => {},
    });
    expect(verdict(result)).toEqual({ problems: [], lost: 0, doubleApplies: 0, fiveXX: 0 });
    expect(result.rowsVerified).toBe(8_000);
    // Faults really were injected, ambiguous commits among them (see the scenario's own check).
    expect(result.faults).toBeGreaterThanOrEqual(20);
  });
});
