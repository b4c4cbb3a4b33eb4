/**
 * Design invariant 9 (portability), checked on the artefact Cloudflare would receive:
 * - `wrangler deploy --dry-run --outdir …` bundles src/worker.ts offline with the repository's wrangler.toml, and
 *   the bundle imports no `node:*` or Node built-in module, carries no native libSQL code, nothing from src/node/,
 *   and takes @libsql/client's web entry;
 * - the check can fail: a Worker that imports @libsql/client's Node entry does not build without
 *   `nodejs_compat`, and with it the scan finds the leak;
 * - wrangler.toml: `main`, a `compatibility_date` the bundled workerd accepts, the every-minute cron, and
 *   `[vars]` that pass the service's own configuration check with a slice well under the cron CPU limit.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { builtinModules, createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { unstable_readConfig } from "wrangler";
import { loadConfig } from "../../src/config.ts";
import { REPO_ROOT, wranglerDryRun } from "./helpers/wrangler.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** `wrangler deploy --dry-run` into a temp dir; returns the exit status, the output and the bundle's code. */
async function dryRun(
  extra: readonly string[],
): Promise<{ status: number | null; output: string; code: string }> {
  const outdir = mkdtempSync(join(tmpdir(), "trickle-bundle-"));
  dirs.push(outdir);
  const build = await wranglerDryRun(outdir, extra);
  const code = build.bundles.map((file) => readFileSync(file, "utf8")).join("\n");
  return { status: build.status, output: build.output, code };
}

const BUILTINS = builtinModules.filter((m) => !m.startsWith("_")).map((m) => m.replace(/[/]/g, "\\/"));
const LEAKS: readonly { what: string; pattern: RegExp }[] = [
  {
    what: "a node:* import",
    pattern: /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|\bimport\s+)["']node:[\w/]+["']/,
  },
  {
    what: "a Node built-in import",
    pattern: new RegExp(
      `(?:\\bfrom\\s*|\\bimport\\s*\\(\\s*|\\brequire\\s*\\(\\s*)["'](?:${BUILTINS.join("|")})["']`,
    ),
  },
  { what: "the native libsql package", pattern: /node_modules\/libsql\// },
  { what: "a prebuilt libSQL binary package", pattern: /@libsql\/(?:linux|darwin|win32)-/ },
  {
    what: "@libsql/client's native (file:) client",
    pattern: /@libsql\/client\/lib-esm\/(?:sqlite3|node)\.js/,
  },
  { what: "a .node addon", pattern: /["'][^"']+\.node["']/ },
  { what: "trickle's Node-only modules", pattern: /\/\/ src\/node\/|@hono\/node-server/ },
];

/** What in a bundle could only run on Node; empty when it is portable. */
function nodeOnlyLeaks(code: string): string[] {
  return LEAKS.filter(({ pattern }) => pattern.test(code)).map(({ what, pattern }) => {
    const at = code.search(pattern);
    return `${what}: ${JSON.stringify(code.slice(Math.max(0, at - 40), at + 80))}`;
  });
}

describe("the Workers bundle (wrangler deploy --dry-run)", () => {
  it("builds src/worker.ts offline with nothing Node-only in it", async () => {
    const build = await dryRun([]);
    expect(build.status, build.output).toBe(0);
    expect(build.code.length).toBeGreaterThan(10_000);
    expect(nodeOnlyLeaks(build.code)).toEqual([]);
    // The remote client it does carry: @libsql/client's web entry (Hrana over HTTP).
    expect(build.code).toMatch(/node_modules\/@libsql\/client\/lib-esm\/web\.js/);
    expect(build.code).toMatch(/\/\/ src\/worker\/handlers\.ts/);
  });

  it("catches a Worker that imports @libsql/client's Node entry", async () => {
    const fixture = "test/edge/fixtures/node-only-worker.ts";
    const plain = await dryRun([fixture]);
    expect(plain.status).not.toBe(0);
    expect(plain.output).toMatch(/nodejs_compat/);

    const withCompat = await dryRun([fixture, "--compatibility-flags", "nodejs_compat"]);
    expect(withCompat.status, withCompat.output).toBe(0);
    const leaks = nodeOnlyLeaks(withCompat.code);
    expect(leaks.some((l) => l.startsWith("a node:* import"))).toBe(true);
    expect(leaks.some((l) => l.startsWith("the native libsql package"))).toBe(true);
  });
});

describe("wrangler.toml", () => {
  it("names the entry, a compatibility date the bundled workerd accepts, the cron, and valid [vars]", () => {
    const config = unstable_readConfig({ config: join(REPO_ROOT, "wrangler.toml") });
    expect(config.main).toBe(join(REPO_ROOT, "src", "worker.ts"));
    expect(config.triggers.crons).toEqual(["* * * * *"]);
    expect(config.compatibility_flags).toEqual([]);

    // workerd 1.YYYYMMDD.n rejects a compatibility_date later than its own build date.
    const workerdVersion = (createRequire(import.meta.url)("workerd/package.json") as { version: string })
      .version;
    const build = /^1\.(\d{4})(\d{2})(\d{2})\./.exec(workerdVersion);
    expect(build, workerdVersion).not.toBeNull();
    const workerdDate = `${build![1]}-${build![2]}-${build![3]}`;
    expect(config.compatibility_date).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(config.compatibility_date! <= workerdDate).toBe(true);

    // The [vars] pass the service's configuration check; no secret is written in the file.
    const vars = Object.fromEntries(
      Object.entries(config.vars).filter((e): e is [string, string] => typeof e[1] === "string"),
    );
    for (const secret of ["DATABASE_AUTH_TOKEN", "ADMIN_TOKEN", "CRON_SECRET"])
      expect(vars).not.toHaveProperty(secret);
    const service = loadConfig({ ...vars, DATABASE_URL: "libsql://db.example.com" });
    expect(service.migrations.map((m) => m.name)).toEqual(["tx_last_seen_backfill_v1"]);
    // Paid plan: a cron on a schedule under an hour gets 30 s of CPU; the slice stays well inside it.
    expect(service.tuning.sliceBudgetMs).toBeLessThanOrEqual(20_000);
    expect(service.tuning.leaseTtlMs).toBeGreaterThan(service.tuning.sliceBudgetMs);
  });
});
