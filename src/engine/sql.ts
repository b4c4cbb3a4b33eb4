/**
 * Identifier rules shared by definitions and the state store.
 *
 * Definitions are code, but their identifiers still end up spliced into SQL text (SQLite cannot bind a table
 * or column name), so every identifier is checked against a strict pattern before it is used and quoted
 * afterwards. Values are always bound as parameters.
 */

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** Migration names: lower-case words joined by underscores, e.g. `tx_last_seen_backfill_v1`. */
export const MIGRATION_NAME = /^[a-z][a-z0-9_]{0,99}$/;

/** Throws a plain `Error` naming `what` unless `value` is a safe SQL identifier; returns it unchanged. */
export function assertIdentifier(value: unknown, what: string): string {
  if (typeof value !== "string" || !IDENTIFIER.test(value)) {
    throw new Error(`${what} must be an SQL identifier matching ${IDENTIFIER}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Quotes an identifier that already passed `assertIdentifier`. */
export function quote(identifier: string): string {
  return `"${identifier}"`;
}

/** A SQL string literal for values that were validated first (migration names); everything else is bound. */
export function literal(validated: string): string {
  return `'${validated.replaceAll("'", "''")}'`;
}

/** Current time as ISO-8601 UTC text with milliseconds, computed by the database so all runners share one clock. */
export const SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/** `now + ms` in the same text format; `ms` is an integer we produce, never request data. */
export function sqlNowPlus(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new Error(`invalid duration ${ms}`);
  return `strftime('%Y-%m-%dT%H:%M:%fZ','now','+${(ms / 1000).toFixed(3)} seconds')`;
}
