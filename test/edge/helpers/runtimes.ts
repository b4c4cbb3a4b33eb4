/**
 * Where the Deno and Bun binaries installed from npm (`deno`, `bun` devDependencies) live. Both packages ship
 * the executable in a per-platform optional dependency; the `node_modules/.bin` entries are a Node wrapper
 * (Deno) or a copy made by a postinstall script (Bun), so the platform package's binary is preferred and the
 * `.bin` entry is the fallback.
 */
import { existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { REPO_ROOT } from "./wrangler.ts";

const require = createRequire(import.meta.url);

function packageDir(name: string): string | undefined {
  try {
    return dirname(require.resolve(`${name}/package.json`));
  } catch {
    return undefined;
  }
}

function firstExecutable(candidates: readonly (string | undefined)[]): string | undefined {
  return candidates.find((path) => path !== undefined && existsSync(path) && statSync(path).size > 1_000_000);
}

const DENO_PLATFORM: Readonly<Record<string, string>> = {
  "linux-x64": "@deno/linux-x64-glibc",
  "linux-arm64": "@deno/linux-arm64-glibc",
  "darwin-x64": "@deno/darwin-x64",
  "darwin-arm64": "@deno/darwin-arm64",
};
const BUN_PLATFORM: Readonly<Record<string, string>> = {
  "linux-x64": "@oven/bun-linux-x64",
  "linux-arm64": "@oven/bun-linux-aarch64",
  "darwin-x64": "@oven/bun-darwin-x64",
  "darwin-arm64": "@oven/bun-darwin-aarch64",
};
const platform = `${process.platform}-${process.arch}`;

/** The Deno executable: the platform package's binary, else the npm wrapper. */
export function denoBinary(): string {
  const pkg = DENO_PLATFORM[platform];
  const dir = pkg ? packageDir(pkg) : undefined;
  return (
    firstExecutable([dir && join(dir, "deno"), join(REPO_ROOT, "node_modules", "deno", "deno")]) ??
    join(REPO_ROOT, "node_modules", ".bin", "deno")
  );
}

/** The Bun executable: the binary the postinstall placed, else the platform package's, else `.bin/bun`. */
export function bunBinary(): string {
  const pkg = BUN_PLATFORM[platform];
  const dir = pkg ? packageDir(pkg) : undefined;
  const bunDir = packageDir("bun");
  return (
    firstExecutable([bunDir && join(bunDir, "bin", "bun.exe"), dir && join(dir, "bin", "bun")]) ??
    join(REPO_ROOT, "node_modules", ".bin", "bun")
  );
}
