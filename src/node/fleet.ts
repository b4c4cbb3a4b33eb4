/** What the CLI's `trickle fleet` and the Node server's `/api/fleet` share: reading a fleet file, opening tenants. */
import { readFileSync } from "node:fs";
import type { Client } from "@libsql/client";
import { parseFleetFile } from "../fleet/fleet.ts";
import { checkDatabaseUrl, type Settings } from "../settings.ts";
import { databaseConfig, openDatabase } from "./database.ts";

/** The URLs a fleet file lists; throws an `Error` naming the line (or the unreadable file). */
export function readFleetFile(path: string): string[] {
  return parseFleetFile(readFileSync(path, "utf8"), checkDatabaseUrl);
}

/**
 * Opens tenants with the settings every command uses (auth token, busy timeout). Tenants are never created: a
 * missing file is an unreachable tenant, not a new empty database.
 */
export function tenantOpener(
  settings: Pick<Settings, "databaseAuthToken" | "busyTimeoutMs">,
): (url: string) => Promise<Client> {
  return (url) => openDatabase(databaseConfig({ ...settings, databaseUrl: url }), { create: false });
}
