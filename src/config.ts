/**
 * The service's configuration: the settings (src/settings.ts, where every variable is read and documented)
 * plus the migrations they select. Portable: `TRICKLE_CONFIG` is read here only in its inline form (JSON text);
 * a file or module path is read by the Node entries (src/node/config.ts), which pass the definitions in.
 */
import { migrationsFromConfig, parseMigrationsJson } from "./migrations/config-file.ts";
import type { MigrationDefinition } from "./migrations/define.ts";
import { BUILTIN_MIGRATIONS, buildCatalogue, selectMigrations } from "./migrations/registry.ts";
import { type Env, loadSettings, type Settings } from "./settings.ts";

export {
  DEFAULT_PORT,
  DEFAULT_SNAPSHOT_TTL_MS,
  DEFAULT_TICK_MS,
  type Env,
  loadSettings,
  type Settings,
} from "./settings.ts";

export interface ServiceConfig extends Settings {
  /** The migrations this service registers and runs (`TRICKLE_MIGRATIONS`, default: see `buildCatalogue`). */
  readonly migrations: readonly MigrationDefinition[];
  /** Every migration known here — built-in and user-defined — enabled or not (commands that take a name). */
  readonly catalogue: readonly MigrationDefinition[];
}

/** Where user-defined migrations came from, for messages: `TRICKLE_CONFIG` or the CLI's `--config`. */
export type ConfigLabel = "TRICKLE_CONFIG" | "--config";

/**
 * Parses and checks the configuration. Throws an `Error` naming the first bad variable.
 *
 * `available` is the catalogue's fixed part (default: the built-in migrations). `userMigrations` are the
 * definitions `TRICKLE_CONFIG` names, already loaded by a runtime that can read files; when they are not given,
 * `TRICKLE_CONFIG` must be inline JSON (the form Workers use).
 */
export function loadConfig(
  env: Env,
  available: readonly MigrationDefinition[] = BUILTIN_MIGRATIONS,
  userMigrations?: readonly MigrationDefinition[],
): ServiceConfig {
  const settings = loadSettings(env);
  const user = userMigrations ?? inlineMigrations(settings.migrationsConfig);
  return configFromSettings(settings, available, user);
}

/** The settings plus the migrations they select from `available` and the user's definitions. */
export function configFromSettings(
  settings: Settings,
  available: readonly MigrationDefinition[],
  user: readonly MigrationDefinition[],
  label: ConfigLabel = "TRICKLE_CONFIG",
): ServiceConfig {
  let catalogue: ReturnType<typeof buildCatalogue>;
  try {
    catalogue = buildCatalogue(available, user);
  } catch (error) {
    throw new Error(`${label}: ${(error as Error).message}`);
  }
  let migrations: MigrationDefinition[];
  try {
    migrations = selectMigrations(settings.migrationNames, catalogue.available, catalogue.defaults);
  } catch (error) {
    throw new Error(`TRICKLE_MIGRATIONS: ${(error as Error).message}`);
  }
  return { ...settings, migrations, catalogue: catalogue.available };
}

/**
 * `TRICKLE_CONFIG` where no file can be read: inline JSON text (starting with `{`), or already an object (a
 * Workers `[vars]` binding). Undefined means no user migrations. Errors name `TRICKLE_CONFIG`.
 */
export function inlineMigrations(config: unknown): MigrationDefinition[] {
  if (config === undefined) return [];
  try {
    if (typeof config === "string") {
      if (!config.trimStart().startsWith("{")) {
        throw new Error(
          "names a file, which this runtime cannot read; give the JSON itself (starting with {) or an object binding",
        );
      }
      return parseMigrationsJson(config);
    }
    return migrationsFromConfig(config, { allowStep: false });
  } catch (error) {
    throw new Error(`TRICKLE_CONFIG: ${(error as Error).message}`);
  }
}
