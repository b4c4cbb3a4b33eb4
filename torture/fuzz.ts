/**
 * HTTP fuzz as a torture scenario: torture/http-fuzz.ts against the in-process service (src/service.ts on a
 * real CoreScope file), once with the control API and the HTTP tick configured and once with neither (then
 * every control and tick request must be refused, whatever token it carries).
 */
import type { Client } from "@libsql/client";
import { ADMIN_TOKEN, CRON_SECRET, type Harness, startHarness, TX } from "../test/fixtures/server-harness.ts";
import { check, newResult, runScenario, type ScenarioOptions, type ScenarioResult } from "./common.ts";
import { emptyFigures, type FuzzFigures, type FuzzTarget, fuzzTarget } from "./http-fuzz.ts";

/**
 * Everything a request could change, as text: the schema and every table (state, audit, data). Tables are read
 * whole, in storage order; the fuzz databases are small.
 */
export async function databaseState(client: Client): Promise<string> {
  const tables = await client.execute(
    "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
  );
  const parts: unknown[] = [tables.rows];
  for (const row of tables.rows) {
    if (row.type !== "table") continue;
    // Names come from sqlite_master, not from a request; quoted as identifiers.
    const name = String(row.name).replaceAll('"', '""');
    parts.push((await client.execute(`SELECT * FROM "${name}"`)).rows);
  }
  return JSON.stringify(parts, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
}

/** The in-process app of `harness` as a fuzz target. */
export function inProcessTarget(harness: Harness, tokens: { admin: boolean; cron: boolean }): FuzzTarget {
  return {
    adminToken: tokens.admin ? ADMIN_TOKEN : undefined,
    cronSecret: tokens.cron ? CRON_SECRET : undefined,
    knownTokens: [ADMIN_TOKEN, CRON_SECRET],
    migrations: [TX],
    async send(request) {
      // A full URL: a path like `//x` would otherwise be read as a host.
      const res = await harness.service.app.request(`http://localhost${request.path}`, {
        method: request.method,
        headers: request.headers,
        ...(request.body === undefined ? {} : { body: request.body }),
      });
      return { status: res.status, headers: res.headers, text: await res.text() };
    },
    state: () => databaseState(harness.client),
  };
}

/** Adds fuzz figures to a scenario result. */
export function judgeFuzz(result: ScenarioResult, figures: FuzzFigures, label: string): void {
  result.fiveXX += figures.fiveXX;
  result.faults += figures.requests;
  check(
    result,
    figures.unauthorizedChanges === 0,
    `${label}: ${figures.unauthorizedChanges} state changes without a valid token`,
  );
  check(
    result,
    figures.missingSecureHeaders === 0,
    `${label}: ${figures.missingSecureHeaders} responses without secure headers`,
  );
  check(result, figures.echoedSecrets === 0, `${label}: ${figures.echoedSecrets} responses echoed a token`);
  check(
    result,
    figures.servedFiles === 0,
    `${label}: ${figures.servedFiles} responses served a repository file`,
  );
  for (const violation of figures.violations.slice(0, 5)) result.problems.push(`${label}: ${violation}`);
}

export interface FuzzScenarioOptions extends ScenarioOptions {
  readonly runs?: number;
}

export async function fuzzScenario(options: FuzzScenarioOptions): Promise<ScenarioResult> {
  const result = newResult(
    "http fuzz",
    "generated requests to every route: methods, paths incl. traversal, headers, queries, bodies, oversized",
  );
  const harnesses: Harness[] = [];
  return runScenario(
    result,
    async () => {
      const runs = options.runs ?? Math.max(1_000, options.kills * 40);
      const configured = await startHarness({ transmissions: 200, env: { TRICKLE_SNAPSHOT_TTL_MS: "0" } });
      harnesses.push(configured);
      const open = await startHarness({
        transmissions: 50,
        env: { ADMIN_TOKEN: "", CRON_SECRET: "", TRICKLE_SNAPSHOT_TTL_MS: "0" },
      });
      harnesses.push(open);
      result.runs += 2;
      const progress = (label: string) => (f: FuzzFigures) => {
        if (f.requests % 50 === 0) options.progress(`${label}: ${f.requests} requests, ${f.fiveXX} 5xx`);
      };
      const withTokens = await fuzzTarget(inProcessTarget(configured, { admin: true, cron: true }), {
        numRuns: Math.ceil((runs * 3) / 4),
        seed: options.seed,
        figures: emptyFigures(),
        onRequest: progress("tokens configured"),
      });
      judgeFuzz(result, withTokens, "tokens configured");
      check(
        result,
        withTokens.authorizedChanges >= 5,
        "the fuzz made almost no authorised changes (vacuous)",
      );
      const withoutTokens = await fuzzTarget(inProcessTarget(open, { admin: false, cron: false }), {
        numRuns: Math.floor(runs / 4),
        seed: options.seed + 1,
        onRequest: progress("no tokens configured"),
      });
      judgeFuzz(result, withoutTokens, "no tokens configured");
      check(result, withoutTokens.authorizedChanges === 0, "a state change although no token is configured");
      const statuses = { ...withTokens.statuses };
      for (const [s, n] of Object.entries(withoutTokens.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
      result.notes.push(
        `${withTokens.requests + withoutTokens.requests} requests; statuses ${Object.entries(statuses)
          .sort()
          .map(([s, n]) => `${s}×${n}`)
          .join(" ")}; ${withTokens.authorizedChanges} authorised state changes`,
      );
    },
    async () => {
      for (const h of harnesses) await h.cleanup();
    },
  );
}
