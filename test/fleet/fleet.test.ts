/**
 * Fleets (design.md, "Beyond one database"): one backfill across many tenant databases, each exactly-once on its
 * own `_async_migrations`, the fleet's progress derived from those rows. Real files, a real read-only database, a
 * real unreachable server address, real CLI processes, SIGKILL of the fleet runner mid-wave.
 */
import { closeSync, existsSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_TUNING } from "../../src/engine/tuning.ts";
import { fleetStatus, parseFleetFile, runFleet } from "../../src/fleet/fleet.ts";
import { FleetViewCache } from "../../src/fleet/view.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import { openDatabase } from "../../src/node/database.ts";
import { startNodeServer } from "../../src/node/server.ts";
import { checkDatabaseUrl } from "../../src/settings.ts";
import { cli, startCli } from "../helpers/cli.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  lastSeenById,
  oneShotResult,
  prng,
  sparseTransmissions,
  type TempDb,
  tempDb,
} from "../helpers/db.ts";
import { countersById, createCounterTable } from "../helpers/engine.ts";

let db: TempDb | undefined;
afterEach(() => {
  db?.cleanup();
  db = undefined;
});

const open = async (url: string): Promise<Client> => createClient({ url, intMode: "bigint", timeout: 2000 });
/** How the CLI opens a tenant: never creating a database that is not there. */
const openTenant = (url: string) => openDatabase({ url, busyTimeoutMs: 2000 }, { create: false });
/**
 * Makes a database file read-only for every process, root included: SQLite treats a file whose header says "write
 * version 3" (byte 18; read version 1, byte 19) as read-only ("If the read version is 1 or 2 but the write
 * version is greater than 2, then the database file must be treated as read-only", sqlite.org/fileformat.html,
 * section 1.3.3), the way it treats a file on a read-only mount. `chmod` would not do: the tests run as root.
 * The file must be in rollback-journal mode (a WAL file says version 2 in both bytes).
 */
function makeReadOnly(path: string): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, Uint8Array.of(3, 1), 0, 2, 18);
  } finally {
    closeSync(fd);
  }
}
const SETTINGS = {
  tuning: { ...DEFAULT_TUNING, yieldMs: 0 },
  throttle: {},
  stuckAfterMs: 600_000,
  webhook: undefined,
  tickMs: 1000,
  snapshotTtlMs: 1000,
};

