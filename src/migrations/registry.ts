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

/**
 * Picks migrations by name from `available`. `names` is a comma-separated list, or `all`; undefined means the
 * defaults. Unknown names are an error naming them.
 */
export function selectMigrations(
  names: string | undefined,
  available: readonly MigrationDefinition[] = BUILTIN_MIGRATIONS,
): MigrationDefinition[] {
  if (names === undefined || names.trim() === "")
    return available.filter((m) => DEFAULT_ENABLED.includes(m.name));
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
