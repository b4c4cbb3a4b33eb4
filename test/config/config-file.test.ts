/**
 * User-defined migrations from configuration (`TRICKLE_CONFIG`, `--config`): shape errors that name the
 * migration and the field, the catalogue rules (enabled by default, selectable, no name clash), and a
 * JSON-defined migration run to completion through the CLI, the in-process service and the Node server — each
 * checked in the database. A `.ts` module with a custom step works in the CLI.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@libsql/client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { inlineMigrations, loadConfig } from "../../src/config.ts";
import { migrationsFromConfig, parseMigrationsJson } from "../../src/migrations/config-file.ts";
import { loadNodeConfig, readMigrationsConfig } from "../../src/node/config.ts";
import { startNodeServer } from "../../src/node/server.ts";
import { createService } from "../../src/service.ts";
import { waitUntil } from "../fixtures/freeze.ts";
import { cli } from "../helpers/cli.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import { rawStateRow } from "../helpers/engine.ts";

const ITEMS_CENTS = {
  name: "items_cents_v1",
  table: "items",
  key: "id",
  filter: "cents IS NULL",
  set: "cents = price * 100",
};
const CONFIG = { migrations: [ITEMS_CENTS] };
const ROWS = 3000;

/** `items` with sparse keys (2, 4, …) and `cents` to fill in, as the contract check makes it. */
async function createItems(client: Client): Promise<void> {
  await client.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, price INT NOT NULL, cents INT)");
  await client.execute(
    `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${ROWS})
     INSERT INTO items (id, price) SELECT i * 2, i FROM c`,
  );
}

async function wrongRows(client: Client): Promise<number> {
  const r = await client.execute(
    "SELECT count(*) AS n FROM items WHERE cents IS NULL OR cents <> price * 100",
  );
  return Number(r.rows[0]!.n);
}

