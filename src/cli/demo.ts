/**
 * `npm run demo`: a CoreScope-shaped database that needs the backfill, served while trickle backfills it.
 *
 * If the target (`DATABASE_URL`, default `file:data/demo.db`) has no transmissions, it is seeded with the CLI's
 * default size; then the server starts exactly as `npm start` does, with `tx_last_seen_backfill_v1` and the
 * `obs_hop_count_v1` example enabled (unless `TRICKLE_MIGRATIONS` says otherwise), and prints where to look.
 * Ctrl-C stops it gracefully; running it again continues (or shows the finished result).
 */
import type { Client } from "@libsql/client";
import { databaseConfigFromEnv, openDatabase } from "../node/database.ts";
import { startNodeServer } from "../node/server.ts";
import { seedCommand } from "./commands.ts";
import { err, messageOf, out } from "./output.ts";

export const DEMO_DATABASE_URL = "file:data/demo.db";
export const DEMO_MIGRATIONS = "tx_last_seen_backfill_v1,obs_hop_count_v1";
/** The same size as `npm run trickle -- seed` without flags (about CoreScope's production database). */
const DEMO_SEED = { transmissions: 71_000, observations: 1_500_000, legacyFraction: 0.9, seed: 1 } as const;

async function hasTransmissions(client: Client): Promise<boolean> {
  const table = await client.execute(
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'transmissions'",
  );
  if (table.rows.length === 0) return false;
  return (await client.execute("SELECT 1 FROM transmissions LIMIT 1")).rows.length > 0;
}

async function demo(): Promise<number> {
  const env: Record<string, string | undefined> = { ...process.env };
  if (!env.DATABASE_URL?.trim()) env.DATABASE_URL = DEMO_DATABASE_URL;
  if (!env.TRICKLE_MIGRATIONS?.trim()) env.TRICKLE_MIGRATIONS = DEMO_MIGRATIONS;

  const client = await openDatabase(databaseConfigFromEnv(env));
  try {
    if (await hasTransmissions(client)) {
      out("demo: the database already holds transmissions; serving it as it is");
    } else {
      out(
        `demo: seeding a CoreScope-shaped database (${DEMO_SEED.transmissions} transmissions, ` +
          `${DEMO_SEED.observations} observations; ${DEMO_SEED.legacyFraction * 100}% need the backfill)`,
      );
      const code = await seedCommand(client, { name: "seed", ...DEMO_SEED });
      if (code !== 0) return code;
    }
  } finally {
    client.close();
  }

  const server = await startNodeServer({ env, handleSignals: true });
  out("");
  out(`demo: status page      ${server.url}`);
  out(`demo: health (banner)  ${server.url}api/healthz`);
  out(`demo: progress         ${server.url}api/perf`);
  out(`demo: metrics          ${server.url}metrics`);
  out("demo: the backfill runs now; Ctrl-C stops it gracefully, and running the demo again continues it");
  out("");
  return 0;
}

demo().then(
  (code) => {
    if (code !== 0) process.exit(code);
  },
  (error: unknown) => {
    err(`demo: cannot start: ${messageOf(error)}`);
    process.exit(1);
  },
);
