/**
 * A fleet's progress as the read routes' snapshot (`/api/healthz`, `/api/perf`, the status page), for a Worker
 * that advances a fleet instead of one database (src/worker/fleet-worker.ts): one item per migration, added up
 * over the tenants' own rows as `/api/fleet` reads them (./view.ts), so nothing is stored twice.
 *
 * Per migration: `rowsProcessed` and `rowsTotal` are the tenants' sums; the status is `failed` when a tenant
 * failed it, `done` when every tenant has done it, `running` when some tenant runs or has done it (the others
 * still to come), else `pending`; `reason` counts the tenants done, running, unreachable and failed, and the
 * error of a failed one names its database. Rates and ETAs are per database and stay in `/api/fleet`'s tenants.
 *
 * Portable: no `node:*` imports.
 */
import type { Row } from "@libsql/client";
import { toMigrationRow } from "../engine/state/row.ts";
import { migrationInfo, type ServedSnapshot, type Snapshot } from "../progress/snapshot.ts";
import type { SnapshotSource } from "../routes/deps.ts";
import type { TenantReport } from "./fleet.ts";
import type { FleetSource, FleetView } from "./view.ts";

/** The snapshot of `names` over the fleet `view`. */
export function fleetSnapshot(view: FleetView, names: readonly string[]): Snapshot {
  return {
    takenAt: view.takenAt,
    migrations: names.map((name) => migrationInfo(fleetRow(view.tenants, name), view.takenAt)),
  };
}

/** Serves `fleetSnapshot` from a fleet view cache (one tenant read per the view's TTL). */
export class FleetSnapshots implements SnapshotSource {
  readonly #view: FleetSource;
  readonly #names: readonly string[];
  readonly #now: () => number;

  constructor(view: FleetSource, names: readonly string[], now: () => number = Date.now) {
    this.#view = view;
    this.#names = names;
    this.#now = now;
  }

  /** The snapshot of the last view served: a view is read once per TTL, and its snapshot built once. */
  #built: { readonly view: FleetView; readonly snapshot: Snapshot } | undefined;

  async get(): Promise<ServedSnapshot> {
    const view = await this.#view.get();
    if (this.#built?.view !== view) this.#built = { view, snapshot: fleetSnapshot(view, this.#names) };
    return { snapshot: this.#built.snapshot, ageMs: Math.max(0, this.#now() - view.takenAt) };
  }
}

/** One migration over every tenant, as an `_async_migrations` row (read by the same codec as a real one). */
function fleetRow(tenants: readonly TenantReport[], name: string): ReturnType<typeof toMigrationRow> {
  const mine = tenants.map((t) => ({ tenant: t, m: t.migrations.find((m) => m.name === name) }));
  const count = (status: string) => mine.filter(({ m }) => m?.status === status).length;
  const done = count("done");
  const running = count("running");
  const failed = mine.filter(({ m }) => m?.status === "failed");
  const unreachable = tenants.filter((t) => t.status === "unreachable").length;
  const status =
    failed.length > 0
      ? "failed"
      : done === tenants.length
        ? "done"
        : running + done > 0
          ? "running"
          : "pending";
  const parts = [`${done} of ${tenants.length} tenants done`];
  if (running > 0) parts.push(`${running} running`);
  if (unreachable > 0) parts.push(`${unreachable} unreachable`);
  if (failed.length > 0) parts.push(`${failed.length} failed`);
  const first = failed[0];
  const row = {
    name,
    status,
    rows_processed: String(mine.reduce((sum, { m }) => sum + (m?.rowsProcessed ?? 0n), 0n)),
    rows_total: String(mine.reduce((sum, { m }) => sum + (m?.rowsTotal ?? 0n), 0n)),
    error: first ? `${first.tenant.database}: ${first.m?.error ?? "failed"}` : null,
    // A pending item with a reason does not count as running (isMigrationRunning); one not started anywhere yet
    // is about to run, as on one database.
    reason: status === "pending" && unreachable === 0 ? null : parts.join(", "),
  };
  return toMigrationRow(row as unknown as Row);
}
