/**
 * Bun (the `bun` npm package's binary) running src/bun.ts: `Bun.serve` for the app and the in-process timer
 * loop for ticks, on an embedded file database (the native libSQL addon through Bun's Node-API support). It
 * backfills a CoreScope database to the one-shot result, serves /api/healthz, answers the HTTP tick, and stops
 * cleanly on SIGTERM.
 */
import { afterEach, describe, expect, it } from "vitest";
import { lastSeenById, type TempDb, tempDb } from "../helpers/db.ts";
import { stopAllChildren } from "./helpers/child.ts";
import { bunBinary } from "./helpers/runtimes.ts";
import {
  CRON_SECRET,
  checkHttpTick,
  expectDone,
  healthWhenDone,
  seededCoreScope,
  startRuntime,
  stopGracefully,
} from "./helpers/smoke.ts";

let db: TempDb | undefined;

afterEach(async () => {
  await stopAllChildren();
  db?.cleanup();
  db = undefined;
});

describe("Bun: src/bun.ts", () => {
  it("backfills an embedded CoreScope database, serves /api/healthz, ticks over HTTP, stops on SIGTERM", async () => {
    db = tempDb();
    const { local, oracle } = await seededCoreScope(db);
    const run = await startRuntime("bun", bunBinary(), ["src/bun.ts"], {
      DATABASE_URL: db.url,
      CRON_SECRET,
      TRICKLE_SLICE_BUDGET_MS: "200",
      TRICKLE_STEP_TARGET_MS: "10",
    });
    const health = await healthWhenDone(run);
    expectDone(health);
    await checkHttpTick(run);
    await stopGracefully(run);
    expect(await lastSeenById(local)).toEqual(oracle);
  });
});
