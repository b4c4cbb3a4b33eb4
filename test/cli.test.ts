/**
 * The `trickle` CLI as operators use it: real child processes (`tsx src/cli/main.ts …`) on real libSQL files.
 * Usage and configuration errors, the seed → verify → run → verify flow against the one-shot oracle,
 * `status --json`, control transitions and their exit codes, a failing migration, and SIGINT.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parseCommand, UsageError } from "../src/cli/args.ts";
import { formatCount, formatDuration, formatRate, renderBar } from "../src/cli/progress.ts";
import { databaseConfigFromEnv } from "../src/node/database.ts";
import { CLI } from "./helpers/cli.ts";
import { lastSeenById, oneShotResult, type TempDb, tempDb } from "./helpers/db.ts";

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function start(args: readonly string[], env: Record<string, string>): ChildProcess {
  // Only the settings under test: the developer's TRICKLE_* / DATABASE_* must not leak in.
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("TRICKLE_") && !k.startsWith("DATABASE_")),
  );
  return spawn(process.execPath, [...CLI, ...args], { env: { ...base, ...env } });
}

function finished(child: ChildProcess): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function cli(args: readonly string[], env: Record<string, string>): Promise<CliResult> {
  return finished(start(args, env));
}

interface StatusItem {
  name: string;
  status: string;
  rowsProcessed: number;
  rowsTotal: number;
  percent: number;
  rate: number;
  etaSeconds: number | null;
  leaseOwner: string | null;
  errorMessage: string | null;
  cursor: string | null;
  maxKey: string | null;
}

async function status(url: string): Promise<StatusItem[]> {
  const r = await cli(["status", "--json"], { DATABASE_URL: url });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusItem[];
}

interface StateRow {
  name: string;
  status: string;
  rowsProcessed: bigint;
  rowsTotal: bigint;
  leaseOwner: string | null;
  error: string | null;
}

/** `_async_migrations` read directly (cheaper than another CLI process where the CLI output is not the subject). */
async function stateRows(client: Client): Promise<StateRow[]> {
  const result = await client.execute(
    "SELECT name, status, rows_processed, rows_total, lease_owner, error FROM _async_migrations ORDER BY name",
  );
  return result.rows.map((r) => ({
    name: String(r.name),
    status: String(r.status),
    rowsProcessed: BigInt(r.rows_processed as bigint),
    rowsTotal: BigInt(r.rows_total as bigint),
    leaseOwner: r.lease_owner === null ? null : String(r.lease_owner),
    error: r.error === null ? null : String(r.error),
  }));
}

async function hasStateTable(client: Client): Promise<boolean> {
  const r = await client.execute("SELECT 1 FROM sqlite_master WHERE name = '_async_migrations'");
  return r.rows.length > 0;
}

