/**
 * The fleet as `GET /api/fleet` and the status page show it: every tenant's status, derived from its own
 * `_async_migrations` rows (never from a copy that could disagree), read at most once per TTL and shared by all
 * concurrent callers, like the migration snapshots.
 */
import { singleFlight } from "../progress/single-flight.ts";
import { type FleetSummary, summarize, type TenantReport } from "./fleet.ts";

export interface FleetView {
  /** Wall-clock ms (`Date.now()`) when the tenants were read. */
  readonly takenAt: number;
  readonly summary: FleetSummary;
  readonly tenants: readonly TenantReport[];
}

export interface FleetSource {
  get(): Promise<FleetView>;
}

export class FleetViewCache implements FleetSource {
  readonly #readOnce: () => Promise<FleetView>;
  readonly #ttlMs: number;
  readonly #now: () => number;
  #current: FleetView | undefined;

  /** `read` never throws for one tenant: an unreachable tenant is a report (see `fleetStatus`). */
  constructor(options: { read: () => Promise<TenantReport[]>; ttlMs: number; now?: () => number }) {
    this.#readOnce = singleFlight(async () => {
      const tenants = await options.read();
      this.#current = { takenAt: this.#now(), summary: summarize(tenants), tenants };
      return this.#current;
    });
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
  }

  get(): Promise<FleetView> {
    const current = this.#current;
    if (current && this.#now() - current.takenAt < this.#ttlMs) return Promise.resolve(current);
    return this.#readOnce();
  }
}
