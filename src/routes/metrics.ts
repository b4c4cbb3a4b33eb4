/** `GET /metrics`: Prometheus text exposition (version 0.0.4) of the progress snapshot. */
import { Hono } from "hono";
import {
  REPORTED_STATUSES,
  type RunnerCounters,
  type ServedSnapshot,
  STEP_DURATION_BUCKETS,
} from "../progress/snapshot.ts";
import { ROUTES } from "./api.ts";
import type { AppDeps } from "./deps.ts";
import { mounter } from "./mount.ts";

export function metricsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  mounter(app, deps)(ROUTES.metrics, async (c) => {
    const served = await deps.snapshots.get();
    c.header("Cache-Control", "no-store");
    // Always 200: a scrape that fails would hide the error gauge that says why.
    return c.body(renderMetrics(served), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  return app;
}

/** Label values escape backslash, double quote and line feed (exposition format rules). */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(pairs: Record<string, string>): string {
  return `{${Object.entries(pairs)
    .map(([k, v]) => `${k}="${label(v)}"`)
    .join(",")}}`;
}

/** A float in exposition syntax (`+Inf`, `NaN` spelled the Prometheus way). */
function num(value: number | string): string {
  if (typeof value === "string") return value;
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/**
 * The exposition, by Prometheus conventions: gauges for where each migration stands (from the shared table),
 * `_total` counters and the step histogram for what this process's runner did since it started; every series is
 * labelled by migration only (plus `status` or `reason`), never by something that changes with each process.
 */
export function renderMetrics({ snapshot, ageMs }: ServedSnapshot): string {
  const lines: string[] = [];
  const ms = snapshot.migrations;
  const family = (name: string, type: "gauge" | "counter" | "histogram", help: string) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  /** One series per migration that has a value. */
  const perMigration = (
    name: string,
    type: "gauge" | "counter",
    help: string,
    value: (m: (typeof ms)[number]) => number | string | null,
  ) => {
    family(name, type, help);
    for (const m of ms) {
      const v = value(m);
      if (v !== null) lines.push(`${name}${labels({ migration: m.name })} ${num(v)}`);
    }
  };

  perMigration(
    "trickle_rows_processed",
    "gauge",
    "Rows processed by the current or last run.",
    (m) => m.rowsProcessed,
  );
  perMigration(
    "trickle_rows_candidates",
    "gauge",
    "Candidate rows of the current or last run (grows with re-sweeps).",
    (m) => m.rowsTotal,
  );
  perMigration(
    "trickle_rate_rows_per_second",
    "gauge",
    "Rows per second over wall time since the run started.",
    (m) => m.rate,
  );
  perMigration("trickle_batch_size", "gauge", "Keys the next step covers at most.", (m) => m.batchSize);
  family("trickle_migration_status", "gauge", "1 for the migration's current status, 0 for the others.");
  for (const m of ms)
    for (const status of REPORTED_STATUSES)
      lines.push(
        `trickle_migration_status${labels({ migration: m.name, status })} ${m.status === status ? 1 : 0}`,
      );
  perMigration(
    "trickle_quarantined_rows",
    "gauge",
    "Poison rows skipped and not resolved.",
    (m) => m.quarantined,
  );
  perMigration(
    "trickle_migration_stuck",
    "gauge",
    "1 while running without cursor progress for the stuck threshold.",
    (m) => (m.stuck ? 1 : 0),
  );
  perMigration("trickle_migration_throttled", "gauge", "1 while a throttle holds the migration back.", (m) =>
    m.throttle ? 1 : 0,
  );
  perMigration("trickle_lease_held", "gauge", "1 while some runner holds the migration's lease.", (m) =>
    m.leaseOwner === null ? 0 : 1,
  );
  perMigration("trickle_eta_seconds", "gauge", "Point estimate of the time left.", (m) => m.etaSeconds);
  perMigration(
    "trickle_eta_low_seconds",
    "gauge",
    "Low end (10th percentile) of the time-left band.",
    (m) => m.etaLowSeconds,
  );
  perMigration(
    "trickle_eta_high_seconds",
    "gauge",
    "High end (90th percentile) of the time-left band.",
    (m) => m.etaHighSeconds,
  );

  const counters = Object.entries(snapshot.activity?.counters ?? {});
  const counter = (name: string, help: string, value: (c: RunnerCounters) => number) => {
    family(name, "counter", help);
    for (const [migration, c] of counters) lines.push(`${name}${labels({ migration })} ${value(c)}`);
  };
  counter("trickle_steps_total", "Steps this process committed.", (c) => c.steps);
  counter(
    "trickle_step_rows_total",
    "Candidate rows the steps this process committed processed.",
    (c) => c.rows,
  );
  family("trickle_retries_total", "counter", "Transient errors this process retried, by error code.");
  for (const [migration, c] of counters)
    for (const [reason, n] of Object.entries(c.retries))
      lines.push(`trickle_retries_total${labels({ migration, reason })} ${n}`);
  counter(
    "trickle_busy_waits_total",
    "Retries because another connection held the lock (SQLITE_BUSY, SQLITE_LOCKED).",
    (c) => c.busyWaits,
  );
  counter(
    "trickle_lock_wait_seconds_total",
    "Time the committed steps waited for the write lock before they began (local files).",
    (c) => Math.round(c.lockWaitSeconds * 1000) / 1000,
  );
  counter(
    "trickle_leases_lost_total",
    "Leases this process lost before its work was done.",
    (c) => c.leasesLost,
  );
  counter(
    "trickle_rows_quarantined_total",
    "Poison rows this process recorded and skipped.",
    (c) => c.quarantined,
  );

  family(
    "trickle_step_duration_seconds",
    "histogram",
    "How long the steps this process committed held the write lock.",
  );
  for (const [name, h] of Object.entries(snapshot.activity?.stepHistogram ?? {})) {
    STEP_DURATION_BUCKETS.forEach((le, i) => {
      lines.push(
        `trickle_step_duration_seconds_bucket${labels({ migration: name, le: String(le) })} ${h.buckets[i] ?? 0}`,
      );
    });
    lines.push(`trickle_step_duration_seconds_bucket${labels({ migration: name, le: "+Inf" })} ${h.count}`);
    lines.push(`trickle_step_duration_seconds_sum${labels({ migration: name })} ${num(h.sumSeconds)}`);
    lines.push(`trickle_step_duration_seconds_count${labels({ migration: name })} ${h.count}`);
  }

  family("trickle_snapshot_age_seconds", "gauge", "Age of the progress snapshot these figures come from.");
  lines.push(`trickle_snapshot_age_seconds ${num(Math.round(ageMs) / 1000)}`);
  family("trickle_state_read_error", "gauge", "1 when the migration state could not be read.");
  lines.push(`trickle_state_read_error ${snapshot.error === undefined ? 0 : 1}`);
  return `${lines.join("\n")}\n`;
}
