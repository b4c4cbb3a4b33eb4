/**
 * `npm run trickle -- <command>`: seed a CoreScope-shaped database, run and control migrations, inspect them.
 *
 * Exit codes: 0 ok; 1 a migration failed, a control action conflicts, or verify found work left; 2 usage or
 * configuration errors (bad flags, bad environment, database cannot be opened, unknown migration);
 * 130 / 143 when `run` was stopped by SIGINT / SIGTERM.
 */
import type { Client } from "@libsql/client";
import { loadOperatorConfig, type OperatorConfig } from "../engine/operator-config.ts";
import type { MigrationDefinition } from "../migrations/define.ts";
import { BUILTIN_MIGRATIONS, selectMigrations } from "../migrations/registry.ts";
import { databaseConfigFromEnv, openDatabase } from "../node/database.ts";
import { checkSeedOptions } from "../seed/corescope.ts";
import { type Command, parseCommand, USAGE, UsageError } from "./args.ts";
import {
  controlCommand,
  dryRunCommand,
  failuresCommand,
  runCommand,
  seedCommand,
  statusCommand,
  verifyCommand,
} from "./commands.ts";
import { err, messageOf, out } from "./output.ts";

function usageError(message: string): number {
  err(USAGE);
  err("");
  err(`trickle: error: ${message}`);
  return 2;
}

/** The migrations a command acts on: `--migrations`, else `TRICKLE_MIGRATIONS`, else the defaults. */
function enabledMigrations(
  flag: string | undefined,
  env: Record<string, string | undefined>,
): MigrationDefinition[] {
  try {
    return selectMigrations(flag ?? env.TRICKLE_MIGRATIONS);
  } catch (error) {
    throw new UsageError(
      `${flag === undefined ? "TRICKLE_MIGRATIONS" : "--migrations"}: ${messageOf(error)}`,
    );
  }
}

/** `verify`, `dry-run` and `failures` take one migration by name (any built-in), or the enabled ones. */
function targetMigrations(
  command: Extract<Command, { name: "verify" | "dry-run" | "failures" }>,
  env: Record<string, string | undefined>,
) {
  if (command.migration === undefined) return enabledMigrations(command.migrations, env);
  const found = BUILTIN_MIGRATIONS.find((m) => m.name === command.migration);
  if (!found) {
    throw new UsageError(
      `unknown migration "${command.migration}"; known: ${BUILTIN_MIGRATIONS.map((m) => m.name).join(", ")}`,
    );
  }
  return [found];
}

export async function main(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Promise<number> {
  let command: Command;
  let migrations: MigrationDefinition[] = [];
  let operator: OperatorConfig;
  try {
    command = parseCommand(argv);
    if (command.name === "help") {
      out(USAGE);
      return 0;
    }
    try {
      operator = loadOperatorConfig(env);
    } catch (error) {
      throw new UsageError(messageOf(error));
    }
    // Everything that can be checked without the database is checked before opening it.
    if (command.name === "seed") {
      try {
        checkSeedOptions(command);
      } catch (error) {
        throw new UsageError(`seed: ${messageOf(error)}`);
      }
    } else if (command.name === "verify" || command.name === "dry-run" || command.name === "failures") {
      migrations = targetMigrations(command, env);
    } else if (command.name !== "status") {
      migrations = enabledMigrations(command.migrations, env);
    }
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }

  let client: Client;
  try {
    const config = databaseConfigFromEnv(env);
    try {
      client = await openDatabase(config);
      await client.execute("SELECT 1"); // a remote client connects lazily; fail here, not mid-command
    } catch (error) {
      throw new Error(`cannot open the database named by DATABASE_URL: ${messageOf(error)}`);
    }
  } catch (error) {
    err(`trickle: ${messageOf(error)}`);
    return 2;
  }

  try {
    switch (command.name) {
      case "seed":
        return await seedCommand(client, command);
      case "status":
        return await statusCommand(client, command, operator);
      case "run":
        return await runCommand(client, command, migrations, operator);
      case "verify":
        return await verifyCommand(client, migrations);
      case "dry-run":
        return await dryRunCommand(client, command, migrations, operator);
      case "failures":
        return await failuresCommand(client, command, migrations);
      default:
        return await controlCommand(client, command.name, command.migration, migrations);
    }
  } catch (error) {
    err(`trickle: ${command.name}: ${messageOf(error)}`);
    return 1;
  } finally {
    client.close();
  }
}

main(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    err(`trickle: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  },
);