describe("usage and configuration errors", () => {
  let db: TempDb;
  beforeAll(() => {
    db = tempDb();
  });
  afterAll(() => db.cleanup());

  test("bad commands, flags and values exit 2 with usage and a message naming what is wrong", async () => {
    const env = { DATABASE_URL: db.url };
    const cases: Array<[args: string[], message: RegExp]> = [
      [["frobnicate"], /unknown command "frobnicate"/],
      [["seed", "--bogus"], /unknown option --bogus for "seed"/],
      [["seed", "--transmissions"], /option --transmissions needs a value/],
      [["run", "--budget-ms", "12x"], /option --budget-ms must be an integer ≥ 1, got "12x"/],
      [["run", "--migrations", "nope_v1"], /--migrations: unknown migration nope_v1/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args, env)));
    results.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect(r.code, `trickle ${args.join(" ")}`).toBe(2);
      expect(r.stderr, `trickle ${args.join(" ")}`).toMatch(message);
      expect(r.stderr).toContain("Usage: npm run trickle");
    });
  });

  test("the parser rejects every malformed command line with a UsageError naming the problem", () => {
    const cases: Array<[args: string[], message: RegExp]> = [
      [[], /missing command/],
      [["--json"], /expected a command before --json/],
      [["seed", "--transmissions", "-5"], /--transmissions must be an integer ≥ 0, got "-5"/],
      [["seed", "--observations", "1.5"], /--observations must be an integer ≥ 0/],
      [["seed", "--legacy-fraction", "1.5"], /--legacy-fraction must be a number between 0 and 1/],
      [["seed", "--legacy-fraction", "abc"], /--legacy-fraction must be a number between 0 and 1/],
      [["seed", "--seed", "1", "--seed", "2"], /--seed given twice/],
      [["run", "--budget-ms", "0"], /--budget-ms must be an integer ≥ 1, got "0"/],
      [["run", "--until-done", "--migrations"], /--migrations needs a value/],
      [["status", "--json=yes"], /--json takes no value/],
      [["status", "-j"], /unknown option -j for "status"/],
      [["pause"], /"pause" needs <name>/],
      [["verify", "a", "b"], /unexpected argument "b" for "verify"/],
      [["toString"], /unknown command "toString"/],
    ];
    for (const [args, message] of cases) {
      expect(() => parseCommand(args), args.join(" ")).toThrow(UsageError);
      expect(() => parseCommand(args), args.join(" ")).toThrow(message);
    }
    expect(parseCommand(["seed"])).toEqual({
      name: "seed",
      transmissions: 71_000,
      observations: 1_500_000,
      legacyFraction: 0.9,
      seed: 1,
    });
    expect(
      parseCommand(["seed", "--transmissions=1_000", "--legacy-fraction", "0", "--seed", "-3"]),
    ).toMatchObject({
      transmissions: 1000,
      legacyFraction: 0,
      seed: -3,
    });
    expect(parseCommand(["run", "--until-done", "--budget-ms", "250", "--migrations", "all"])).toEqual({
      name: "run",
      untilDone: true,
      budgetMs: 250,
      migrations: "all",
    });
    expect(parseCommand(["retry", "x_v1"])).toEqual({
      name: "retry",
      migration: "x_v1",
      migrations: undefined,
    });
    expect(parseCommand(["status", "--help"])).toEqual({ name: "help" });
  });

  test("help prints usage and exits 0", async () => {
    const r = await cli(["help"], { DATABASE_URL: db.url });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage: npm run trickle -- <command>");
  });

  test("invalid environment exits 2 naming the variable, without echoing the URL", async () => {
    const cases: Array<[env: Record<string, string>, message: RegExp]> = [
      [{ DATABASE_URL: "postgres://user:secret@db/x" }, /DATABASE_URL has unsupported scheme "postgres:"/],
      [
        { DATABASE_URL: db.url, TRICKLE_BUSY_TIMEOUT_MS: "soon" },
        /TRICKLE_BUSY_TIMEOUT_MS must be a whole number/,
      ],
      [
        { DATABASE_URL: db.url, TRICKLE_MIGRATIONS: "nope_v1" },
        /TRICKLE_MIGRATIONS: unknown migration nope_v1/,
      ],
    ];
    const results = await Promise.all(cases.map(([env]) => cli(["run"], env)));
    results.forEach((r, i) => {
      const [env, message] = cases[i]!;
      expect(r.code, JSON.stringify(env)).toBe(2);
      expect(r.stderr, JSON.stringify(env)).toMatch(message);
      expect(r.stderr).not.toContain("secret");
    });
  });

  test("databaseConfigFromEnv validates and defaults each variable", () => {
    expect(databaseConfigFromEnv({})).toEqual({ url: "file:data/trickle.db", busyTimeoutMs: 100 });
    expect(
      databaseConfigFromEnv({
        DATABASE_URL: "libsql://db.example.com",
        DATABASE_AUTH_TOKEN: "tok",
        TRICKLE_BUSY_TIMEOUT_MS: "0",
      }),
    ).toEqual({ url: "libsql://db.example.com", authToken: "tok", busyTimeoutMs: 0 });
    for (const url of [
      "file:/abs/x.db",
      "file:///abs/x.db",
      "file:rel/x.db",
      "http://h:8080",
      "wss://h",
      "https://h",
    ]) {
      expect(databaseConfigFromEnv({ DATABASE_URL: url }).url).toBe(url);
    }
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{ DATABASE_URL: "mysql://h/x?authToken=secret" }, /^DATABASE_URL has unsupported scheme "mysql:"/],
      [{ DATABASE_URL: "just-a-path.db" }, /^DATABASE_URL must start with one of file:/],
      [{ DATABASE_URL: "libsql://" }, /^DATABASE_URL \(libsql:\) must name a host/],
      [{ DATABASE_URL: "file://otherhost/x.db" }, /^DATABASE_URL: a file: URL with an absolute path/],
      [{ DATABASE_URL: "file:" }, /^DATABASE_URL: the file: URL has no path/],
      [{ DATABASE_AUTH_TOKEN: "a b" }, /^DATABASE_AUTH_TOKEN must not contain whitespace/],
      [{ TRICKLE_BUSY_TIMEOUT_MS: "-1" }, /^TRICKLE_BUSY_TIMEOUT_MS must be a whole number/],
      [{ TRICKLE_BUSY_TIMEOUT_MS: "1.5" }, /^TRICKLE_BUSY_TIMEOUT_MS must be a whole number/],
    ];
    for (const [env, message] of bad) {
      expect(() => databaseConfigFromEnv(env), JSON.stringify(env)).toThrow(message);
      try {
        databaseConfigFromEnv(env);
      } catch (error) {
        expect((error as Error).message).not.toContain("secret");
      }
    }
  });

  test("progress formats: counts, k/M rates, h/m/s durations, bars", () => {
    expect(formatCount(1_234_567n)).toBe("1,234,567");
    expect(formatCount(999)).toBe("999");
    expect(formatRate(850)).toBe("850/s");
    expect(formatRate(12_345)).toBe("12k/s");
    expect(formatRate(1_250)).toBe("1.3k/s");
    expect(formatRate(1_250_000)).toBe("1.25M/s");
    expect(formatRate(0)).toBe("–/s");
    expect(formatDuration(3720)).toBe("1h02m");
    expect(formatDuration(185)).toBe("3m05s");
    expect(formatDuration(12)).toBe("12s");
    expect(formatDuration(null)).toBe("–");
    expect(renderBar(0.5, 10)).toBe("[#####-----]");
    expect(renderBar(2, 4)).toBe("[####]");
  });

  test("a database that cannot be opened exits 2 naming DATABASE_URL", async () => {
    // The parent "directory" is a regular file, so the database cannot be created.
    const blocker = join(db.dir, "blocker");
    writeFileSync(blocker, "not a directory");
    const r = await cli(["status"], { DATABASE_URL: `file:${blocker}/inside.db` });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot open the database named by DATABASE_URL/);
  });
});

