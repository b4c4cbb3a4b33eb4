/**
 * The CLI program: `main(argv, env)` parses the command line, loads the configuration exactly as the server does,
 * opens the database and runs the command, returning its exit code. src/cli/main.ts is the process entry.
 *
 * Exit codes: 0 ok; 1 a migration failed, a control action conflicts, or verify found work left (or a migration
 * that cannot apply); 2 usage or configuration errors (bad flags, bad environment or `--config` file, database
 * missing or cannot be opened, unknown migration); 130 / 143 when `run` was stopped by SIGINT / SIGTERM.
 *
 * A usage error is one line and a pointer to the command's help, on stderr. Only `seed` and `run` create a
 * database that does not exist; every other command reports "no database at …" (exit 2) and creates nothing.
 */
import type { Client } from "@libsql/client";
import type { ServiceConfig } from "../config.ts";
import type { MigrationDefinition } from "../migrations/define.ts";
import { selectMigrations } from "../migrations/registry.ts";
import { loadNodeConfig } from "../node/config.ts";
import { databaseConfig, MissingDatabaseError, openDatabase } from "../node/database.ts";
import { checkSeedOptions } from "../seed/corescope.ts";
import { type Command, commandHelp, parseCommandLine, UsageError } from "./args.ts";
import {
  controlCommand,
  dryRunCommand,
  failuresCommand,
  runCommand,
  seedCommand,
  statusCommand,
  verifyCommand,
} from "./commands.ts";
import { fleetCommand } from "./fleet.ts";
import { err, messageOf, out } from "./output.ts";

/** One line naming the mistake, then where to read more; never the whole help. */
function usageError(error: UsageError): number {
  const command = error.command === undefined ? "" : ` ${error.command}`;
  err(`trickle${command}: ${error.message}`);
  err(`see trickle${command} --help`);
  return 2;
}

/** The commands that may create the database file: the ones that write data on purpose. */
const CREATES_DATABASE: ReadonlySet<Command["name"]> = new Set(["seed", "run"]);

/** The migrations a command acts on: `--migrations` (from the whole catalogue), else the configured ones. */
function enabledMigrations(
  command: Command["name"],
  flag: string | undefined,
  config: ServiceConfig,
): readonly MigrationDefinition[] {
  if (flag === undefined) return config.migrations;
  try {
    return selectMigrations(flag, config.catalogue);
  } catch (error) {
    throw new UsageError(`--migrations: ${messageOf(error)}`, command);
  }
}

function byName(command: Command["name"], name: string, config: ServiceConfig): MigrationDefinition {
  const found = config.catalogue.find((m) => m.name === name);
  if (!found) {
    throw new UsageError(
      `unknown migration "${name}"; known: ${config.catalogue.map((m) => m.name).join(", ")}`,
      command,
    );
  }
  return found;
}

/**
 * `verify`, `dry-run` and `failures` take one migration by name (any in the catalogue: built-in or
 * user-defined), or the enabled ones.
 */
function targetMigrations(
  command: Extract<Command, { name: "verify" | "dry-run" | "failures" }>,
  config: ServiceConfig,
): readonly MigrationDefinition[] {
  if (command.migration === undefined) return enabledMigrations(command.name, command.migrations, config);
  return [byName(command.name, command.migration, config)];
}

/**
 * `pause` & co. act through a runner over the enabled migrations; one named that is not enabled (but known) is
 * added, with the migrations it depends on, so it can be controlled too.
 */
function controlMigrations(
  command: Extract<Command, { name: "pause" | "resume" | "cancel" | "retry" }>,
  config: ServiceConfig,
): readonly MigrationDefinition[] {
  const enabled = [...enabledMigrations(command.name, command.migrations, config)];
  const pending = [command.migration];
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (enabled.some((m) => m.name === name)) continue;
    const found = config.catalogue.find((m) => m.name === name);
    if (!found) continue; // the controls answer "no migration named …" (exit 2)
    enabled.push(found);
    pending.push(...(found.dependsOn ?? []));
  }
  return enabled;
}

export async function main(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Promise<number> {
  let command: Command;
  let configFile: string | undefined;
  try {
    ({ command, configFile } = parseCommandLine(argv));
    if (command.name === "help") {
      out(commandHelp(command.topic ?? "help"));
      return 0;
    }
    if (command.name === "seed") {
      try {
        checkSeedOptions(command);
      } catch (error) {
        throw new UsageError(messageOf(error), "seed");
      }
    }
  } catch (error) {
    if (error instanceof UsageError) return usageError(error);
    throw error;
  }

  // Every setting and every migration definition, exactly as the server loads them (src/node/config.ts), for
  // every command: a bad value is one line naming the variable and exit 2, before anything is opened.
  let config: ServiceConfig;
  try {
    config = await loadNodeConfig(env, { configFile });
  } catch (error) {
    err(`trickle: ${messageOf(error)}`);
    return 2;
  }

  let migrations: readonly MigrationDefinition[] = [];
  try {
    // A fleet opens its tenants' databases itself (DATABASE_URL is not one of them).
    if (command.name === "fleet")
      return await fleetCommand(command, config, enabledMigrations(command.name, command.migrations, config));
    if (command.name === "verify" || command.name === "dry-run" || command.name === "failures") {
      migrations = targetMigrations(command, config);
    } else if (command.name !== "status" && command.name !== "seed") {
      migrations =
        command.name === "run"
          ? enabledMigrations(command.name, command.migrations, config)
          : controlMigrations(command, config);
    }
  } catch (error) {
    if (error instanceof UsageError) return usageError(error);
    throw error;
  }

  let client: Client;
  try {
    client = await openDatabase(databaseConfig(config), { create: CREATES_DATABASE.has(command.name) });
    await client.execute("SELECT 1"); // a remote client connects lazily; fail here, not mid-command
  } catch (error) {
    if (error instanceof MissingDatabaseError) {
      err(`trickle: ${error.message}`);
      return 2;
    }
    err(`trickle: cannot open the database named by DATABASE_URL: ${messageOf(error)}`);
    return 2;
  }

  try {
    switch (command.name) {
      case "seed":
        return await seedCommand(client, command);
      case "status":
        return await statusCommand(client, command, config);
      case "run":
        return await runCommand(client, command, migrations, config);
      case "verify":
        return await verifyCommand(client, migrations);
      case "dry-run":
        return await dryRunCommand(client, command, migrations, config);
      case "failures":
        return await failuresCommand(client, command, migrations, config);
      default:
        return await controlCommand(client, command.name, command.migration, migrations, config);
    }
  } catch (error) {
    err(`trickle: ${command.name}: ${messageOf(error)}`);
    return 1;
  } finally {
    client.close();
  }
}
