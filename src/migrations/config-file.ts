/**
 * User-defined migrations from configuration (`TRICKLE_CONFIG`, `--config`): the shape
 * `{ "migrations": [ { "name", "table", "key", "filter"?, "set", "verify"?, … } ] }`, as JSON text, as a plain
 * object (a Workers `[vars]` binding), or as the exports of a module (which may give a custom `step` function
 * instead of `set`).
 *
 * The checks here are about the shape — which fields exist and their JSON types — so a typo (`"filtre"`) or a
 * number where SQL text belongs is reported naming the migration and the field. Everything about the content
 * (identifiers, SQL fragments, tuning values) is then checked by `resolveMigration`, exactly as for built-in
 * migrations. Portable: reading files or importing modules is the runtime entry's job (src/node/).
 */
import { type MigrationDefinition, resolveMigration } from "./define.ts";

/** Fields a definition may have in configuration, with the JSON type each must have. */
const FIELDS: Readonly<Record<string, "string" | "array" | "object" | "function">> = {
  name: "string",
  description: "string",
  table: "string",
  key: "string",
  filter: "string",
  set: "string",
  verify: "string",
  requires: "array",
  prerequisites: "array",
  dependsOn: "array",
  tuning: "object",
  throttle: "object",
  step: "function",
};

/**
 * Required in every definition (`set` or, in a module, `step` as well: exactly one of them). `filter` may be
 * left out: every row is then changed once and nothing is verified, unless `verify` says what to look for.
 */
const REQUIRED = ["name", "table", "key"] as const;

/** Top-level fields of a configuration (`$schema` lets editors validate the file). */
const TOP_LEVEL = new Set(["migrations", "$schema"]);

/** Parses configuration JSON text. Throws an `Error` saying what is wrong (the caller names the source). */
export function parseMigrationsJson(text: string): MigrationDefinition[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`not valid JSON: ${(error as Error).message}`);
  }
  return migrationsFromConfig(value, { allowStep: false });
}

/**
 * The definitions of a loaded module: its `migrations` export, or a default export `{ migrations }`. Custom
 * `step` functions are allowed here.
 */
export function migrationsFromModule(module: Record<string, unknown>): MigrationDefinition[] {
  const fromDefault = module.default as { migrations?: unknown } | undefined;
  const migrations =
    module.migrations ??
    (typeof fromDefault === "object" && fromDefault !== null ? fromDefault.migrations : undefined);
  if (migrations === undefined) {
    throw new Error("the module must export `migrations` (or a default export `{ migrations }`)");
  }
  return migrationsFromConfig({ migrations }, { allowStep: true });
}

/**
 * Checks a configuration object and returns its definitions, each validated by `resolveMigration`. Names must be
 * unique within it. Throws an `Error` naming the migration (by index when it has no name) and the field.
 */
export function migrationsFromConfig(
  value: unknown,
  options: { readonly allowStep: boolean } = { allowStep: false },
): MigrationDefinition[] {
  if (!isPlainObject(value)) throw new Error('the configuration must be an object { "migrations": [ … ] }');
  for (const field of Object.keys(value)) {
    if (!TOP_LEVEL.has(field)) throw new Error(`unknown top-level field "${field}" (expected "migrations")`);
  }
  const list = value.migrations;
  if (!Array.isArray(list)) throw new Error('"migrations" must be a list of migration definitions');
  const seen = new Set<string>();
  return list.map((item, index) => {
    const definition = checkShape(item, index, options.allowStep);
    if (seen.has(definition.name)) {
      throw new Error(`${where(definition, index)}: the name is defined twice in this configuration`);
    }
    seen.add(definition.name);
    try {
      resolveMigration(definition);
    } catch (error) {
      // resolveMigration's messages already name the migration and the field.
      throw new Error(`migrations[${index}]: ${(error as Error).message}`);
    }
    return definition;
  });
}

function checkShape(item: unknown, index: number, allowStep: boolean): MigrationDefinition {
  if (!isPlainObject(item)) throw new Error(`migrations[${index}] must be an object`);
  const at = where(item, index);
  for (const [field, value] of Object.entries(item)) {
    const kind = FIELDS[field];
    if (kind === undefined || (field === "step" && !allowStep)) {
      const hint = field === "step" ? " (a custom step needs a .ts/.js module, not JSON)" : "";
      throw new Error(`${at}: unknown field "${field}"${hint}`);
    }
    if (value === undefined) continue;
    const ok =
      kind === "array"
        ? Array.isArray(value)
        : kind === "object"
          ? isPlainObject(value)
          : typeof value === kind && (kind !== "string" || (value as string).trim() !== "");
    if (!ok) throw new Error(`${at}: field "${field}" must be ${describe(kind)}`);
  }
  for (const field of REQUIRED) {
    if (item[field] === undefined) throw new Error(`${at}: field "${field}" is missing`);
  }
  const hasSet = item.set !== undefined;
  const hasStep = item.step !== undefined;
  if (hasSet === hasStep) {
    throw new Error(
      allowStep
        ? `${at}: give exactly one of "set" (an SQL SET clause) or "step" (a function)`
        : `${at}: field "set" is missing (the SQL SET clause, e.g. "cents = price * 100")`,
    );
  }
  const description =
    (item.description as string | undefined) ??
    (hasSet
      ? `user-defined: UPDATE ${item.table} SET ${item.set}${item.filter === undefined ? "" : ` WHERE ${item.filter}`}`
      : `user-defined: custom step on ${item.table}`);
  return { ...item, description } as unknown as MigrationDefinition;
}

/** `migration "items_v1" (migrations[0])`, or `migrations[0]` while the name is unknown or not text. */
function where(item: Record<string, unknown> | MigrationDefinition, index: number): string {
  const name = (item as { name?: unknown }).name;
  return typeof name === "string" && name.trim() !== ""
    ? `migration ${JSON.stringify(name)} (migrations[${index}])`
    : `migrations[${index}]`;
}

function describe(kind: string): string {
  switch (kind) {
    case "string":
      return "a non-empty string";
    case "array":
      return "a list";
    case "object":
      return "an object";
    default:
      return "a function";
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
