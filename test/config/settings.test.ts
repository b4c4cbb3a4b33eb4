/**
 * One settings loader (design invariant 12): the server and the CLI accept and refuse exactly the same values
 * for every variable, and refusals name the variable without repeating a secret or the database URL.
 *
 * Each row is run through the server's path (`loadNodeConfig`, what `startNodeServer` calls before it opens
 * anything) and through the CLI program (`trickle status` on a temp database, the cheapest command: in this
 * process for the whole table, as a real child process for a sample). They must agree: the server throws naming
 * the variable ⇔ the CLI exits 2 with one line, the same message.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../src/cli/program.ts";
import { loadNodeConfig } from "../../src/node/config.ts";
import { startNodeServer } from "../../src/node/server.ts";
import { SETTINGS_VARIABLES, WORKERS_ONLY_VARIABLES } from "../../src/settings.ts";
import { cli } from "../helpers/cli.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";

interface Row {
  /** The variable the row is about. */
  readonly variable: string;
  readonly env: Record<string, string>;
  readonly ok: boolean;
}

/** Appears in secret values and URLs: it must never show up in a message. */
const SECRET = "s3cr3t";

let db: TempDb;
let goodJson: string;
let badJson: string;
let clashJson: string;

function rows(): Row[] {
  const good = (variable: string, value: string, more: Record<string, string> = {}): Row => ({
    variable,
    env: { [variable]: value, ...more },
    ok: true,
  });
  const bad = (variable: string, value: string, more: Record<string, string> = {}): Row => ({
    variable,
    env: { [variable]: value, ...more },
    ok: false,
  });
  const probe = { TRICKLE_PROBE_SQL: "SELECT 1", TRICKLE_PROBE_MAX_MS: "50" };
  return [
    good("PORT", "0"),
    bad("PORT", "65536"),
    bad("PORT", "http"),
    good("DATABASE_URL", `file:${join(db.dir, "other.db")}`),
    bad("DATABASE_URL", `postgres://user:${SECRET}@db/x`),
    bad("DATABASE_URL", `libsql://?authToken=${SECRET}`),
    bad("DATABASE_URL", `file://host-${SECRET}/x.db`),
    // Workers only: the server and the CLI refuse it, whatever its value (see WORKERS_ONLY_VARIABLES).
    bad("DATABASE_BINDING", "DB"),
    bad("DATABASE_BINDING", "not a binding name"),
    bad("DATABASE_BINDING", "DB", { DATABASE_URL: `libsql://db.example.com?authToken=${SECRET}` }),
    good("DATABASE_AUTH_TOKEN", "token"),
    bad("DATABASE_AUTH_TOKEN", `${SECRET} x`),
    good("TRICKLE_BUSY_TIMEOUT_MS", "0"),
    bad("TRICKLE_BUSY_TIMEOUT_MS", "1.5"),
    good("ADMIN_TOKEN", "admin-token"),
    bad("ADMIN_TOKEN", `${SECRET} x`),
    good("CRON_SECRET", " "),
    bad("CRON_SECRET", `${SECRET}\tx`),
    good("TRICKLE_CONFIG", goodJson),
    good("TRICKLE_CONFIG", '{"migrations":[]}'),
    bad("TRICKLE_CONFIG", join(db.dir, "missing.json")),
    bad("TRICKLE_CONFIG", badJson),
    bad("TRICKLE_CONFIG", clashJson),
    bad("TRICKLE_CONFIG", "{not json"),
    good("TRICKLE_MIGRATIONS", "all"),
    good("TRICKLE_MIGRATIONS", "none"),
    bad("TRICKLE_MIGRATIONS", "nope_v1"),
    bad("TRICKLE_MIGRATIONS", "a;b"),
    good("TRICKLE_TICK_MS", "250"),
    bad("TRICKLE_TICK_MS", "1"),
    good("TRICKLE_SLICE_BUDGET_MS", "500"),
    bad("TRICKLE_SLICE_BUDGET_MS", "soon"),
    good("TRICKLE_SLICE_INTERVAL_MS", "10000"),
    bad("TRICKLE_SLICE_INTERVAL_MS", "-1"),
    good("TRICKLE_STEP_TARGET_MS", "20"),
    bad("TRICKLE_STEP_TARGET_MS", "abc"),
    bad("TRICKLE_STEP_TARGET_MS", "0"),
    good("TRICKLE_YIELD_MS", "0"),
    bad("TRICKLE_YIELD_MS", "-5"),
    good("TRICKLE_YIELD_POLICY", "fixed"),
    bad("TRICKLE_YIELD_POLICY", "polite"),
    good("TRICKLE_LEASE_TTL_MS", "5000"),
    bad("TRICKLE_LEASE_TTL_MS", "1000"), // not above the default slice budget (2000)
    bad("TRICKLE_LEASE_TTL_MS", "3000", { TRICKLE_SLICE_BUDGET_MS: "3000" }),
    good("TRICKLE_SNAPSHOT_TTL_MS", "0"),
    bad("TRICKLE_SNAPSHOT_TTL_MS", "x"),
    good("TRICKLE_MAX_QUARANTINED", "0"),
    bad("TRICKLE_MAX_QUARANTINED", "-1"),
    good("TRICKLE_QUIET_HOURS", "01:00-02:00,22:00-23:00"),
    bad("TRICKLE_QUIET_HOURS", "25:00-26:00"),
    good("TRICKLE_PROBE_SQL", "SELECT 1", { TRICKLE_PROBE_MAX_MS: "50" }),
    bad("TRICKLE_PROBE_SQL", "SELECT 1"), // without TRICKLE_PROBE_MAX_MS
    bad("TRICKLE_PROBE_SQL", "DELETE FROM t", { TRICKLE_PROBE_MAX_MS: "50" }),
    good("TRICKLE_PROBE_MAX_MS", "1", { TRICKLE_PROBE_SQL: "SELECT 1" }),
    bad("TRICKLE_PROBE_MAX_MS", "0", { TRICKLE_PROBE_SQL: "SELECT 1" }),
    good("TRICKLE_PROBE_EVERY_MS", "1000", probe),
    bad("TRICKLE_PROBE_EVERY_MS", "often", probe),
    good("TRICKLE_PROBE_POLICY", "hold:5m", probe),
    bad("TRICKLE_PROBE_POLICY", "sometimes", probe),
    good("TRICKLE_THROTTLE_BUSY_RATE", "0.5"),
    bad("TRICKLE_THROTTLE_BUSY_RATE", "2"),
    good("TRICKLE_THROTTLE_BUSY_WINDOW", "50", { TRICKLE_THROTTLE_BUSY_RATE: "0.5" }),
    bad("TRICKLE_THROTTLE_BUSY_WINDOW", "1", { TRICKLE_THROTTLE_BUSY_RATE: "0.5" }),
    good("TRICKLE_THROTTLE_BUSY_POLICY", "backoff:10s", { TRICKLE_THROTTLE_BUSY_RATE: "0.5" }),
    bad("TRICKLE_THROTTLE_BUSY_POLICY", "never", { TRICKLE_THROTTLE_BUSY_RATE: "0.5" }),
    good("TRICKLE_STUCK_AFTER_MS", "60000"),
    bad("TRICKLE_STUCK_AFTER_MS", "soon"),
    good("TRICKLE_WEBHOOK_URL", "https://hooks.example.test/trickle"),
    bad("TRICKLE_WEBHOOK_URL", `ftp://user:${SECRET}@example.test/hook`),
    good("TRICKLE_WEBHOOK_SECRET", "hook-secret", { TRICKLE_WEBHOOK_URL: "https://hooks.example.test/t" }),
    bad("TRICKLE_WEBHOOK_SECRET", "hook-secret"), // without a URL
    good("TRICKLE_FLEET_DATABASES", "fleet.txt"),
    bad("TRICKLE_FLEET_DATABASES", "libsql://tenant-1.example.com"),
    // Workers only, like DATABASE_BINDING.
    bad("TRICKLE_FLEET", "libsql://tenant-1.example.com\nlibsql://tenant-2.example.com"),
    bad("TRICKLE_FLEET_CONCURRENCY", "2"),
    good("TRICKLE_DENO_CRON", "*/5 * * * *"),
    bad("TRICKLE_DENO_CRON", "often"),
  ];
}

