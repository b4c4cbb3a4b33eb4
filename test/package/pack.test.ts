/**
 * The npm package as a user gets it: `npm pack` (which builds dist/ with `tsc`), the tarball installed into a
 * fresh project next to a tiny consumer, nothing from this repository on the consumer's module path.
 * - The tarball holds dist/ (JavaScript + .d.ts), README, LICENSE and package.json: no sources, tests,
 *   torture, benchmarks or databases.
 * - The consumer (strict, `exactOptionalPropertyTypes`, NodeNext) imports the library, the Worker entry and the
 *   Node server; it type-checks with the repository's `tsc` (library declarations checked too: no
 *   `skipLibCheck`), compiles, and runs one backfill through the library on an in-memory database.
 * - `npx trickle --help` works, and `trickle run --until-done` backfills a file database from a TRICKLE_CONFIG
 *   JSON migration, without a TypeScript loader anywhere.
 * - The compiled Node server (`dist/node.js`, what `npm start` and the Docker image run) starts its engine worker
 *   thread, backfills a database, reports it done on /api/healthz and stops on SIGTERM with exit code 0.
 *
 * Installing uses `--prefer-offline`: every dependency is already in the npm cache after `npm ci`, so only
 * package metadata not cached yet is fetched from the registry.
 */
import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TSC = join(REPO, "node_modules", "typescript", "bin", "tsc");
const PACKAGE = "trickle-backfill";
const ROWS = 3000;

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end (no shell), capturing its output. The limit is a safety net, not a measurement. */
function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: Record<string, string>; limitMs?: number },
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, NO_COLOR: "1", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const limit = setTimeout(() => child.kill("SIGKILL"), options.limitMs ?? 240_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(limit);
      resolve({ code, stdout, stderr });
    });
  });
}

function expectSuccess(result: Result, what: string): void {
  if (result.code !== 0) {
    throw new Error(
      `${what} exited with ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
    );
  }
}

const CONSUMER_TS = `import { createClient } from "@libsql/client";
import { createService, defineMigration, loadConfig, type Service } from "${PACKAGE}";
import { type NodeServerOptions, startNodeServer } from "${PACKAGE}/node";
import worker from "${PACKAGE}/worker";

const itemsDone = defineMigration({
  name: "items_done_v1",
  description: "Mark every item done",
  table: "items",
  key: "id",
  filter: "done = 0",
  set: "done = 1",
});

async function left(client: ReturnType<typeof createClient>): Promise<number> {
  const result = await client.execute("SELECT count(*) AS n FROM items WHERE done = 0");
  return Number(result.rows[0]?.n);
}

const client = createClient({ url: "file::memory:", intMode: "bigint" });
await client.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, done INTEGER NOT NULL)");
await client.execute("INSERT INTO items (id, done) VALUES (1, 0), (2, 0), (3, 1), (10, 0)");
const service: Service = createService({
  client,
  config: { ...loadConfig({}, []), migrations: [itemsDone] },
  log: () => {},
});
let slices = 0;
while ((await left(client)) > 0 && slices < 100) {
  await service.tick(2000);
  slices++;
}
const options: NodeServerOptions = { handleSignals: false };
console.log(
  JSON.stringify({
    left: await left(client),
    worker: [typeof worker.fetch, typeof worker.scheduled],
    node: typeof startNodeServer,
    options: Object.keys(options),
  }),
);
client.close();
`;

const CONSUMER_TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    lib: ["ES2022", "DOM"],
    types: ["node"],
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    skipLibCheck: false,
    outDir: "out",
  },
  include: ["consumer.ts"],
};

const MIGRATIONS = {
  migrations: [
    {
      name: "items_cents_v1",
      table: "items",
      key: "id",
      filter: "cents IS NULL",
      set: "cents = price * 100",
    },
  ],
};

let root: string;
let tarball: string;
let consumer: string;

/** A file database with `ROWS` items whose `cents` the migration fills. */
async function itemsDatabase(name: string): Promise<string> {
  const path = join(consumer, name);
  const client = createClient({ url: `file:${path}` });
  try {
    await client.batch(
      [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, price INTEGER NOT NULL, cents INTEGER)",
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS})
         INSERT INTO items (id, price) SELECT i * 7, i % 97 FROM n`,
      ],
      "write",
    );
  } finally {
    client.close();
  }
  return path;
}

async function expectBackfilled(path: string): Promise<void> {
  const client = createClient({ url: `file:${path}` });
  try {
    const items = await client.execute(
      "SELECT count(*) AS total, sum(cents IS NOT NULL AND cents = price * 100) AS right FROM items",
    );
    expect(items.rows[0]).toMatchObject({ total: ROWS, right: ROWS });
    const state = await client.execute(
      "SELECT status, rows_processed FROM _async_migrations WHERE name = 'items_cents_v1'",
    );
    expect(state.rows[0]).toMatchObject({ status: "done", rows_processed: ROWS });
  } finally {
    client.close();
  }
}

