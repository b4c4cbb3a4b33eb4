/**
 * trickle for Deno users, with the real `deno` from npm (the `deno` devDependency):
 * - deno.json's JSR metadata publishes: `deno publish --dry-run` type-checks the exports and passes the
 *   "no slow types" check (no `--allow-slow-types`). Dry runs work offline: npm dependencies come from
 *   node_modules.
 * - `deno task start` (no flags to remember) serves and backfills an embedded CoreScope database, then stops on
 *   SIGTERM with exit code 0.
 */
import { afterEach, describe, expect, it } from "vitest";
import { spawnChild, stopAllChildren, tail } from "../edge/helpers/child.ts";
import { denoBinary } from "../edge/helpers/runtimes.ts";
import {
  expectDone,
  healthWhenDone,
  seededCoreScope,
  startRuntime,
  stopGracefully,
} from "../edge/helpers/smoke.ts";
import { REPO_ROOT } from "../edge/helpers/wrangler.ts";
import { lastSeenById, type TempDb, tempDb } from "../helpers/db.ts";

let db: TempDb | undefined;

afterEach(async () => {
  await stopAllChildren();
  db?.cleanup();
  db = undefined;
});

describe("Deno: deno.json", () => {
  it("publishes to JSR: `deno publish --dry-run` passes with no slow types", async () => {
    const child = spawnChild(
      "deno publish --dry-run",
      denoBinary(),
      ["publish", "--dry-run", "--allow-dirty"],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1" },
      },
    );
    const exit = await child.exited;
    const output = child.output();
    expect(exit, tail(output)).toEqual({ code: 0, signal: null });
    expect(output).toContain("Success Dry run complete");
    expect(output).toContain("Checking for slow types");
    expect(output).not.toMatch(/error\[|--allow-slow-types|This package contains errors/);
    // The library, its entries and their sources; no CLI, tests or tooling.
    expect(output).toContain("src/index.ts");
    expect(output).toContain("src/worker.ts");
    expect(output).toContain("src/node/index.ts");
    expect(output).not.toMatch(/\/(test|torture|bench|src\/cli)\//);
  });

  it("`deno task start` backfills an embedded database, with no flags, and stops on SIGTERM", async () => {
    db = tempDb();
    const { local, oracle } = await seededCoreScope(db);
    const run = await startRuntime("deno task start", denoBinary(), ["task", "start"], {
      DATABASE_URL: db.url,
      TRICKLE_SLICE_BUDGET_MS: "200",
      TRICKLE_STEP_TARGET_MS: "10",
    });
    expectDone(await healthWhenDone(run));
    await stopGracefully(run);
    expect(await lastSeenById(local)).toEqual(oracle);
  });
});
