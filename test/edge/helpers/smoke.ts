/**
 * The smoke test every in-process runtime (Deno, Bun) passes: start the entry as a real process on a CoreScope
 * database, wait until its own scheduler finished the backfill (read through `/api/healthz`), check the HTTP
 * tick's auth, stop it with SIGTERM (graceful: exit 0), and compare the data with the seed's one-shot statement.
 */
import type { Client } from "@libsql/client";
import { expect } from "vitest";
import { seedCoreScope } from "../../../src/seed/corescope.ts";
import { lastSeenById, oneShotResult, type TempDb } from "../../helpers/db.ts";
import { type ServerChild, sleep, spawnChild, tail } from "./child.ts";
import { REPO_ROOT } from "./wrangler.ts";

export const CRON_SECRET = "cron-secret-0123456789abcdef";
const TX = "tx_last_seen_backfill_v1";

export interface HealthBody {
  ready: boolean;
  status: string;
  async_migrations_running: boolean;
  async_migrations_error?: string;
  async_migrations: { name: string; status: string; rowsProcessed: number; rowsTotal: number }[];
}

/** A seeded CoreScope database and the one-shot oracle computed on a copy of it. */
export async function seededCoreScope(db: TempDb): Promise<{ local: Client; oracle: string[] }> {
  const local = db.open();
  await seedCoreScope(local, { transmissions: 2000, observations: 6000, legacyFraction: 0.7, seed: 5 });
  const oracle = await oneShotResult(local, db);
  expect(await lastSeenById(local)).not.toEqual(oracle);
  return { local, oracle };
}

export interface RuntimeRun {
  readonly child: ServerChild;
  readonly base: string;
}

/** Starts `command args` with `env` (PORT=0) and waits for its "serving on" line. */
export async function startRuntime(
  label: string,
  command: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<RuntimeRun> {
  const child = spawnChild(label, command, args, {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1", PORT: "0", ...env },
  });
  const match = await child.waitFor(/serving on (http:\/\/localhost:\d+)\//, 30_000);
  return { child, base: match[1]! };
}

/** Polls `/api/healthz` until the backfill is done (bounded); returns the last body. */
export async function healthWhenDone(run: RuntimeRun): Promise<HealthBody> {
  let body: HealthBody | undefined;
  for (let attempt = 0; attempt < 300; attempt++) {
    const response = await fetch(`${run.base}/api/healthz`, { signal: AbortSignal.timeout(10_000) });
    body = (await response.json()) as HealthBody;
    if (body.async_migrations.find((m) => m.name === TX)?.status === "done") return body;
    await sleep(100);
  }
  throw new Error(
    `${run.child.label}: backfill not done; last healthz ${JSON.stringify(body)}\n${tail(run.child.output())}`,
  );
}

/** The HTTP tick: 401 without the secret, a slice with it. */
export async function checkHttpTick(run: RuntimeRun): Promise<void> {
  const anonymous = await fetch(`${run.base}/api/tick`);
  expect(anonymous.status).toBe(401);
  const ticked = await fetch(`${run.base}/api/tick`, { headers: { authorization: `Bearer ${CRON_SECRET}` } });
  expect(ticked.status).toBe(200);
  expect(await ticked.json()).toMatchObject({ moreWork: false });
}

/** SIGTERM: the process finishes its step, releases its lease and exits 0. */
export async function stopGracefully(run: RuntimeRun): Promise<void> {
  const exit = await run.child.stop("SIGTERM", 10_000);
  expect(exit, tail(run.child.output())).toEqual({ code: 0, signal: null });
  expect(run.child.output()).toContain("trickle: stopped");
}

export function expectDone(body: HealthBody): void {
  expect(body.ready).toBe(true);
  expect(body.async_migrations_running).toBe(false);
  expect(body.async_migrations_error).toBeUndefined();
  const item = body.async_migrations.find((m) => m.name === TX);
  expect(item?.rowsProcessed).toBe(item?.rowsTotal);
  expect(item?.rowsTotal).toBeGreaterThan(0);
}
