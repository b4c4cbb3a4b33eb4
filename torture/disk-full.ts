/**
 * Disk full: a backfill that grows the database (each row gets a 400-byte blob) runs on a small tmpfs that is
 * filled up mid-run with a filler file. SQLite answers SQLITE_FULL; the run must hold — status `running`, the
 * reason naming SQLITE_FULL — and continue once the filler is deleted, twice; at the end every row is changed
 * exactly once and `PRAGMA integrity_check` says ok.
 *
 * A tmpfs needs root and permission to mount (a container may refuse). Without it the scenario falls back to
 * injecting SQLITE_FULL errors at the client boundary (torture/faulty-client.ts) for the same periods, and says
 * so in its notes.
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { Runner } from "../src/engine/runner.ts";
import { StateStore } from "../src/engine/state-store.ts";
import { defineMigration } from "../src/migrations/define.ts";
import {
  check,
  describeError,
  newResult,
  runScenario,
  type ScenarioOptions,
  type ScenarioResult,
  scalar,
  sleep,
  timeIsUp,
  waitUntil,
  within,
} from "./common.ts";
import { FaultInjector, faultError } from "./faulty-client.ts";
import { judgeCounters } from "./many-runners.ts";

/** Non-idempotent like the counter migrations, and it makes the database grow. */
export const tortureGrowV1 = defineMigration({
  name: "torture_grow_v1",
  description: "torture: n = n + 1 and a 400-byte blob on every row",
  table: "grow",
  filter: "1",
  verify: "n = 0",
  set: "n = n + 1, pad = randomblob(400)",
});

const NAME = tortureGrowV1.name;
const FS_BYTES = 24 * 1024 * 1024;
/** Space left free when the disk is "filled": a few steps' worth, so the run hits the wall soon after. */
const MARGIN_BYTES = 256 * 1024;

export interface DiskFullOptions extends ScenarioOptions {
  readonly rows?: number;
  /** Full-disk episodes (default 2). */
  readonly episodes?: number;
  /** Skip the tmpfs even where it would work (to test the fallback). */
  readonly forceInjected?: boolean;
}

/** Mounts a tmpfs of `bytes` on a fresh directory, or returns undefined if this machine does not allow it. */
function mountTmpfs(bytes: number): string | undefined {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "trickle-diskfull-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir], { stdio: "ignore" });
    return dir;
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
}

