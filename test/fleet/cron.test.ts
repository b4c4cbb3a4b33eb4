/**
 * One cron invocation over a fleet (src/fleet/cron.ts), on real tenant files in Node: whose turn it is comes from
 * the tenants' own rows (least recently advanced first), a budget too small for everybody serves the others next
 * time, done tenants cost one read, and a tenant that refuses connections or never answers is reported without
 * holding up the rest. The Worker around it is tested in workerd (test/edge/worker-fleet.test.ts).
 */
import { createServer, type Server, type Socket } from "node:net";
import { type Client, createClient } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_TUNING } from "../../src/engine/tuning.ts";
import { MIN_SHARE_MS, runFleetInvocation } from "../../src/fleet/cron.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import { seedCoreScope } from "../../src/seed/corescope.ts";
import { lastSeenById, oneShotResult, type TempDb, tempDb } from "../helpers/db.ts";
import { rawStateRow, recordingClient, sqlOf } from "../helpers/engine.ts";

const TX = "tx_last_seen_backfill_v1";
const SETTINGS = { tuning: { ...DEFAULT_TUNING, yieldMs: 0, maxBatch: 25 }, throttle: {} };

let dbs: TempDb[] = [];
let silent: { server: Server; sockets: Set<Socket> } | undefined;
afterEach(async () => {
  for (const db of dbs) db.cleanup();
  dbs = [];
  if (silent) {
    for (const socket of silent.sockets) socket.destroy();
    await new Promise((resolve) => silent?.server.close(resolve));
  }
  silent = undefined;
});

/** `count` CoreScope tenants in files of their own, with the one-shot statement's result of each. */
async function tenants(count: number): Promise<{ urls: string[]; clients: Client[]; oracles: string[][] }> {
  const urls: string[] = [];
  const clients: Client[] = [];
  const oracles: string[][] = [];
  for (let i = 0; i < count; i++) {
    const db = tempDb(`tenant-${i}.db`);
    dbs.push(db);
    const client = db.open();
    await seedCoreScope(client, { transmissions: 300, observations: 900, legacyFraction: 0.8, seed: 40 + i });
    urls.push(db.url);
    clients.push(client);
    oracles.push(await oneShotResult(client, db));
  }
  return { urls, clients, oracles };
}

const open = async (url: string): Promise<Client> => createClient({ url, intMode: "bigint", timeout: 2000 });

/** A TCP server that accepts connections and never answers: a tenant host that hangs. */
async function silentHost(): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  silent = { server, sockets };
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return `http://127.0.0.1:${address.port}`;
}

