/**
 * `trickle fleet run|status --databases FILE`: the command-line side of src/fleet/fleet.ts — reads the fleet
 * file, opens each tenant with the same settings as every other command (the auth token and busy timeout apply
 * to every tenant), shows progress on stderr and the result on stdout (JSON alone with `--json`).
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { ServiceConfig } from "../config.ts";
import { type FleetSummary, fleetStatus, runFleet, summarize, type TenantReport } from "../fleet/fleet.ts";
import type { MigrationDefinition } from "../migrations/define.ts";
import { readFleetFile, tenantOpener } from "../node/fleet.ts";
import type { Command } from "./args.ts";
import { UsageError } from "./args.ts";
import { err, jsonCount, messageOf, out, table } from "./output.ts";
import { formatCount, ProgressRenderer, renderBar } from "./progress.ts";

type FleetCommand = Extract<Command, { name: "fleet" }>;

export async function fleetCommand(
  command: FleetCommand,
  config: ServiceConfig,
  migrations: readonly MigrationDefinition[],
): Promise<number> {
  let urls: string[];
  try {
    urls = readFleetFile(command.databases);
  } catch (error) {
    throw new UsageError(`--databases ${command.databases}: ${messageOf(error)}`, "fleet");
  }
  const open = tenantOpener(config);
  const names = migrations.map((m) => m.name);

  if (command.action === "status") {
    const tenants = await fleetStatus({ urls, open, names, concurrency: command.concurrency });
    report(command, tenants, summarize(tenants), null);
    return tenants.every((t) => t.status === "done") ? 0 : 1;
  }

  // On a terminal, a bar for the fleet redrawn in place; in a log, one line per wave and per tenant.
  const progress = new ProgressRenderer(process.stderr);
  const finished: TenantReport[] = [];
  const show = (current: string) => {
    const s = summarize(finished);
    const bar = `fleet ${renderBar(finished.length / urls.length)} ${formatCount(finished.length)}/${formatCount(urls.length)} tenants: ${s.done} done, ${s.failed} failed, ${s.unreachable} unreachable`;
    if (progress.tty) progress.update([bar, `  ${current}`]);
    else err(`${current} [${finished.length}/${urls.length}]`);
  };
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let result: Awaited<ReturnType<typeof runFleet>>;
  try {
    result = await runFleet({
      urls,
      open,
      settings: config,
      migrations,
      canary: command.canary,
      concurrency: command.concurrency,
      continueOnError: command.continueOnError,
      untilDone: command.untilDone,
      ...(command.budgetMs !== undefined ? { budgetMs: command.budgetMs } : {}),
      owner: `fleet-${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
      signal: controller.signal,
      onWave: (wave, wavesUrls) =>
        show(
          `${wave === 0 && command.canary > 0 ? "canary" : `wave ${wave}`}: ${wavesUrls.length} tenant(s)`,
        ),
      onTenant: (tenant) => {
        finished.push(tenant);
        show(`${tenant.database}: ${tenant.status}${tenant.detail ? ` (${tenant.detail})` : ""}`);
      },
    });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    progress.finish();
  }
  report(command, result.tenants, result.summary, result.stoppedBecause);
  if (controller.signal.aborted) return 130;
  return result.summary.done === result.summary.total ? 0 : 1;
}

function report(
  command: FleetCommand,
  tenants: readonly TenantReport[],
  summary: FleetSummary,
  stoppedBecause: string | null,
): void {
  if (command.json) {
    out(
      JSON.stringify(
        {
          summary,
          stoppedBecause,
          tenants: tenants.map((t) => ({
            ...t,
            migrations: t.migrations.map((m) => ({
              ...m,
              rowsProcessed: jsonCount(m.rowsProcessed),
              rowsTotal: jsonCount(m.rowsTotal),
            })),
          })),
        },
        null,
        2,
      ),
    );
    return;
  }
  const rows = tenants.map((t) => {
    const processed = t.migrations.reduce((n, m) => n + m.rowsProcessed, 0n);
    const total = t.migrations.reduce((n, m) => n + m.rowsTotal, 0n);
    return [t.database, t.status, `${formatCount(processed)} / ${formatCount(total)}`, t.detail ?? ""];
  });
  for (const line of table([["tenant", "status", "rows", "detail"], ...rows])) out(line);
  out(
    `${summary.total} tenants: ${summary.done} done, ${summary.running} running, ${summary.pending} pending, ${summary.failed} failed, ${summary.unreachable} unreachable${summary.skipped ? `, ${summary.skipped} not reached` : ""}`,
  );
  if (stoppedBecause)
    out(`stopped before the remaining waves: ${stoppedBecause} (--continue-on-error goes on)`);
}