describe("a fleet of 200 tenant databases", () => {
  it("brings every healthy tenant to the one-shot's result and reports the broken ones with their reason", async () => {
    db = tempDb();
    const urls: string[] = [];
    const oracles = new Map<string, string[]>();
    const broken = new Map<string, RegExp>();
    let readOnly = { url: "", rows: [] as string[] };
    for (let i = 0; i < 200; i++) {
      const path = join(db.dir, `tenant-${i}.db`);
      const url = `file:${path}`;
      urls.push(url);
      if (i === 150) {
        broken.set(url, /no such file|unable to open|no database/i); // listed, never created
        continue;
      }
      const client = createClient({ url, intMode: "bigint" });
      if (i === 120) {
        // A healthy CoreScope tenant with work to do, on a database nobody may write to.
        await createCoreScopeSchema(client);
        await insertCoreScopeRows(client, sparseTransmissions(prng(i + 1), 30));
        await client.execute("PRAGMA journal_mode=DELETE");
        readOnly = { url, rows: await lastSeenById(client) };
        client.close();
        makeReadOnly(path);
        continue;
      }
      if (i % 40 === 7) {
        await client.execute("CREATE TABLE unrelated (a)"); // a tenant without the app's tables
      } else {
        await createCoreScopeSchema(client);
        // Some tenants are empty, the others small and different from each other.
        if (i % 10 !== 3) await insertCoreScopeRows(client, sparseTransmissions(prng(i + 1), 5 + (i % 17)));
        oracles.set(url, await oneShotResult(client, db));
      }
      client.close();
    }
    const unreachable = "http://127.0.0.1:9"; // nothing listens on the discard port
    urls.push(unreachable);
    broken.set(unreachable, /fetch failed|ECONNREFUSED|connect/i);

    const waves: number[] = [];
    const result = await runFleet({
      urls,
      open: openTenant,
      settings: SETTINGS,
      migrations: [txLastSeenBackfillV1],
      canary: 3,
      concurrency: 16,
      continueOnError: true,
      untilDone: true,
      owner: "fleet-test",
      onWave: (_wave, wave) => waves.push(wave.length),
    });
    expect(waves[0]).toBe(3); // the canaries ran first, on their own
    expect(waves.slice(1).every((n) => n <= 16)).toBe(true);
    for (const [url, expected] of oracles) {
      const client = await open(url);
      expect(await lastSeenById(client), url).toEqual(expected);
      client.close();
    }
    const byUrl = new Map(result.tenants.map((t, i) => [urls[i]!, t]));
    for (const [url, reason] of broken) {
      expect(byUrl.get(url)?.status, url).toBe("unreachable");
      expect(byUrl.get(url)?.detail, url).toMatch(reason);
    }
    const withoutTables = urls.filter((_, i) => i % 40 === 7);
    for (const url of withoutTables) {
      expect(byUrl.get(url)).toMatchObject({ status: "pending" });
      expect(byUrl.get(url)?.detail).toMatch(/does not exist in this database/);
    }
    // The read-only tenant can be reached and read, so it is not "unreachable": it failed, saying why, and
    // nothing in it changed.
    expect(byUrl.get(readOnly.url)).toMatchObject({ status: "failed" });
    expect(byUrl.get(readOnly.url)?.detail).toMatch(/SQLITE_READONLY.*readonly database/);
    const readOnlyClient = await open(readOnly.url);
    expect(await lastSeenById(readOnlyClient)).toEqual(readOnly.rows);
    readOnlyClient.close();
    expect(result.summary).toMatchObject({
      total: 201,
      done: oracles.size,
      unreachable: 2,
      pending: withoutTables.length,
      failed: 1,
    });
    // The fleet's status is read from the tenants themselves, and agrees.
    const status = await fleetStatus({
      urls: [...oracles.keys()],
      open,
      names: [txLastSeenBackfillV1.name],
    });
    expect(status.every((t) => t.status === "done")).toBe(true);

    // The same fleet through the CLI (a second run: the done tenants have nothing left to do): the exit code says
    // that not every tenant is done, and the JSON names the broken ones with their reasons.
    const file = join(db.dir, "fleet.txt");
    writeFileSync(file, `${urls.join("\n")}\n`);
    const flags = ["--until-done", "--continue-on-error", "--concurrency", "16", "--json"];
    const rerun = await cli(["fleet", "run", "--databases", file, ...flags], {});
    expect(rerun.code, rerun.stderr).toBe(1);
    const json = JSON.parse(rerun.stdout) as {
      summary: Record<string, number>;
      tenants: { database: string; status: string; detail: string | null }[];
    };
    expect(json.summary).toMatchObject({ total: 201, done: oracles.size, failed: 1, unreachable: 2 });
    expect(json.tenants[urls.indexOf(readOnly.url)]).toMatchObject({
      status: "failed",
      detail: expect.stringMatching(/SQLITE_READONLY.*readonly database/),
    });
    for (const [url, reason] of broken)
      expect(json.tenants[urls.indexOf(url)]).toMatchObject({
        status: "unreachable",
        detail: expect.stringMatching(reason),
      });
    for (const [url, expected] of oracles) {
      const client = await open(url);
      expect(await lastSeenById(client), url).toEqual(expected);
      client.close();
    }
  }, 300_000);
});