function unmount(dir: string): void {
  try {
    execFileSync("umount", [dir], { stdio: "ignore" });
  } catch {
    execFileSync("umount", ["-l", dir], { stdio: "ignore" }); // something still holds a file open
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Writes zeros into `path` until only `margin` bytes are free on its filesystem (or the disk is full). */
function fill(path: string, margin: number): void {
  const stats = statfsSync(join(path, ".."));
  const free = stats.bavail * stats.bsize;
  const chunk = Buffer.alloc(64 * 1024);
  const fd = openSync(path, "w");
  try {
    for (let left = free - margin; left > 0; left -= chunk.length) {
      try {
        writeSync(fd, chunk, 0, Math.min(chunk.length, left));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOSPC") break;
        throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
}

async function createGrowTable(client: Client, rows: number): Promise<void> {
  await client.execute("PRAGMA journal_mode=WAL");
  await client.batch(
    [
      "CREATE TABLE grow (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0, pad BLOB)",
      {
        sql: "WITH RECURSIVE k(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM k WHERE id < ?) INSERT INTO grow (id) SELECT id FROM k",
        args: [BigInt(rows)],
      },
    ],
    "write",
  );
}

async function histogram(client: Client): Promise<Record<string, bigint>> {
  const result = await client.execute("SELECT CAST(n AS TEXT) AS n, COUNT(*) AS c FROM grow GROUP BY n");
  return Object.fromEntries(result.rows.map((r) => [String(r.n), BigInt(String(r.c))]));
}

export async function diskFullScenario(options: DiskFullOptions): Promise<ScenarioResult> {
  const result = newResult(
    "disk full",
    "the database's filesystem fills up mid-run (tmpfs + filler file), twice",
  );
  let mounted: string | undefined;
  let dir: string | undefined;
  const clients: Client[] = [];
  return runScenario(
    result,
    async () => {
      mounted = options.forceInjected ? undefined : mountTmpfs(FS_BYTES);
      dir = mounted ?? mkdtempSync(join(tmpdir(), "trickle-diskfull-"));
      const mode = mounted ? "tmpfs" : "injected";
      result.notes.push(
        mounted
          ? `a ${FS_BYTES / 1024 / 1024} MiB tmpfs filled to ${MARGIN_BYTES / 1024} KiB free`
          : "no tmpfs could be mounted here: SQLITE_FULL injected at the client boundary instead",
      );
      const path = join(dir, "grow.db");
      const open = (timeout: number) => {
        const client = createClient({ url: `file:${path}`, intMode: "bigint", timeout });
        clients.push(client);
        return client;
      };
      const monitor = open(5_000);
      const rows = options.rows ?? 16_000;
      const episodes = options.episodes ?? 2;
      await createGrowTable(monitor, rows);
      const injector = new FaultInjector({ random: Math.random, rate: 0, afterRate: 0, kinds: [] });
      const runnerClient = mode === "tmpfs" ? open(100) : injector.wrap(open(100));
      const runner = new Runner({
        client: runnerClient,
        migrations: [tortureGrowV1],
        tuning: {
          initialBatch: 50,
          maxBatch: 100,
          yieldMs: 5,
          sliceBudgetMs: 1_000,
          leaseTtlMs: 10_000,
          retryMinMs: 20,
          retryMaxMs: 200,
        },
        owner: "disk-full-runner",
      });
      result.runs++;
      const fullRetries: string[] = [];
      const otherRetries = new Set<string>();
      let steps = 0;
      const failures: string[] = [];
      runner.on((event) => {
        if (event.type === "step") steps++;
        if (event.type === "failed") failures.push(event.message);
        if (event.type === "retrying") {
          if (/SQLITE_FULL|disk is full/i.test(`${event.code} ${event.message}`))
            fullRetries.push(event.code);
          else otherRetries.add(`${event.code}: ${event.message}`);
        }
      });
      const store = new StateStore(monitor);
      const run = runner.runUntilDone({ idleWaitMs: 20 });
      run.catch(() => {}); // awaited below

      const filler = join(dir, "filler");
      for (let episode = 0; episode < episodes; episode++) {
        if (timeIsUp(result, options, episode, episodes, "full-disk episodes")) break;
        await waitUntil("a few steps", () => steps >= 10 * (episode + 1), 60_000);
        options.progress(`episode ${episode + 1}/${episodes}: filling the disk`);
        const retriesBefore = fullRetries.length;
        if (mode === "tmpfs") fill(filler, MARGIN_BYTES);
        else
          injector.persistent = { error: () => faultError("full"), match: (call) => call.method === "batch" };
        await waitUntil("SQLITE_FULL", () => fullRetries.length > retriesBefore, 60_000);
        // Held for a while: the run must stay `running` with the reason visible, not fail.
        const statuses = new Set<string>();
        const reasons = new Set<string>();
        for (let i = 0; i < 10; i++) {
          await sleep(150);
          statuses.add((await store.get(NAME))?.status ?? "missing");
          const reason = runner.state().find((s) => s.name === NAME)?.reason;
          if (reason) reasons.add(reason.split(":")[0]!);
        }
        result.faults++;
        check(
          result,
          statuses.size === 1 && statuses.has("running"),
          `while full the status was ${[...statuses].join(", ")}`,
        );
        check(
          result,
          reasons.has("SQLITE_FULL"),
          `while full the reason was ${[...reasons].join(", ") || "not set"}`,
        );
        options.progress(`episode ${episode + 1}/${episodes}: space returns`);
        const stepsBefore = steps;
        if (mode === "tmpfs") rmSync(filler, { force: true });
        else injector.persistent = undefined;
        try {
          await waitUntil("a step after space returned", () => steps > stepsBefore, 30_000);
        } catch (error) {
          result.problems.push(
            `episode ${episode + 1}: no progress after space returned (${describeError(error)}); last errors: ${[...otherRetries].slice(-3).join(" | ")}`,
          );
          throw error;
        }
      }
      options.progress("finishing the run");
      await within("the run", 120_000, run);
      check(result, failures.length === 0, `the migration failed: ${failures.join("; ")}`);
      const row = await store.get(NAME);
      check(result, row?.status === "done", `status ${row?.status} (${row?.error ?? row?.reason}), not done`);
      check(
        result,
        row?.rowsProcessed === BigInt(rows),
        `rows_processed ${row?.rowsProcessed}, expected ${rows}`,
      );
      judgeCounters(result, await histogram(monitor), rows);
      const padded = await scalar(monitor, "SELECT COUNT(*) FROM grow WHERE length(pad) = 400");
      check(result, padded === BigInt(rows), `${padded} of ${rows} rows got their blob`);
      const integrity = await monitor.execute("PRAGMA integrity_check");
      check(
        result,
        String(integrity.rows[0]?.[0]) === "ok",
        `integrity_check: ${String(integrity.rows[0]?.[0])}`,
      );
      if (otherRetries.size > 0)
        result.notes.push(`other transient errors seen: ${[...otherRetries].join(" | ")}`);
    },
    () => {
      for (const client of clients) client.close();
      if (mounted) unmount(mounted);
      else if (dir) rmSync(dir, { recursive: true, force: true });
    },
  );
}
