/**
 * The pause between steps is always a turn of the event loop, even with `yieldMs: 0`: local libSQL calls
 * answer without one, and the binding frees finished statements only there (a slice that never yields keeps
 * every statement it ran, ~40 KB per step), and the engine thread's messages are handled there.
 */
import { afterEach, expect, it } from "vitest";
import { Runner } from "../../src/engine/runner.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import { counterMigration, createCounterTable } from "../helpers/engine.ts";

let db: TempDb;
afterEach(() => db?.cleanup());

it("gives the event loop a turn between steps, even with yieldMs 0", async () => {
  db = tempDb();
  const client = db.open();
  await createCounterTable(
    client,
    Array.from({ length: 40 }, (_, i) => BigInt(i + 1)),
  );
  const runner = new Runner({
    client,
    migrations: [counterMigration()],
    tuning: { initialBatch: 4, maxBatch: 4, yieldMs: 0 },
  });
  let turns = 0;
  const ticker = setInterval(() => turns++, 0);
  const atStep: number[] = [];
  runner.on((event) => {
    if (event.type === "step") atStep.push(turns);
  });
  try {
    await runner.runUntilDone();
  } finally {
    clearInterval(ticker);
  }
  expect(atStep.length).toBeGreaterThanOrEqual(10);
  for (let i = 1; i < atStep.length; i++) expect(atStep[i]).toBeGreaterThan(atStep[i - 1]!);
});
