/**
 * The `trickle` CLI as operators use it: real child processes (`tsx src/cli/main.ts …`) on real libSQL files.
 * Help (global and per command), one-line usage errors, configuration errors, read-only commands that never
 * create a database, the seed → verify → run → verify flow against the one-shot oracle, `--json` output that is
 * the only thing on stdout, control transitions and their exit codes, verify on a foreign database, a failing
 * migration, and SIGINT.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Command, commandHelp, parseCommandLine, UsageError } from "../src/cli/args.ts";
import { formatCount, formatDuration, formatRate, renderBar } from "../src/cli/progress.ts";
import { databaseConfigFromEnv } from "../src/node/database.ts";
import { type CliResult, cli, finished, startCli } from "./helpers/cli.ts";
import { lastSeenById, oneShotResult, type TempDb, tempDb } from "./helpers/db.ts";

function parseCommand(argv: readonly string[]): Command {
  return parseCommandLine(argv).command;
}

/** A usage error: exit 2, and on stderr exactly one line naming the mistake plus the pointer to the help. */
function expectUsageError(r: CliResult, label: string, message: RegExp, command?: string): void {
  expect(r.code, `${label}: ${r.stderr}`).toBe(2);
  expect(r.stdout, label).toBe("");
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, label).toHaveLength(2);
  expect(lines[0], label).toMatch(new RegExp(`^trickle${command ? ` ${command}` : ""}: `));
  expect(lines[0], label).toMatch(message);
  expect(lines[1], label).toBe(`see trickle${command ? ` ${command}` : ""} --help`);
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

  test("bad commands, flags and values exit 2 with one line naming what is wrong and where the help is", async () => {
    // The database does not exist: a usage error is found before anything is opened, and creates nothing.
    const env = { DATABASE_URL: `file:${join(db.dir, "never", "x.db")}` };
    const cases: Array<[args: string[], message: RegExp, command?: string]> = [
      [["frobnicate"], /unknown command "frobnicate"/],
      [["frobnicate", "--help"], /unknown command "frobnicate"/],
      [[], /missing command/],
      [["seed", "--bogus"], /unknown option --bogus/, "seed"],
      [["seed", "--transmissions"], /option --transmissions needs a value/, "seed"],
      [["seed", "--transmissions", "1", "--observations", "999"], /observations \(999\) exceed/, "seed"],
      [["run", "--budget-ms", "12x"], /option --budget-ms must be an integer ≥ 1, got "12x"/, "run"],
      [["run", "--migrations", "nope_v1"], /--migrations: unknown migration nope_v1/, "run"],
      [["verify", "nope_v1"], /unknown migration "nope_v1"/, "verify"],
      [["status", "--config"], /option --config needs a file/, "status"],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args, env)));
    results.forEach((r, i) => {
      const [args, message, command] = cases[i]!;
      expectUsageError(r, `trickle ${args.join(" ")}`, message, command);
    });
    expect(existsSync(join(db.dir, "never"))).toBe(false);
  });

  test("the parser rejects every malformed command line with a UsageError naming the problem", () => {
    const cases: Array<[args: string[], message: RegExp, command?: string]> = [
      [[], /^missing command$/],
      [["--json"], /^expected a command before --json$/],
      [["seed", "--transmissions", "-5"], /--transmissions must be an integer ≥ 0, got "-5"/, "seed"],
      [["seed", "--observations", "1.5"], /--observations must be an integer ≥ 0/, "seed"],
      [["seed", "--legacy-fraction", "1.5"], /--legacy-fraction must be a number between 0 and 1/, "seed"],
      [["seed", "--legacy-fraction", "abc"], /--legacy-fraction must be a number between 0 and 1/, "seed"],
      [["seed", "--seed", "1", "--seed", "2"], /--seed given twice/, "seed"],
      [["run", "--budget-ms", "0"], /--budget-ms must be an integer ≥ 1, got "0"/, "run"],
      [["run", "--until-done", "--migrations"], /--migrations needs a value/, "run"],
      [["run", "--migrations", "--until-done"], /--migrations needs a value/, "run"],
      [["run", "--json", "--json"], /--json given twice/, "run"],
      [["status", "--json=yes"], /--json takes no value/, "status"],
      [["status", "-j"], /^unknown option -j$/, "status"],
      [["status", "--until-done"], /^unknown option --until-done$/, "status"],
      [["pause"], /^missing <name>$/, "pause"],
      [["failures", "x", "--keys", "5"], /--keys needs --retry/, "failures"],
      [
        ["failures", "x", "--retry", "--keys", "5,a"],
        /--keys must be comma-separated integer keys/,
        "failures",
      ],
      [["verify", "a", "b"], /^unexpected argument "b"$/, "verify"],
      [["toString"], /^unknown command "toString"$/],
      [["help", "nope"], /^unknown command "nope"$/, "help"],
      [["status", "--config", "a.json", "--config=b.json"], /--config given twice/, "status"],
    ];
    for (const [args, message, command] of cases) {
      let error: unknown;
      try {
        parseCommand(args);
      } catch (e) {
        error = e;
      }
      expect(error, args.join(" ")).toBeInstanceOf(UsageError);
      expect((error as UsageError).message, args.join(" ")).toMatch(message);
      expect((error as UsageError).command, args.join(" ")).toBe(command);
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
      json: false,
    });
    expect(parseCommand(["retry", "x_v1"])).toEqual({
      name: "retry",
      migration: "x_v1",
      migrations: undefined,
    });
    expect(parseCommand(["failures", "x_v1", "--retry", "--keys", "5, 9223372036854775807"])).toMatchObject({
      retry: true,
      keys: [5n, 9223372036854775807n], // exact, beyond 2^53
    });
    // --config anywhere on the line, with a space or an `=`.
    expect(parseCommandLine(["--config", "m.json", "verify", "x_v1"])).toEqual({
      command: { name: "verify", migration: "x_v1", migrations: undefined },
      configFile: "m.json",
    });
    expect(parseCommandLine(["dry-run", "--json", "--config=m.json"]).configFile).toBe("m.json");
    expect(parseCommandLine(["run", "--config", "m.json", "--until-done"]).command).toMatchObject({
      untilDone: true,
    });
    // --help (or -h) anywhere asks for the command's help, whatever else is on the line.
    expect(parseCommand(["status", "--help"])).toEqual({ name: "help", topic: "status" });
    expect(parseCommand(["run", "--bogus", "-h"])).toEqual({ name: "help", topic: "run" });
    expect(parseCommand(["--help"])).toEqual({ name: "help", topic: undefined });
    expect(parseCommand(["help", "dry-run"])).toEqual({ name: "help", topic: "dry-run" });
  });

  test("every command has its own help, naming each of its flags", () => {
    const flags: Record<string, string[]> = {
      seed: ["--transmissions N", "--observations M", "--legacy-fraction F", "--seed S"],
      status: ["--json"],
      run: ["--until-done", "--budget-ms N", "--migrations a,b|all", "--json"],
      verify: ["--migrations a,b|all"],
      "dry-run": ["--batch-size N", "--tick-interval-ms N", "--json"],
      failures: ["--all", "--json", "--retry", "--keys k1,k2"],
      pause: ["--migrations a,b|all"],
      resume: [],
      cancel: [],
      retry: [],
    };
    for (const [command, names] of Object.entries(flags)) {
      const help = commandHelp(command);
      expect(help.split("\n")[0], command).toMatch(new RegExp(`^Usage: trickle ${command} `));
      for (const flag of [...names, "--config FILE", "-h, --help"]) expect(help, command).toContain(flag);
      expect(help, command).toMatch(/^Exit codes: 0/m);
      expect(help, command).not.toContain("Commands:");
    }
  });

  test("help prints the global usage, `<command> --help` the command's own; both exit 0 and open nothing", async () => {
    const env = { DATABASE_URL: `file:${join(db.dir, "nowhere", "x.db")}`, TRICKLE_STEP_TARGET_MS: "abc" };
    const [global, dashes, run, viaHelp, short] = await Promise.all([
      cli(["help"], env),
      cli(["--help"], env),
      cli(["run", "--help"], env),
      cli(["help", "verify"], env),
      cli(["status", "-h"], env),
    ]);
    for (const r of [global, dashes, run, viaHelp, short]) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
    }
    expect(global.stdout).toContain("Usage: trickle <command>");
    expect(global.stdout).toContain("Commands:");
    expect(dashes.stdout).toBe(global.stdout);
    expect(run.stdout).toMatch(/^Usage: trickle run \[--until-done\] \[--budget-ms N\]/);
    expect(run.stdout).toContain("--until-done");
    expect(run.stdout).toContain("130 / 143");
    expect(run.stdout).not.toContain("Commands:");
    expect(run.stdout).not.toContain("seed [--transmissions");
    expect(viaHelp.stdout).toMatch(/^Usage: trickle verify \[name\]/);
    expect(short.stdout).toMatch(/^Usage: trickle status \[--json\]/);
    expect(existsSync(join(db.dir, "nowhere"))).toBe(false);
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
    // The parent "directory" is a regular file, so the database cannot be created (run may create one).
    const blocker = join(db.dir, "blocker");
    writeFileSync(blocker, "not a directory");
    const r = await cli(["run"], { DATABASE_URL: `file:${blocker}/inside.db` });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot open the database named by DATABASE_URL/);
  });
});