describe("configuration errors name the migration and the field", () => {
  it.each([
    [{}, /"migrations" must be a list/],
    ["text", /must be an object \{ "migrations"/],
    [[], /must be an object/],
    [{ migrations: {} }, /"migrations" must be a list/],
    [{ migrations: [], extra: 1 }, /unknown top-level field "extra"/],
    [{ migrations: ["x"] }, /^migrations\[0\] must be an object/],
    [
      { migrations: [{ ...ITEMS_CENTS, filtre: "1" }] },
      /^migration "items_cents_v1" \(migrations\[0\]\): unknown field "filtre"/,
    ],
    [
      { migrations: [{ ...ITEMS_CENTS, set: 5 }] },
      /migration "items_cents_v1" .*field "set" must be a non-empty string/,
    ],
    [{ migrations: [{ ...ITEMS_CENTS, set: " " }] }, /field "set" must be a non-empty string/],
    [{ migrations: [{ ...ITEMS_CENTS, dependsOn: "a_v1" }] }, /field "dependsOn" must be a list/],
    [{ migrations: [{ ...ITEMS_CENTS, tuning: [] }] }, /field "tuning" must be an object/],
    [{ migrations: [{ ...ITEMS_CENTS, name: undefined }] }, /^migrations\[0\]: field "name" is missing/],
    [
      { migrations: [ITEMS_CENTS, { ...ITEMS_CENTS, key: undefined }] },
      /^migration "items_cents_v1" \(migrations\[1\]\): field "key" is missing/,
    ],
    [{ migrations: [{ ...ITEMS_CENTS, key: undefined }] }, /field "key" is missing/],
    [{ migrations: [{ ...ITEMS_CENTS, set: undefined }] }, /field "set" is missing/],
    [
      { migrations: [{ ...ITEMS_CENTS, step: "x" }] },
      /unknown field "step" \(a custom step needs a \.ts\/\.js module/,
    ],
    [{ migrations: [ITEMS_CENTS, ITEMS_CENTS] }, /migrations\[1\]\): the name is defined twice/],
    // Content checks are resolveMigration's, with the migration and the field named.
    [{ migrations: [{ ...ITEMS_CENTS, table: "items; DROP" }] }, /migration "items_cents_v1".*table/],
    [{ migrations: [{ ...ITEMS_CENTS, name: "Items" }] }, /migration "Items".*name/],
    [
      { migrations: [{ ...ITEMS_CENTS, tuning: { stepTargetMs: 0 } }] },
      /migration "items_cents_v1".*tuning.*stepTargetMs/,
    ],
    [
      { migrations: [{ ...ITEMS_CENTS, tuning: { bogus: 1 } }] },
      /migration "items_cents_v1".*tuning.*"bogus"/,
    ],
  ])("%j", (config, message) => {
    expect(() => migrationsFromConfig(config)).toThrow(message);
  });

  it("JSON text: syntax errors, defaults", () => {
    expect(() => parseMigrationsJson("{nope")).toThrow(/^not valid JSON/);
    const [m] = parseMigrationsJson(JSON.stringify(CONFIG));
    expect(m).toMatchObject(ITEMS_CENTS);
    expect(m!.description).toContain("items");
  });

  it("errors from a file or inline text start with the variable (or --config) and name the file", async () => {
    const db = tempDb();
    try {
      const file = join(db.dir, "m.json");
      writeFileSync(file, JSON.stringify({ migrations: [{ ...ITEMS_CENTS, verify: 1 }] }));
      await expect(readMigrationsConfig(file)).rejects.toThrow(
        `TRICKLE_CONFIG (${file}): migration "items_cents_v1" (migrations[0]): field "verify" must be a non-empty string`,
      );
      await expect(readMigrationsConfig(file, "--config")).rejects.toThrow(/^--config \(/);
      await expect(readMigrationsConfig(join(db.dir, "none.json"))).rejects.toThrow(
        /^TRICKLE_CONFIG: cannot read .*none\.json: no such file/,
      );
      const module = join(db.dir, "m.mjs");
      writeFileSync(module, "export const other = [];\n");
      await expect(readMigrationsConfig(module)).rejects.toThrow(/must export `migrations`/);
      expect(() => inlineMigrations("{")).toThrow(/^TRICKLE_CONFIG: not valid JSON/);
      expect(() => inlineMigrations("/etc/m.json")).toThrow(
        /^TRICKLE_CONFIG: names a file, which this runtime cannot read/,
      );
      // A Workers object binding.
      expect(inlineMigrations(CONFIG).map((m) => m.name)).toEqual(["items_cents_v1"]);
    } finally {
      db.cleanup();
    }
  });
});

describe("the catalogue", () => {
  const inline = JSON.stringify(CONFIG);

  it("user migrations are enabled by default next to the default built-in; TRICKLE_MIGRATIONS selects", () => {
    expect(loadConfig({ TRICKLE_CONFIG: inline }).migrations.map((m) => m.name)).toEqual([
      "tx_last_seen_backfill_v1",
      "items_cents_v1",
    ]);
    expect(
      loadConfig({ TRICKLE_CONFIG: inline, TRICKLE_MIGRATIONS: "items_cents_v1" }).migrations.map(
        (m) => m.name,
      ),
    ).toEqual(["items_cents_v1"]);
    expect(
      loadConfig({ TRICKLE_CONFIG: inline, TRICKLE_MIGRATIONS: "tx_last_seen_backfill_v1" }).migrations.map(
        (m) => m.name,
      ),
    ).toEqual(["tx_last_seen_backfill_v1"]);
    const all = loadConfig({ TRICKLE_CONFIG: inline, TRICKLE_MIGRATIONS: "all" });
    expect(all.migrations.map((m) => m.name)).toEqual([
      "tx_last_seen_backfill_v1",
      "obs_hop_count_v1",
      "items_cents_v1",
    ]);
    expect(all.catalogue.map((m) => m.name)).toEqual(all.migrations.map((m) => m.name));
  });

  it("a name clash with a built-in is an error naming it", () => {
    const clash = JSON.stringify({ migrations: [{ ...ITEMS_CENTS, name: "obs_hop_count_v1" }] });
    expect(() => loadConfig({ TRICKLE_CONFIG: clash })).toThrow(
      /^TRICKLE_CONFIG: migration "obs_hop_count_v1" has the name of a built-in migration/,
    );
  });
});

describe("a JSON-defined migration runs to completion", () => {
  let db: TempDb;
  let client: Client;
  let file: string;
  beforeEach(async () => {
    db = tempDb();
    client = db.open();
    await createItems(client);
    file = join(db.dir, "migrations.json");
    writeFileSync(file, JSON.stringify(CONFIG));
  });
  afterEach(() => db.cleanup());

  it("through the CLI (TRICKLE_CONFIG and --config), found by name by verify and the control commands", async () => {
    const env = { DATABASE_URL: db.url, TRICKLE_CONFIG: file };
    const before = await cli(["verify", "items_cents_v1"], env);
    expect(before.code, before.stderr).toBe(1);
    expect(before.stdout).toContain(`items_cents_v1: ${ROWS.toLocaleString("en-US")} rows still need work`);

    // --config wins over TRICKLE_CONFIG, which names a file that does not exist here.
    const run = await cli(["run", "--until-done", "--config", file], {
      DATABASE_URL: db.url,
      TRICKLE_CONFIG: join(db.dir, "missing.json"),
      TRICKLE_MIGRATIONS: "items_cents_v1",
    });
    expect(run.code, run.stderr).toBe(0);
    expect(await wrongRows(client)).toBe(0);
    expect((await rawStateRow(client, "items_cents_v1"))?.status).toBe("done");

    const after = await cli(["verify", "items_cents_v1"], env);
    expect(after.code, after.stderr).toBe(0);
    const retry = await cli(["retry", "items_cents_v1"], env);
    expect(retry.stderr).not.toMatch(/unknown migration|no migration named/);
  }, 120_000);

  it("through the in-process service (createService)", async () => {
    const config = await loadNodeConfig({ TRICKLE_CONFIG: file, TRICKLE_MIGRATIONS: "items_cents_v1" });
    const service = createService({ client: db.open(), config, log: () => {} });
    await service.start();
    try {
      await waitUntil(
        "items_cents_v1 done",
        async () => (await rawStateRow(client, "items_cents_v1"))?.status === "done",
        60_000,
      );
    } finally {
      await service.stop();
    }
    expect(await wrongRows(client)).toBe(0);
  });

  it("through the Node server (startNodeServer, engine thread included)", async () => {
    const server = await startNodeServer({
      env: { DATABASE_URL: db.url, PORT: "0", TRICKLE_CONFIG: file },
      log: () => {},
    });
    try {
      await waitUntil(
        "items_cents_v1 done",
        async () => (await rawStateRow(client, "items_cents_v1"))?.status === "done",
        60_000,
      );
      // The HTTP thread serves it too: it registered the same user-defined migration as the engine thread.
      await waitUntil(
        "the HTTP thread to serve it done",
        async () => {
          const served = (await (await fetch(`${server.url}api/perf`)).json()) as {
            asyncMigrations: { name: string; status: string }[];
          };
          return served.asyncMigrations.some((m) => m.name === "items_cents_v1" && m.status === "done");
        },
        60_000,
      );
    } finally {
      await server.stop();
    }
    expect(await wrongRows(client)).toBe(0);
  });

  it("an invalid definition fails before anything is written (CLI exit 2, one line; server start refused)", async () => {
    const bad = join(db.dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ migrations: [{ ...ITEMS_CENTS, verify: "" }] }));
    const r = await cli(["run"], { DATABASE_URL: db.url, TRICKLE_CONFIG: bad });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(
      /^trickle: TRICKLE_CONFIG \(.*bad\.json\): migration "items_cents_v1" \(migrations\[0\]\): field "verify"/,
    );
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    await expect(
      startNodeServer({ env: { DATABASE_URL: db.url, PORT: "0", TRICKLE_CONFIG: bad }, log: () => {} }),
    ).rejects.toThrow(/^TRICKLE_CONFIG/);
    const state = await client.execute("SELECT 1 FROM sqlite_master WHERE name = '_async_migrations'");
    expect(state.rows).toHaveLength(0);
    expect(await wrongRows(client)).toBe(ROWS);
    expect(existsSync(join(db.dir, "data"))).toBe(false);
  });
});

describe("a .ts module with a custom step", () => {
  let db: TempDb;
  afterEach(() => db.cleanup());

  it("runs through the CLI", async () => {
    db = tempDb();
    const client = db.open();
    await createItems(client);
    const module = join(db.dir, "migrations.ts");
    writeFileSync(
      module,
      `interface Range { candidates: string; args: Record<string, unknown> }
export const migrations = [
  {
    name: "items_cents_custom_v1",
    table: "items",
    key: "id",
    filter: "cents IS NULL",
    step: (range: Range) => [{ sql: \`UPDATE items SET cents = price * 100 WHERE \${range.candidates}\`, args: range.args }],
  },
];
`,
    );
    const r = await cli(["run", "--until-done", "--config", module], {
      DATABASE_URL: db.url,
      TRICKLE_MIGRATIONS: "items_cents_custom_v1",
    });
    expect(r.code, r.stderr).toBe(0);
    expect(await wrongRows(client)).toBe(0);
    expect((await rawStateRow(client, "items_cents_custom_v1"))?.status).toBe("done");
  }, 60_000);
});