/** The CLI program in this process (what src/cli/main.ts runs), with its stderr captured. */
async function cliInProcess(
  args: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number; stderr: string }> {
  let stderr = "";
  const write = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
  const quiet = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
  try {
    return { code: await main(args, env), stderr };
  } finally {
    write.mockRestore();
    quiet.mockRestore();
  }
}

/** The server throws naming the variable ⇔ the CLI exits 2 with one line: the same message. */
function expectAgreement(
  row: Row,
  label: string,
  message: string | undefined,
  r: { code: number | null; stderr: string },
): void {
  if (row.ok) {
    expect(message, label).toBeUndefined();
    expect(r.code, `${label}: ${r.stderr}`).toBe(0);
    return;
  }
  expect(message, label).toBeDefined();
  expect(message!.startsWith(row.variable), `${label}: ${message}`).toBe(true);
  expect(r.code, `${label}: ${r.stderr}`).toBe(2);
  // One line, naming the variable; no usage text for a configuration error.
  expect(r.stderr.trim(), label).toBe(`trickle: ${message}`);
  for (const text of [message!, r.stderr]) expect(text, label).not.toContain(SECRET);
}

/** The server's verdict: undefined when it accepts, else its message. */
async function serverVerdict(env: Record<string, string>): Promise<string | undefined> {
  try {
    await loadNodeConfig(env);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

beforeAll(() => {
  db = tempDb();
  // Empty databases for `status`, which never creates one (the good DATABASE_URL row names other.db).
  writeFileSync(db.path, "");
  writeFileSync(join(db.dir, "other.db"), "");
  goodJson = join(db.dir, "good.json");
  writeFileSync(
    goodJson,
    JSON.stringify({
      migrations: [{ name: "items_v1", table: "items", key: "id", filter: "v IS NULL", set: "v = 1" }],
    }),
  );
  badJson = join(db.dir, "bad.json");
  writeFileSync(
    badJson,
    JSON.stringify({
      migrations: [{ name: "items_v1", table: "items", key: "id", filtre: "1", set: "v = 1" }],
    }),
  );
  clashJson = join(db.dir, "clash.json");
  writeFileSync(
    clashJson,
    JSON.stringify({
      migrations: [
        { name: "tx_last_seen_backfill_v1", table: "items", key: "id", filter: "v IS NULL", set: "v = 1" },
      ],
    }),
  );
});
afterAll(() => db.cleanup());

describe("the server and the CLI read every setting the same way", () => {
  it("the table covers every variable the settings loader reads", () => {
    const covered = new Set(rows().map((r) => r.variable));
    expect([...SETTINGS_VARIABLES].filter((v) => !covered.has(v))).toEqual([]);
    // …and each with at least one good and one bad value; a Workers-only one is refused whatever its value.
    for (const variable of SETTINGS_VARIABLES) {
      const mine = rows().filter((r) => r.variable === variable);
      if (WORKERS_ONLY_VARIABLES.includes(variable)) {
        expect(mine.length > 0 && mine.every((r) => !r.ok), `${variable} is refused here`).toBe(true);
        continue;
      }
      expect(
        mine.some((r) => r.ok) && mine.some((r) => !r.ok),
        `${variable} needs a good and a bad value`,
      ).toBe(true);
    }
  });

  it("accept and refuse exactly the same values, naming the variable and no secret", async () => {
    const table = rows();
    for (const row of table) {
      const label = `${JSON.stringify(row.env)} (expected ${row.ok ? "ok" : "refused"})`;
      const message = await serverVerdict(row.env);
      const r = await cliInProcess(["status"], { DATABASE_URL: db.url, ...row.env });
      expectAgreement(row, label, message, r);
    }
  });

  it("the CLI as a process agrees too (a sample: the tuning variables of issue 11 item 12, and TRICKLE_CONFIG)", async () => {
    const sample = rows().filter(
      (r) =>
        [
          "TRICKLE_STEP_TARGET_MS",
          "TRICKLE_YIELD_MS",
          "TRICKLE_SLICE_BUDGET_MS",
          "TRICKLE_LEASE_TTL_MS",
        ].includes(r.variable) ||
        (r.variable === "TRICKLE_CONFIG" && r.env.TRICKLE_CONFIG === badJson),
    );
    const results = await Promise.all(
      sample.map((row) => cli(["run"], { DATABASE_URL: db.url, ...row.env })),
    );
    for (const [i, row] of sample.entries()) {
      const label = `${JSON.stringify(row.env)} (expected ${row.ok ? "ok" : "refused"})`;
      expectAgreement(row, label, await serverVerdict(row.env), results[i]!);
    }
  }, 120_000);

  it("startNodeServer refuses a bad value before it opens anything, with the same message", async () => {
    const missing = join(db.dir, "never-created", "x.db");
    const env = { DATABASE_URL: `file:${missing}`, PORT: "0", TRICKLE_STEP_TARGET_MS: "abc" };
    await expect(startNodeServer({ env, log: () => {} })).rejects.toThrow(
      (await serverVerdict(env)) as string,
    );
    expect(existsSync(join(db.dir, "never-created"))).toBe(false);
    const r = await cli(["run"], env);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`trickle: ${await serverVerdict(env)}`);
  });
});

describe("the CLI honours the engine tuning the server uses (issue 11, item 12)", () => {
  it("slice budget, step target and yield reach the CLI's engine", async () => {
    const client = db.open();
    await client.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER)");
    await client.execute(
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 500) INSERT INTO items(id) SELECT i FROM c",
    );
    const env = {
      DATABASE_URL: db.url,
      TRICKLE_CONFIG: goodJson,
      TRICKLE_SLICE_BUDGET_MS: "700",
      TRICKLE_STEP_TARGET_MS: "20",
      TRICKLE_YIELD_MS: "33",
      TRICKLE_LEASE_TTL_MS: "9000",
    };
    const server = await loadNodeConfig(env);
    const r = await cli(["dry-run", "items_v1", "--json"], env);
    expect(r.code, r.stderr).toBe(0);
    const [report] = JSON.parse(r.stdout) as [
      { projection: { schedule: { sliceBudgetMs: number; stepTargetMs: number; yieldMs: number } } },
    ];
    expect(report.projection.schedule).toMatchObject({
      sliceBudgetMs: server.tuning.sliceBudgetMs,
      stepTargetMs: server.tuning.stepTargetMs,
      yieldMs: server.tuning.yieldMs,
    });
    expect(server.tuning).toMatchObject({
      sliceBudgetMs: 700,
      stepTargetMs: 20,
      yieldMs: 33,
      leaseTtlMs: 9000,
    });
  });
});
