/** `GET /metrics`: Prometheus text exposition (version 0.0.4) of the progress snapshot. */
import { Hono } from "hono";
import { REPORTED_STATUSES, type ServedSnapshot, STEP_DURATION_BUCKETS } from "../progress/snapshot.ts";
import type { AppDeps } from "./deps.ts";

export function metricsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/metrics", async (c) => {
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

export function renderMetrics({ snapshot, ageMs }: ServedSnapshot): string {
  const lines: string[] = [];
  const family = (name: string, type: string, help: string) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  const ms = snapshot.migrations;

  family("trickle_rows_processed", "gauge", "Rows processed by the current or last run of the migration.");
  for (const m of ms)
    lines.push(`trickle_rows_processed${labels({ migration: m.name })} ${num(m.rowsProcessed)}`);
  family("trickle_rows_total", "gauge", "Candidate rows of the current or last run (grows with re-sweeps).");
  for (const m of ms) lines.push(`trickle_rows_total${labels({ migration: m.name })} ${num(m.rowsTotal)}`);
  family("trickle_rate_rows_per_second", "gauge", "Rows per second over wall time since the run started.");
  for (const m of ms)
    lines.push(`trickle_rate_rows_per_second${labels({ migration: m.name })} ${num(m.rate)}`);
  family("trickle_batch_size", "gauge", "Keys the next step covers at most.");
  for (const m of ms)
    if (m.batchSize !== null)
      lines.push(`trickle_batch_size${labels({ migration: m.name })} ${num(m.batchSize)}`);
  family("trickle_migration_status", "gauge", "1 for the migration's current status, 0 for the others.");
  for (const m of ms)
    for (const status of REPORTED_STATUSES)
      lines.push(
        `trickle_migration_status${labels({ migration: m.name, status })} ${m.status === status ? 1 : 0}`,
      );
  family("trickle_quarantined_rows", "gauge", "Poison rows skipped and not resolved.");
  for (const m of ms)
    lines.push(`trickle_quarantined_rows${labels({ migration: m.name })} ${num(m.quarantined)}`);
  family(
    "trickle_migration_stuck",
    "gauge",
    "1 while running without cursor progress for the stuck threshold.",
  );
  for (const m of ms)
    lines.push(`trickle_migration_stuck${labels({ migration: m.name })} ${m.stuck ? 1 : 0}`);
  family("trickle_migration_throttled", "gauge", "1 while a throttle holds the migration back.");
  for (const m of ms)
    lines.push(`trickle_migration_throttled${labels({ migration: m.name })} ${m.throttle ? 1 : 0}`);
  family("trickle_eta_seconds", "gauge", "ETA band of a running migration (quantile 0.1 and 0.9).");
  for (const m of ms) {
    if (m.etaLowSeconds !== null)
      lines.push(
        `trickle_eta_seconds${labels({ migration: m.name, quantile: "0.1" })} ${num(m.etaLowSeconds)}`,
      );
    if (m.etaHighSeconds !== null)
      lines.push(
        `trickle_eta_seconds${labels({ migration: m.name, quantile: "0.9" })} ${num(m.etaHighSeconds)}`,
      );
  }
  family("trickle_lease_held", "gauge", "1 while a runner (owner) holds the migration's lease.");
  for (const m of ms)
    if (m.leaseOwner !== null)
      lines.push(`trickle_lease_held${labels({ migration: m.name, owner: m.leaseOwner })} 1`);

  family(
    "trickle_step_duration_seconds",
    "histogram",
    "Duration of committed steps seen by this process's runner.",
  );
  for (const [name, h] of Object.entries(snapshot.stepHistogram ?? {})) {
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