beforeAll(async () => {
  root = realpathSync(mkdtempSync(join(tmpdir(), "trickle-pack-")));
  const packDir = join(root, "pack");
  consumer = join(root, "consumer");
  mkdirSync(packDir);
  mkdirSync(consumer);

  // `prepack` builds dist/ from src/ with tsconfig.build.json.
  expectSuccess(
    await run("npm", ["pack", "--pack-destination", packDir, "--silent"], { cwd: REPO }),
    "npm pack",
  );
  const packed = readdirSync(packDir).filter((f) => f.endsWith(".tgz"));
  expect(packed).toHaveLength(1);
  tarball = join(packDir, packed[0]!);

  writeFileSync(
    join(consumer, "package.json"),
    `${JSON.stringify({ name: "trickle-consumer", version: "1.0.0", private: true, type: "module" }, null, 2)}\n`,
  );
  writeFileSync(join(consumer, "tsconfig.json"), `${JSON.stringify(CONSUMER_TSCONFIG, null, 2)}\n`);
  writeFileSync(join(consumer, "consumer.ts"), CONSUMER_TS);
  writeFileSync(join(consumer, "migrations.json"), `${JSON.stringify(MIGRATIONS, null, 2)}\n`);
  expectSuccess(
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball], { cwd: consumer }),
    "npm install <tarball>",
  );
}, 300_000);

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe(`the npm package (${PACKAGE})`, () => {
  it("ships dist/ with declarations, README, LICENSE and package.json, and nothing else", async () => {
    const listing = await run("tar", ["-tzf", tarball], { cwd: root });
    expectSuccess(listing, "tar -tzf");
    const files = listing.stdout
      .split("\n")
      .filter(Boolean)
      .map((f) => f.replace(/^package\//, ""));
    for (const required of [
      "package.json",
      "README.md",
      "LICENSE",
      "dist/index.js",
      "dist/index.d.ts",
      "dist/worker.js",
      "dist/worker.d.ts",
      "dist/node.js",
      "dist/node/index.js",
      "dist/node/index.d.ts",
      "dist/node/runner-worker.js",
      "dist/bin/trickle.js",
    ]) {
      expect(files).toContain(required);
    }
    const outside = files.filter(
      (f) => !f.startsWith("dist/") && !["package.json", "README.md", "LICENSE"].includes(f),
    );
    expect(outside).toEqual([]);
    expect(
      files.filter(
        (f) => /^(test|torture|bench|data|src)\//.test(f) || (/\.(db|ts)$/.test(f) && !f.endsWith(".d.ts")),
      ),
    ).toEqual([]);

    const bin = await run("tar", ["-xzOf", tarball, "package/dist/bin/trickle.js"], { cwd: root });
    expect(bin.stdout.startsWith("#!/usr/bin/env node\n")).toBe(true);
  });

  it("type-checks a strict NodeNext consumer (exactOptionalPropertyTypes), which then runs a backfill", async () => {
    const tsc = await run(process.execPath, [TSC, "-p", "."], { cwd: consumer });
    expectSuccess(tsc, "tsc (consumer)");
    const result = await run(process.execPath, ["out/consumer.js"], { cwd: consumer });
    expectSuccess(result, "node out/consumer.js");
    expect(JSON.parse(result.stdout.trim())).toEqual({
      left: 0,
      worker: ["function", "function"],
      node: "function",
      options: ["handleSignals"],
    });
  });

  it("installs the trickle bin: npx trickle --help", async () => {
    // `--offline`: should the bin be missing, npx must fail here rather than fetch the registry's other `trickle`.
    expect(existsSync(join(consumer, "node_modules", ".bin", "trickle"))).toBe(true);
    const help = await run("npx", ["--offline", "trickle", "--help"], { cwd: consumer });
    expectSuccess(help, "npx trickle --help");
    expect(help.stdout + help.stderr).toMatch(/\brun\b/);
    expect(help.stdout + help.stderr).toMatch(/\bstatus\b/);
  });

  it("backfills a file database with `trickle run --until-done` from a TRICKLE_CONFIG migration", async () => {
    const path = await itemsDatabase("cli.db");
    const result = await run("npx", ["--offline", "trickle", "run", "--until-done"], {
      cwd: consumer,
      env: {
        DATABASE_URL: `file:${path}`,
        TRICKLE_CONFIG: "migrations.json",
        TRICKLE_MIGRATIONS: "items_cents_v1",
      },
    });
    expectSuccess(result, "trickle run --until-done");
    await expectBackfilled(path);
  });

  it("runs the compiled Node server (engine worker thread): backfills, reports done, stops on SIGTERM", async () => {
    const path = await itemsDatabase("server.db");
    const child = spawn(process.execPath, [join(consumer, "node_modules", PACKAGE, "dist", "node.js")], {
      cwd: consumer,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "",
        DATABASE_URL: `file:${path}`,
        TRICKLE_CONFIG: "migrations.json",
        TRICKLE_MIGRATIONS: "items_cents_v1",
        PORT: "0",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      let port: string | undefined;
      while (port === undefined) {
        if (child.exitCode !== null)
          throw new Error(`dist/node.js exited with ${child.exitCode}:\n${output}`);
        port = /serving on http:\/\/localhost:(\d+)\//.exec(output)?.[1];
        if (port === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      let status: unknown;
      while (status !== "done") {
        if (child.exitCode !== null)
          throw new Error(`dist/node.js exited with ${child.exitCode}:\n${output}`);
        const response = await fetch(`http://127.0.0.1:${port}/api/healthz`);
        const health = (await response.json()) as { async_migrations: { name: string; status: string }[] };
        status = health.async_migrations.find((m) => m.name === "items_cents_v1")?.status;
        if (status === "failed") throw new Error(`items_cents_v1 failed:\n${output}`);
        if (status !== "done") await new Promise((r) => setTimeout(r, 100));
      }
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    await expectBackfilled(path);
  });
});