describe("fleet waves", () => {
  it("stop after a failed canary unless told to continue", async () => {
    db = tempDb();
    const urls = ["file:/nonexistent-dir/canary.db", `file:${join(db.dir, "b.db")}`];
    const client = createClient({ url: urls[1]!, intMode: "bigint" });
    await createCoreScopeSchema(client);
    await insertCoreScopeRows(client, sparseTransmissions(prng(5), 20));
    client.close();
    const base = {
      urls,
      open: openTenant,
      settings: SETTINGS,
      migrations: [txLastSeenBackfillV1],
      owner: "w",
    };
    const stopped = await runFleet({ ...base, untilDone: true });
    expect(stopped.stoppedBecause).toMatch(/canary/);
    expect(stopped.tenants[1]).toMatchObject({ status: "pending", detail: "not reached" });
    expect(stopped.summary).toMatchObject({ unreachable: 1, skipped: 1 });
    const continued = await runFleet({ ...base, untilDone: true, continueOnError: true });
    expect(continued.stoppedBecause).toBeNull();
    expect(continued.tenants[1]?.status).toBe("done");
  });

  it("wait for a tenant whose application holds the write lock, instead of calling it unreachable", async () => {
    db = tempDb();
    const url = `file:${join(db.dir, "busy.db")}`;
    const setup = createClient({ url, intMode: "bigint" });
    await createCoreScopeSchema(setup);
    await insertCoreScopeRows(setup, sparseTransmissions(prng(9), 40));
    const expected = await oneShotResult(setup, db);
    setup.close();
    // The application's write transaction holds the lock while the fleet starts on the tenant.
    const app = createClient({ url, intMode: "bigint" });
    const holding = await app.transaction("write");
    await holding.execute(
      "INSERT INTO observations (transmission_id, timestamp, path_json) VALUES (1, 1, '[]')",
    );
    // The runner's client, watched: the lock is released once one of its writes has met SQLITE_BUSY.
    let sawBusy: () => void = () => {};
    const busy = new Promise<void>((resolve) => {
      sawBusy = resolve;
    });
    const watched = async (tenant: string): Promise<Client> => {
      const client = await openDatabase({ url: tenant, busyTimeoutMs: 20 }, { create: false });
      const watch = (thrown: unknown): never => {
        if (/SQLITE_BUSY/.test(String(thrown))) sawBusy();
        throw thrown;
      };
      return new Proxy(client, {
        get(target, property) {
          const value: unknown = Reflect.get(target, property, target);
          if (typeof value !== "function") return value;
          const method = value as (...args: unknown[]) => unknown;
          if (property !== "execute" && property !== "batch") return method.bind(target);
          return (...args: unknown[]) => (method.apply(target, args) as Promise<unknown>).catch(watch);
        },
      });
    };
    const run = runFleet({
      urls: [url],
      open: watched,
      settings: SETTINGS,
      migrations: [txLastSeenBackfillV1],
      untilDone: true,
      owner: "busy-test",
    });
    await busy;
    await holding.rollback();
    app.close();
    const result = await run;
    expect(result.tenants[0]).toMatchObject({ status: "done" });
    const client = await open(url);
    expect(await lastSeenById(client)).toEqual(expected);
    client.close();
  });

  it("parses fleet files: comments, blanks, duplicates and bad URLs named by line", () => {
    expect(parseFleetFile("# tenants\n\nfile:a.db\n  libsql://x.example.com  \n", checkDatabaseUrl)).toEqual([
      "file:a.db",
      "libsql://x.example.com",
    ]);
    expect(() => parseFleetFile("file:a.db\nfile:a.db\n", checkDatabaseUrl)).toThrow(/line 2: .* twice/);
    expect(() => parseFleetFile("file:a.db\nftp://x\n", checkDatabaseUrl)).toThrow(/line 2: .*ftp/);
    expect(() => parseFleetFile("# nothing\n", checkDatabaseUrl)).toThrow(/lists no database/);
  });
});

describe("trickle fleet (CLI)", () => {
  const TENANTS = 8;
  const ROWS = 1000;
  it("a fleet run killed mid-wave resumes where each tenant stands: every row changed exactly once", async () => {
    db = tempDb();
    const urls: string[] = [];
    for (let i = 0; i < TENANTS; i++) {
      const url = `file:${join(db.dir, `c-${i}.db`)}`;
      const client = createClient({ url, intMode: "bigint" });
      await createCounterTable(
        client,
        Array.from({ length: ROWS }, (_, k) => BigInt(k + 1)),
      );
      client.close();
      urls.push(url);
    }
    const file = join(db.dir, "fleet.txt");
    const config = join(db.dir, "m.json");
    writeFileSync(file, `# the tenants\n${urls.join("\n")}\n`);
    // Not idempotent: a range applied twice shows as n = 2.
    writeFileSync(
      config,
      JSON.stringify({ migrations: [{ name: "counter_v1", table: "t", key: "id", set: "n = n + 1" }] }),
    );
    // A lease short enough that the resumed run soon takes over the tenants the killed run held. The default
    // step target: a tiny one makes a loaded machine take a step per key.
    const env = { TRICKLE_CONFIG: config, TRICKLE_MIGRATIONS: "counter_v1", TRICKLE_LEASE_TTL_MS: "3000" };
    const args = ["fleet", "run", "--databases", file, "--until-done", "--canary", "1", "--concurrency", "2"];

    // Long pauses between steps for the run that is killed: the rest of the fleet then takes many seconds, so the
    // kill lands mid-wave however late this process reads the child's output.
    const child = startCli(args, { ...env, TRICKLE_YIELD_MS: "300" });
    let stderr = "";
    await new Promise<void>((resolve, reject) => {
      child.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        // Mid-wave: after the canary and at least one more tenant finished.
        if ((stderr.match(/: done/g) ?? []).length >= 2) resolve();
      });
      child.on("exit", () => reject(new Error(`the fleet run ended before it was killed:\n${stderr}`)));
    });
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("close", resolve));

    const partial = await cli(["fleet", "status", "--databases", file, "--json"], env);
    const before = JSON.parse(partial.stdout) as { summary: { done: number; total: number } };
    expect(before.summary.total).toBe(TENANTS);
    expect(before.summary.done).toBeLessThan(TENANTS);

    const resumed = await cli(args, env);
    expect(resumed.code, resumed.stderr).toBe(0);
    for (const url of urls) {
      const client = await open(url);
      const counters = [...(await countersById(client)).values()];
      client.close();
      expect(counters.length).toBe(ROWS);
      expect(
        counters.every((n) => n === 1n),
        url,
      ).toBe(true);
    }
    const after = await cli(["fleet", "status", "--databases", file, "--json"], env);
    expect(after.code).toBe(0);
    expect((JSON.parse(after.stdout) as { summary: { done: number } }).summary.done).toBe(TENANTS);
  }, 240_000);
});

