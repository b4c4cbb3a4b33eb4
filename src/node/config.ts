/**
 * The configuration on runtimes with a file system (Node, and Deno and Bun through their Node compatibility):
 * the settings, plus the user-defined migrations `TRICKLE_CONFIG` (or the CLI's `--config`, which wins) names.
 *
 * `TRICKLE_CONFIG` is one of:
 * - inline JSON text starting with `{` (the form Workers use; handy in a container's environment too);
 * - a path ending in `.ts`, `.mts`, `.js` or `.mjs`: a module loaded with `import()` that exports `migrations`
 *   (or a default `{ migrations }`); its definitions may give a custom `step` function. A `.ts` module needs a
 *   TypeScript loader (`npm run trickle` and the tests run under tsx; `npm start`, the `trickle` bin and every
 *   deployment run compiled JavaScript, so they take `.js`/`.mjs`);
 * - any other path: a JSON file.
 * Relative paths are relative to the working directory. Errors name the variable (or `--config`).
 */
import { readFile } from "node:fs/promises";
import { extname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type ConfigLabel, configFromSettings, type ServiceConfig } from "../config.ts";
import { migrationsFromModule, parseMigrationsJson } from "../migrations/config-file.ts";
import type { MigrationDefinition } from "../migrations/define.ts";
import { BUILTIN_MIGRATIONS } from "../migrations/registry.ts";
import { type Env, loadSettings } from "../settings.ts";

const MODULE_EXTENSIONS = new Set([".ts", ".mts", ".js", ".mjs"]);

/** Reads the definitions `source` names (see above). Throws an `Error` starting with `label`. */
export async function readMigrationsConfig(
  source: string,
  label: ConfigLabel = "TRICKLE_CONFIG",
): Promise<MigrationDefinition[]> {
  const text = source.trim();
  if (text.startsWith("{")) return named(label, "inline JSON", () => parseMigrationsJson(text));
  const path = resolve(text);
  if (MODULE_EXTENSIONS.has(extname(path).toLowerCase())) {
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    } catch (error) {
      throw new Error(`${label}: cannot load ${text}: ${(error as Error)?.message ?? String(error)}`);
    }
    return named(label, text, () => migrationsFromModule(module));
  }
  let json: string;
  try {
    json = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(
      `${label}: cannot read ${text}: ${code === "ENOENT" ? "no such file" : (error as Error).message}`,
    );
  }
  return named(label, text, () => parseMigrationsJson(json));
}

function named<T>(label: ConfigLabel, source: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new Error(`${label} (${source}): ${(error as Error).message}`);
  }
}

/**
 * Loads every setting and the migrations they select: the built-ins plus the user's definitions. Throws an
 * `Error` naming the variable (or `--config`) at fault; nothing has been written anywhere by then. Workers-only
 * variables (`DATABASE_BINDING`) are refused: these runtimes open `DATABASE_URL`.
 */
export async function loadNodeConfig(
  env: Env,
  options: { readonly configFile?: string | undefined } = {},
): Promise<ServiceConfig> {
  const settings = loadSettings(env, { workers: false });
  const label: ConfigLabel = options.configFile !== undefined ? "--config" : "TRICKLE_CONFIG";
  const source = options.configFile ?? settings.migrationsConfig;
  const user = source === undefined ? [] : await readMigrationsConfig(source, label);
  return configFromSettings(settings, BUILTIN_MIGRATIONS, user, label);
}