describe("seed → verify → run → verify", () => {
  let db: TempDb;
  let client: Client;
  let oracle: string[];

  beforeAll(async () => {
    db = tempDb();
    const seeded = await cli(["seed", "--transmissions", "2000", "--observations", "30000", "--seed", "5"], {
      DATABASE_URL: db.url,
    });
    expect(seeded.code, seeded.stderr).toBe(0);
    client = db.open();
    oracle = await oneShotResult(client, db); // taken before the run changes anything
  });
  afterAll(() => db.cleanup());

  test("before the run: verify exits 1 with the count, status is empty, dry-run writes nothing", async () => {
    const verify = await cli(["verify"], { DATABASE_URL: db.url });
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(/tx_last_seen_backfill_v1: [1-9][\d,]* rows still need work/);
    expect(await status(db.url)).toEqual([]);
    const dry = await cli(["dry-run"], { DATABASE_URL: db.url });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(
      /tx_last_seen_backfill_v1 \[not registered\]: 1,8\d\d candidate rows in transmissions/,
    );
    expect(await hasStateTable(client)).toBe(false); // read-only commands create nothing
  });

  test("run --until-done finishes the backfill with the one-shot statement's result", async () => {
    const run = await cli(["run", "--until-done"], { DATABASE_URL: db.url });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/tx_last_seen_backfill_v1\s+done/);
    // Not a TTY: plain progress lines, no escape sequences.
    expect(run.stderr).toMatch(/tx_last_seen_backfill_v1.* rows/);
    expect(run.stderr).not.toContain("\x1b[");
    expect(await lastSeenById(client)).toEqual(oracle);

    const [item, ...others] = await status(db.url);
    expect(others).toEqual([]);
    expect(item).toMatchObject({
      name: "tx_last_seen_backfill_v1",
      status: "done",
      percent: 100,
      etaSeconds: null,
      leaseOwner: null,
      errorMessage: null,
    });
    expect(typeof item!.rowsProcessed).toBe("number");
    expect(item!.rowsProcessed).toBe(item!.rowsTotal);
    const candidates = await client.execute("SELECT COUNT(*) AS n FROM transmissions WHERE id <= 1800");
    expect(item!.rowsTotal).toBeGreaterThan(1700);
    expect(item!.rowsTotal).toBeLessThanOrEqual(Number(candidates.rows[0]?.n) + 40);
    expect(typeof item!.cursor).toBe("string"); // keys are decimal strings
    expect(item!.cursor).toBe(item!.maxKey);
    expect(item!.rate).toBeGreaterThan(0);

    const human = await cli(["status"], { DATABASE_URL: db.url });
    expect(human.stdout).toMatch(/tx_last_seen_backfill_v1\s+done\s+[\d,]+ \/ [\d,]+ rows\s+100\.0%/);

    const verify = await cli(["verify"], { DATABASE_URL: db.url });
    expect(verify.code).toBe(0);
    expect(verify.stdout).toContain("tx_last_seen_backfill_v1: 0 rows still need work");
  });

  test("verify of an opt-in migration whose column does not exist yet reports it not started", async () => {
    const hop = await cli(["verify", "obs_hop_count_v1"], { DATABASE_URL: db.url });
    expect(hop.code).toBe(1);
    expect(hop.stdout).toContain(
      "obs_hop_count_v1: not started (column observations.hop_count does not exist yet)",
    );
  });
});

