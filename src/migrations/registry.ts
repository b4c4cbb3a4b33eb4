/**
 * The migrations trickle knows, and which of them run. `tx_last_seen_backfill_v1` runs by default; examples
 * that change a schema (add a column) run only when configuration names them — trickle never changes a schema
 * nobody asked it to change.
 */

import { obsHopCountV1 } from "./builtin/obs-hop-count.ts";
import { txLastSeenBackfillV1 } from "./builtin/tx-last-seen-backfill.ts";
import type { MigrationDefinition } from "./define.ts";

export const BUILTIN_MIGRATIONS: readonly MigrationDefinition[] = [txLastSeenBackfillV1, obsHopCountV1];

export const DEFAULT_ENABLED: readonly string[] = [txLastSeenBackfillV1.name];

/** The migrations configuration may pick from, and the ones that run when it does not pick. */
export interface Catalogue {
  readonly available: readonly MigrationDefinition[];
  /** Names enabled when `TRICKLE_MIGRATIONS` is unset. */
  readonly defaults: readonly string[];
}

/**
 * The catalogue: `available` (the built-ins, or a test entry's own list) plus the migrations a user defined in
 * configuration. User migrations are enabled by default — their author asked for them — next to the default
 * built-in. A user migration named like another one is an error naming it.
 */
export function buildCatalogue(
  available: readonly MigrationDefinition[],
  user: readonly MigrationDefinition[],
): Catalogue {
  const names = new Set(available.map((m) => m.name));
  for (const m of user) {
    if (names.has(m.name)) {
      const builtin = available.some((b) => b.name === m.name);
      throw new Error(
        builtin
          ? `migration "${m.name}" has the name of a built-in migration; give it a name of its own`
          : `migration "${m.name}" is defined twice`,
      );
    }
    names.add(m.name);
  }
  return {
    available: [...available, ...user],
    defaults: [
      ...DEFAULT_ENABLED.filter((n) => available.some((m) => m.name === n)),
      ...user.map((m) => m.name),
    ],
  };
}

/**
 * Picks migrations by name from `available`. `names` is a comma-separated list, `all` or `none`; undefined means
 * `defaults`. Unknown names are an error naming them.
 */
export function selectMigrations(
  names: string | undefined,
  available: readonly MigrationDefinition[] = BUILTIN_MIGRATIONS,
  defaults: readonly string[] = DEFAULT_ENABLED,
): MigrationDefinition[] {
  if (names === undefined || names.trim() === "") return available.filter((m) => defaults.includes(m.name));
  if (names.trim() === "all") return [...available];
  if (names.trim() === "none") return []; // serve status only, e.g. next to a backfill run elsewhere
  const wanted = names
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  const unknown = wanted.filter((n) => !available.some((m) => m.name === n));
  if (unknown.length > 0) {
    throw new Error(
      `unknown migration ${unknown.join(", ")}; known: ${available.map((m) => m.name).join(", ")}`,
    );
  }
  return available.filter((m) => wanted.includes(m.name));
}