describe("GET /api/fleet on the Node server", () => {
  it("serves every tenant's status from its own rows, read once per TTL, and 404 without a fleet", async () => {
    db = tempDb();
    const urls: string[] = [];
    for (let i = 0; i < 3; i++) {
      const url = `file:${join(db.dir, `f-${i}.db`)}`;
      urls.push(url);
      if (i === 2) continue; // listed, never created: unreachable
      const client = createClient({ url, intMode: "bigint" });
      await createCoreScopeSchema(client);
      await insertCoreScopeRows(client, sparseTransmissions(prng(i + 1), 50));
      client.close();
    }
    // The first tenant is backfilled (as a fleet run would), the second not yet.
    const done = await runFleet({
      urls: [urls[0]!],
      open: openTenant,
      settings: SETTINGS,
      migrations: [txLastSeenBackfillV1],
      untilDone: true,
      owner: "fleet-test",
    });
    expect(done.tenants[0]?.status).toBe("done");
    const file = join(db.dir, "fleet.txt");
    writeFileSync(file, `# three tenants\n${urls.join("\n")}\n`);

    const server = await startNodeServer({
      env: { DATABASE_URL: `file:${join(db.dir, "own.db")}`, PORT: "0", TRICKLE_FLEET_DATABASES: file },
      log: () => {},
    });
    try {
      const response = await fetch(`${server.url}api/fleet`);
      expect(response.status).toBe(200);
      const body = (await response.json()) as {
        summary: Record<string, number>;
        tenants: {
          database: string;
          status: string;
          detail: string | null;
          migrations: { rowsProcessed: number }[];
        }[];
      };
      expect(body.summary).toMatchObject({ total: 3, done: 1, pending: 1, unreachable: 1, failed: 0 });
      expect(body.tenants.map((t) => t.status)).toEqual(["done", "pending", "unreachable"]);
      expect(body.tenants[0]?.migrations[0]?.rowsProcessed).toBeGreaterThan(0);
      expect(body.tenants[2]?.detail).toMatch(/no such file|unable to open|no database/i);
      // A tenant that is listed but missing is reported, never created.
      expect(existsSync(join(db.dir, "f-2.db"))).toBe(false);
    } finally {
      await server.stop();
    }

    // Without a fleet file: a 404 problem naming the setting.
    const plain = await startNodeServer({
      env: { DATABASE_URL: `file:${join(db.dir, "own.db")}`, PORT: "0" },
      log: () => {},
    });
    try {
      const response = await fetch(`${plain.url}api/fleet`);
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({
        status: 404,
        detail: expect.stringMatching(/TRICKLE_FLEET_DATABASES/),
      });
    } finally {
      await plain.stop();
    }
    // A bad fleet file stops the start-up, naming the variable and the line.
    writeFileSync(file, "file:a.db\nftp://nope\n");
    await expect(
      startNodeServer({
        env: { DATABASE_URL: `file:${join(db.dir, "own.db")}`, PORT: "0", TRICKLE_FLEET_DATABASES: file },
        log: () => {},
      }),
    ).rejects.toThrow(/TRICKLE_FLEET_DATABASES .*line 2/);
  }, 120_000);

  it("reads the tenants at most once per TTL, one read shared by concurrent callers", async () => {
    let now = 0;
    let reads = 0;
    const cache = new FleetViewCache({
      read: async () => {
        reads++;
        return [{ database: "file:a.db", status: "done" as const, detail: null, migrations: [] }];
      },
      ttlMs: 5_000,
      now: () => now,
    });
    const views = await Promise.all(Array.from({ length: 20 }, () => cache.get()));
    expect(reads).toBe(1);
    expect(views[0]?.summary).toMatchObject({ total: 1, done: 1 });
    now = 4_999;
    await cache.get();
    expect(reads).toBe(1);
    now = 5_000;
    await cache.get();
    expect(reads).toBe(2);
  });
});