describe("control commands", () => {
  test("pause / resume / cancel / retry transitions and exit codes (ok 0, conflict 1, not found 2)", async () => {
    const db = tempDb();
    try {
      const env = { DATABASE_URL: db.url };
      const name = "tx_last_seen_backfill_v1";
      // No CoreScope tables: the migration is registered (pending) and would wait, which is all control needs.
      const steps: Array<[args: string[], code: number, out: RegExp]> = [
        [["pause", name], 0, /tx_last_seen_backfill_v1: pending → paused/],
        [["pause", name], 1, /cannot pause a migration that is paused/],
        [["resume", name], 0, /paused → pending/],
        [["cancel", name], 0, /pending → cancelled/],
        [["retry", name], 0, /cancelled → pending/],
        [["cancel", "nope_v1"], 2, /no migration named "nope_v1"/],
      ];
      for (const [args, code, text] of steps) {
        const r = await cli(args, env);
        expect(r.code, `trickle ${args.join(" ")}: ${r.stderr}`).toBe(code);
        expect(code === 0 ? r.stdout : r.stderr).toMatch(text);
      }
      const client = db.open();
      expect((await stateRows(client)).map((s) => [s.name, s.status])).toEqual([[name, "pending"]]);

      // Tables missing: run waits (pending with the reason), exits 0; verify skips it and exits 0.
      const run = await cli(["run", "--until-done"], env);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/tx_last_seen_backfill_v1\s+pending/);
      expect(run.stdout).toMatch(/waiting: table transmissions, observations does not exist/);
      const verify = await cli(["verify"], env);
      expect(verify.code).toBe(0);
      expect(verify.stdout).toContain("skipped (table transmissions, observations does not exist)");
    } finally {
      db.cleanup();
    }
  });

  test("a migration that fails makes run exit 1; retry brings it back", async () => {
    const db = tempDb();
    try {
      const env = { DATABASE_URL: db.url };
      const seeded = await cli(["seed", "--transmissions", "300", "--observations", "3000"], env);
      expect(seeded.code, seeded.stderr).toBe(0);
      const client = db.open();
      // A deterministic error on every data step.
      await client.execute(
        "CREATE TRIGGER no_updates BEFORE UPDATE ON transmissions BEGIN SELECT RAISE(ABORT, 'updates are frozen'); END",
      );
      const run = await cli(["run", "--until-done"], env);
      expect(run.code).toBe(1);
      expect(run.stdout).toMatch(/tx_last_seen_backfill_v1\s+failed/);
      expect(run.stdout).toContain("updates are frozen");
      const [item] = await stateRows(client);
      expect(item?.status).toBe("failed");
      expect(item?.error).toContain("updates are frozen");

      await client.execute("DROP TRIGGER no_updates");
      const retry = await cli(["retry", "tx_last_seen_backfill_v1"], env);
      expect(retry.code).toBe(0);
      expect(retry.stdout).toMatch(/failed → (running|pending)/);
      const again = await cli(["run", "--until-done"], env);
      expect(again.code, again.stderr).toBe(0);
      expect((await stateRows(client))[0]?.status).toBe("done");
    } finally {
      db.cleanup();
    }
  });
});

describe("signals", () => {
  test("SIGINT stops run after the step in flight, releases the lease and exits 130; a later run finishes", async () => {
    const db = tempDb();
    try {
      const env = { DATABASE_URL: db.url };
      const seeded = await cli(["seed", "--transmissions", "8000", "--observations", "200000"], env);
      expect(seeded.code, seeded.stderr).toBe(0);

      const child = start(["run", "--until-done", "--migrations", "all"], env);
      const result = finished(child);
      // The first progress line means steps are under way; the whole run takes far longer than one step.
      await new Promise<void>((resolve) => child.stderr?.once("data", () => resolve()));
      child.kill("SIGINT");
      const stopped = await result;
      expect(stopped.code, stopped.stderr).toBe(130);
      expect(stopped.stdout).toContain("stopped by SIGINT");

      const client = db.open();
      const items = await stateRows(client);
      expect(items.every((s) => s.leaseOwner === null)).toBe(true);
      const unfinished = items.filter((s) => s.status !== "done");
      expect(unfinished.length).toBeGreaterThan(0);

      const resumed = await cli(["run", "--until-done", "--migrations", "all"], env);
      expect(resumed.code, resumed.stderr).toBe(0);
      const after = await stateRows(client);
      expect(after.map((s) => s.status)).toEqual(["done", "done"]);
      for (const s of after) expect(s.rowsProcessed).toBe(s.rowsTotal);
      const hop = after.find((s) => s.name === "obs_hop_count_v1");
      expect(hop?.rowsTotal).toBe(200_000n);
      const left = await client.execute("SELECT COUNT(*) AS n FROM observations WHERE hop_count IS NULL");
      expect(left.rows[0]?.n).toBe(0n);
    } finally {
      db.cleanup();
    }
  });
});