describe("a fleet's cron invocation", () => {
  it("gives a turn-sized budget to the least recently advanced tenant: nobody with work waits long", async () => {
    const { urls, clients, oracles } = await tenants(3);
    const run = () =>
      runFleetInvocation({
        urls,
        open,
        migrations: [txLastSeenBackfillV1],
        // Room for one turn: whoever comes first takes the whole budget (its run takes longer: small batches,
        // pauses between steps), and less than half a share is left for the next one.
        settings: { tuning: { ...DEFAULT_TUNING, yieldMs: 20, maxBatch: 10 }, throttle: {} },
        budgetMs: MIN_SHARE_MS,
        concurrency: 1,
        owner: "cron-test",
      });
    // Per tenant: its row's progress (status, walk, count), and how many invocations it has waited with work left.
    const progress = () =>
      Promise.all(
        clients.map(async (c) => {
          const row = await rawStateRow(c, TX);
          return {
            done: row?.status === "done",
            key: `${row?.status} ${row?.phase} ${row?.scan_cursor} ${row?.rows_processed}`,
          };
        }),
      );
    let before = await progress();
    const waited = clients.map(() => 0);
    const firstTurn: (number | undefined)[] = clients.map(() => undefined);
    let turns = 0; // invocations that gave somebody a turn
    for (let invocation = 1; invocation <= 300 && !before.every((p) => p.done); invocation++) {
      const result = await run();
      if (!result.tenants.some((t) => t.outcome === "advanced")) {
        // No step anywhere: the turn's tenant only finished its verification walk (then it is "done"), or the
        // machine was too busy to start a turn within the budget (its look timed out, or reading the tenants took
        // the budget). Nobody was skipped in favour of another: every tenant with work goes first next time.
        const withWork = result.tenants.filter((t) => t.outcome !== "done");
        for (const t of withWork) expect(["not-reached", "unreachable"]).toContain(t.outcome);
        before = await progress();
        continue;
      }
      turns++;
      const after = await progress();
      for (const [i, p] of after.entries()) {
        const moved = p.key !== before[i]!.key;
        if (moved) firstTurn[i] ??= turns;
        waited[i] = moved || p.done ? 0 : waited[i]! + 1;
        // One turn per invocation, least recently advanced first: with three tenants, nobody who still has
        // work waits through more than two turns in a row.
        expect(waited[i], `tenant ${i} after invocation ${invocation}`).toBeLessThanOrEqual(2);
      }
      before = after;
    }
    // Never-started tenants first: the first three turns start all three.
    expect(firstTurn).toEqual([expect.any(Number), expect.any(Number), expect.any(Number)]);
    expect(Math.max(...(firstTurn as number[]))).toBeLessThanOrEqual(3);
    for (const [i, client] of clients.entries()) expect(await lastSeenById(client)).toEqual(oracles[i]);
  }, 300_000);

  it("reports a tenant that refuses or never answers, and the others still get their turns", async () => {
    const { urls, clients, oracles } = await tenants(2);
    const refused = "http://127.0.0.1:9"; // the discard port: nothing listens there
    const hanging = await silentHost();
    const fleet = [urls[0]!, refused, hanging, urls[1]!];
    const budgetMs = 4000;
    let result: Awaited<ReturnType<typeof runFleetInvocation>> | undefined;
    for (let invocation = 0; invocation < 100; invocation++) {
      const began = performance.now();
      result = await runFleetInvocation({
        urls: fleet,
        open,
        settings: SETTINGS,
        migrations: [txLastSeenBackfillV1],
        budgetMs,
        concurrency: 4,
        owner: "cron-test",
      });
      // The hanging host costs at most a quarter of the budget, then the tenants share what is left: the
      // invocation ends near its budget (a hang guard with room for a busy machine, not a speed requirement).
      expect(performance.now() - began).toBeLessThan(budgetMs * 3);
      const byDatabase = new Map(result.tenants.map((t) => [t.database, t]));
      expect(byDatabase.get(`${refused}/`)?.outcome).toBe("unreachable");
      expect(byDatabase.get(`${hanging}/`)).toMatchObject({ outcome: "unreachable" });
      expect(byDatabase.get(`${hanging}/`)?.detail).toMatch(/no answer within 1000 ms/);
      if (result.tenants.filter((t) => t.outcome === "done").length === 2) break;
    }
    expect(result?.moreWork).toBe(true); // two tenants could not be looked at
    for (const [i, client] of clients.entries()) expect(await lastSeenById(client)).toEqual(oracles[i]);
  }, 300_000);

  it("a done or failed tenant costs one look: no runner, no write", async () => {
    const { urls, clients } = await tenants(1);
    const base = {
      urls,
      settings: SETTINGS,
      migrations: [txLastSeenBackfillV1],
      budgetMs: 5000,
      concurrency: 1,
      owner: "cron-test",
    };
    for (let i = 0; i < 50 && (await rawStateRow(clients[0]!, TX))?.status !== "done"; i++) {
      await runFleetInvocation({ ...base, open });
    }
    const recorded = recordingClient(clients[0]!);
    const result = await runFleetInvocation({
      ...base,
      open: async () => recorded.client,
      closeClients: false,
    });
    expect(result.tenants).toEqual([
      { database: urls[0], outcome: "done", steps: 0, rows: 0n, pieces: 0, detail: null },
    ]);
    expect(result.moreWork).toBe(false);
    const reads = recorded.calls.map((c) => `${c.method} ${c.statements.map(sqlOf).join("; ")}`);
    expect(
      reads.every((r) => /^execute\s+SELECT\b/i.test(r)),
      reads.join("\n"),
    ).toBe(true);
    expect(recorded.calls.length).toBeLessThanOrEqual(2);

    // A failed migration is an operator's business: reported with its error, and nothing runs.
    await clients[0]!.execute({
      sql: "UPDATE _async_migrations SET status = 'failed', error = 'boom' WHERE name = ?",
      args: [TX],
    });
    const again = recordingClient(clients[0]!);
    const failed = await runFleetInvocation({ ...base, open: async () => again.client, closeClients: false });
    expect(failed.tenants).toEqual([
      { database: urls[0], outcome: "failed", steps: 0, rows: 0n, pieces: 0, detail: `${TX}: boom` },
    ]);
    expect(failed.moreWork).toBe(false);
    expect(again.calls.length).toBeLessThanOrEqual(2);
  }, 300_000);
});