describe("read-only commands never create a database", () => {
  let db: TempDb;
  beforeAll(() => {
    db = tempDb();
  });
  afterAll(() => db.cleanup());

  test("status, verify, dry-run, failures and the controls on a missing path: exit 2, one line, nothing created", async () => {
    const missingDir = join(db.dir, "nonexistent", "dir");
    const inMissingDir = join(missingDir, "x.db");
    const inExistingDir = join(db.dir, "x.db"); // the directory exists, the file does not
    const name = "tx_last_seen_backfill_v1";
    const cases: Array<[args: string[], path: string]> = [
      [["status"], inMissingDir],
      [["status", "--json"], inMissingDir],
      [["verify"], inMissingDir],
      [["dry-run", "--json"], inMissingDir],
      [["failures", name], inMissingDir],
      [["pause", name], inMissingDir],
      [["status"], inExistingDir],
      [["retry", name], inExistingDir],
    ];
    const results = await Promise.all(
      cases.map(([args, path]) => cli(args, { DATABASE_URL: `file:${path}` })),
    );
    results.forEach((r, i) => {
      const [args, path] = cases[i]!;
      const label = `trickle ${args.join(" ")} on ${path}`;
      expect(r.code, `${label}: ${r.stderr}`).toBe(2);
      expect(r.stderr, label).toBe(`trickle: no database at ${path}\n`);
      expect(r.stdout, label).toBe("");
    });
    expect(existsSync(join(db.dir, "nonexistent"))).toBe(false);
    expect(existsSync(inExistingDir)).toBe(false);
    expect(existsSync(`${inExistingDir}-wal`)).toBe(false);
  });

  test("seed and run create the database (and its directory); status then reads it", async () => {
    const path = join(db.dir, "new", "dir", "x.db");
    const env = { DATABASE_URL: `file:${path}` };
    const run = await cli(["run"], env);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(path)).toBe(true);
    const status = await cli(["status", "--json"], env);
    expect(status.code, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as { status: string }[]).map((m) => m.status)).toEqual(["pending"]);
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

  test("with --json, stdout is exactly one JSON document (progress and logs go to stderr)", async () => {
    const env = { DATABASE_URL: db.url };
    const name = "tx_last_seen_backfill_v1";
    const [statusJson, dryRun, failures] = await Promise.all([
      cli(["status", "--json"], env),
      cli(["dry-run", name, "--json"], env),
      cli(["failures", name, "--json", "--all"], env),
    ]);
    const run = await cli(["run", "--until-done", "--json", "--migrations", name], env); // alone: it writes
    for (const r of [statusJson, dryRun, failures, run]) {
      expect(r.code, r.stderr).toBe(0);
      expect(() => JSON.parse(r.stdout), r.stdout).not.toThrow();
    }
    expect((JSON.parse(statusJson.stdout) as StatusItem[])[0]).toMatchObject({ name, status: "done" });
    expect(JSON.parse(dryRun.stdout)).toEqual([expect.objectContaining({ name })]);
    expect(JSON.parse(failures.stdout)).toEqual([]);
    const summary = JSON.parse(run.stdout) as {
      seconds: number;
      stoppedBy: string | null;
      migrations: StatusItem[];
      notes: unknown[];
    };
    expect(summary.stoppedBy).toBeNull();
    expect(typeof summary.seconds).toBe("number");
    expect(summary.migrations).toEqual([expect.objectContaining({ name, status: "done", percent: 100 })]);
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
      // An empty database (the controls do not create one) without the CoreScope tables: the migration is
      // registered (pending) and would wait, which is all control needs.
      writeFileSync(db.path, "");
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

      // Tables missing: run waits (pending with the reason), exits 0; verify cannot pass on such a database
      // (it would make a CI gate pointed at the wrong database green): exit 1 with the reason.
      const run = await cli(["run", "--until-done"], env);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/tx_last_seen_backfill_v1\s+pending/);
      expect(run.stdout).toMatch(/waiting: table transmissions, observations does not exist/);
      const verify = await cli(["verify"], env);
      expect(verify.code).toBe(1);
      expect(verify.stdout).toBe(
        "tx_last_seen_backfill_v1: cannot verify here (table transmissions, observations does not exist)\n",
      );
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

      const child = startCli(["run", "--until-done", "--migrations", "all"], env);
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
