/**
 * Deno (the `deno` npm package's binary) running src/deno.ts: `Deno.serve` for the app, the timer loop and
 * `Deno.cron` (registered with --unstable-cron) for ticks.
 * - On an embedded file database (the native libSQL addon through Deno's npm compatibility) it backfills a
 *   CoreScope database to the one-shot result, serves /api/healthz, answers the HTTP tick, and stops cleanly.
 * - With a remote URL it uses @libsql/client/web (what Deno Deploy needs) against the Hrana test server.
 * - Without --unstable-cron, or with an invalid `TRICKLE_DENO_CRON`, it refuses to start with a message saying so.
 */
import { afterEach, describe, expect, it } from "vitest";
import { lastSeenById, type TempDb, tempDb } from "../helpers/db.ts";
import { type HranaServer, startHranaServer } from "../hrana/server.ts";
import { spawnChild, stopAllChildren } from "./helpers/child.ts";
import { denoBinary } from "./helpers/runtimes.ts";
import {
  CRON_SECRET,
  checkHttpTick,
  expectDone,
  healthWhenDone,
  seededCoreScope,
  startRuntime,
  stopGracefully,
} from "./helpers/smoke.ts";
import { REPO_ROOT } from "./helpers/wrangler.ts";

const PERMISSIONS = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-ffi",
  "--allow-sys",
];

let db: TempDb | undefined;
let server: HranaServer | undefined;

afterEach(async () => {
  await stopAllChildren();
  await server?.close();
  db?.cleanup();
  server = undefined;
  db = undefined;
});

describe("Deno: src/deno.ts", () => {
  it("backfills an embedded CoreScope database, serves /api/healthz, ticks over HTTP, stops on SIGTERM", async () => {
    db = tempDb();
    const { local, oracle } = await seededCoreScope(db);
    const run = await startRuntime(
      "deno (file)",
      denoBinary(),
      ["run", "--unstable-cron", ...PERMISSIONS, "src/deno.ts"],
      {
        DATABASE_URL: db.url,
        CRON_SECRET,
        TRICKLE_SLICE_BUDGET_MS: "200",
        TRICKLE_STEP_TARGET_MS: "10",
      },
    );
    expect(run.child.output()).toContain('Deno.cron "* * * * *"');
    const health = await healthWhenDone(run);
    expectDone(health);
    await checkHttpTick(run);
    await stopGracefully(run);
    expect(await lastSeenById(local)).toEqual(oracle);
  });

  it("uses @libsql/client/web for a remote database (the Deno Deploy path)", async () => {
    db = tempDb();
    const { local, oracle } = await seededCoreScope(db);
    server = await startHranaServer({ dbPath: db.path, authToken: "hrana-token-0123456789" });
    const run = await startRuntime(
      "deno (remote)",
      denoBinary(),
      ["run", "--unstable-cron", "--allow-net", "--allow-env", "src/deno.ts"],
      {
        DATABASE_URL: server.url,
        DATABASE_AUTH_TOKEN: "hrana-token-0123456789",
        CRON_SECRET,
      },
    );
    expectDone(await healthWhenDone(run));
    expect(server.stats.pipelineRequests).toBeGreaterThan(0);
    await stopGracefully(run);
    expect(await lastSeenById(local)).toEqual(oracle);
  });

  it("refuses to start without --unstable-cron, saying which flag is missing", async () => {
    const child = spawnChild("deno (no cron flag)", denoBinary(), ["run", ...PERMISSIONS, "src/deno.ts"], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "",
        NO_COLOR: "1",
        DATABASE_URL: "file::memory:",
      },
    });
    const exit = await child.exited;
    expect(exit.code).toBe(1);
    expect(child.output()).toMatch(/--unstable-cron/);
    await child.stop();
  });

  it("refuses an invalid TRICKLE_DENO_CRON, naming the variable", async () => {
    const child = spawnChild(
      "deno (bad cron)",
      denoBinary(),
      ["run", "--unstable-cron", ...PERMISSIONS, "src/deno.ts"],
      {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "",
          NO_COLOR: "1",
          DATABASE_URL: "file::memory:",
          TRICKLE_DENO_CRON: "every minute",
        },
      },
    );
    const exit = await child.exited;
    expect(exit.code).toBe(1);
    expect(child.output()).toMatch(/trickle: cannot start: TRICKLE_DENO_CRON: /);
    await child.stop();
  });
});
