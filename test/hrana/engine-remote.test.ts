/**
 * The engine over the remote path: a Runner on `@libsql/client/web` against the test Hrana server, which serves
 * a CoreScope database file. Proves on the wire what the local tests can only assume:
 * - the backfill's result equals the seed's one-shot statement (keys up to 2^63 − 1 included);
 * - invariant 1: every `step` event is exactly ONE HTTP pipeline request, which carries the fence, the cursor
 *   advance, the data UPDATE and the progress update in one BEGIN IMMEDIATE…COMMIT batch on a fresh stream,
 *   and no other request writes data;
 * - invariant 8: keys and counters travel as Hrana `integer` values, never as floats;
 * - a step whose commit succeeded but whose answer was lost is not applied a second time.
 */
import { type Client, createClient } from "@libsql/client/web";
import { afterEach, describe, expect, it } from "vitest";
import type { RunnerEvent } from "../../src/engine/events.ts";
import { Runner } from "../../src/engine/runner.ts";
import { txLastSeenBackfillV1 } from "../../src/migrations/builtin/tx-last-seen-backfill.ts";
import {
  createCoreScopeSchema,
  insertCoreScopeRows,
  lastSeenById,
  oneShotResult,
  type TempDb,
  type TxSpec,
  tempDb,
} from "../helpers/db.ts";
import { counterMigration, countersById, createCounterTable, rawStateRow } from "../helpers/engine.ts";
import { type HranaServer, startHranaServer } from "./server.ts";
import { allValues, decodePipeline as decode, FENCE, isStep } from "./wire.ts";

let db: TempDb | undefined;
let server: HranaServer | undefined;
let remote: Client | undefined;

afterEach(async () => {
  remote?.close();
  await server?.close();
  db?.cleanup();
  remote = undefined;
  server = undefined;
  db = undefined;
});

const DATA_WRITE =
  /^\s*(UPDATE|INSERT\s+INTO|DELETE\s+FROM|REPLACE\s+INTO)\s+"?(transmissions|observations)\b/i;

/** CoreScope rows: backlog at 0, orphans, already-set rows, a sparse tail up to 2^63 − 1. */
function corescopeRows(): TxSpec[] {
  const rows: TxSpec[] = [];
  for (let i = 1; i <= 400; i++) {
    const id = BigInt(i);
    const timestamps =
      i % 7 === 0 ? [] : [1_700_000_000n + id, 1_700_000_500n + id * 3n].slice(0, 1 + (i % 2));
    rows.push({ id, lastSeen: i % 5 === 0 ? 1_600_000_000n : 0n, timestamps });
  }
  for (const id of [2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 2n, 2n ** 63n - 1n])
    rows.push({ id, lastSeen: 0n, timestamps: [9_000_000_000_000_000_000n + (id % 1000n)] });
  return rows;
}

describe("the engine over remote libSQL (Hrana over HTTP, @libsql/client/web)", () => {
  it("backfills CoreScope to the one-shot result with exactly one HTTP request per step", async () => {
    db = tempDb();
    const local = db.open();
    await createCoreScopeSchema(local);
    await insertCoreScopeRows(local, corescopeRows());
    const oracle = await oneShotResult(local, db);
    server = await startHranaServer({ dbPath: db.path, record: true });
    remote = createClient({ url: server.url, intMode: "bigint" });

    // At each step event: how many pipeline requests the server had received (the step's own included).
    const steps: { event: Extract<RunnerEvent, { type: "step" }>; seen: number; slice: number }[] = [];
    let slice = 0;
    const live = server;
    const runner = new Runner({
      client: remote,
      migrations: [txLastSeenBackfillV1],
      tuning: { initialBatch: 16, maxBatch: 64, yieldMs: 0 },
      onEvent: (event) => {
        if (event.type === "step") steps.push({ event, seen: live.stats.pipelineRequests, slice });
      },
    });
    await runner.runUntilDone({
      onSlice: () => {
        slice++;
      },
    });

    expect(await lastSeenById(local)).toEqual(oracle);
    const state = await rawStateRow(local, txLastSeenBackfillV1.name);
    expect(state?.status).toBe("done");

    const requests = server.recorded.map(decode);
    const stepRequests = requests.filter((r) => isStep(r, "transmissions"));
    expect(steps.length).toBeGreaterThanOrEqual(5);
    expect(stepRequests).toHaveLength(steps.length);

    for (const [k, { event, seen }] of steps.entries()) {
      // The request that was answered just before this step event is the step's batch…
      const request = requests[seen - 1]!;
      expect(isStep(request, "transmissions"), `step ${k} ↔ request ${seen - 1}`).toBe(true);
      // …and it is self-contained: a fresh stream, SQL stored in the same request, closed at its end.
      expect(request.baton ?? null).toBeNull();
      expect(request.types.filter((t) => t !== "store_sql")).toEqual(["batch", "close"]);
      const sqls = request.statements.map((s) => s.sql);
      expect(sqls[0]).toBe("BEGIN IMMEDIATE");
      expect(sqls[1]).toMatch(FENCE); // no clock read: a server's clock is another machine's
      expect(event.lockWaitMs).toBe(0);
      expect(sqls[2]).toMatch(/^UPDATE _async_migrations SET cursor =/);
      expect(sqls[3]).toMatch(/^UPDATE "transmissions" SET last_seen/);
      expect(sqls[4]).toMatch(/^UPDATE _async_migrations SET rows_processed = rows_processed \+ changes\(\)/);
      expect(sqls.slice(5)).toEqual(["COMMIT", "ROLLBACK"]);
      // Integers as Hrana integers (invariant 8): no value of a step is a float.
      const values = request.statements.flatMap(allValues);
      expect(values.filter((v) => v.type === "float")).toEqual([]);
      const advance = request.statements[2]!;
      expect(advance.named[":trickle_n"]).toEqual({ type: "integer", value: String(event.batchSize) });
      expect(advance.named[":trickle_hi"]).toEqual({ type: "integer", value: String(2n ** 63n - 1n) });
      expect(request.statements[1]!.values[2]?.type).toBe("integer"); // the lease epoch
      // Consecutive steps of one slice are consecutive requests: nothing else travels between them.
      const next = steps[k + 1];
      if (next && next.slice === steps[k]!.slice) expect(next.seen - seen, `after step ${k}`).toBe(1);
    }

    // No request other than a step writes data; the only floats anywhere are the sizer's saved rate.
    for (const request of requests.filter((r) => !isStep(r, "transmissions"))) {
      for (const statement of request.statements) {
        expect(statement.sql, `request ${request.index}`).not.toMatch(DATA_WRITE);
        if (allValues(statement).some((v) => v.type === "float"))
          expect(statement.sql).toContain("rate = COALESCE(?, rate)");
      }
    }
  });

  // Known engine bug on the remote path (reported to the lead; flip to `it` once the runner reloads its row
  // after a transient step error): the answer of a committed step is lost, the runner retries from its stale
  // in-memory cursor, and the same range is applied twice.
  it("applies a step exactly once when its commit succeeded but the answer was lost", async () => {
    db = tempDb();
    const local = db.open();
    const keys = Array.from({ length: 60 }, (_, i) => BigInt(i + 1));
    await createCounterTable(local, keys);
    server = await startHranaServer({ dbPath: db.path });
    remote = createClient({ url: server.url, intMode: "bigint" });

    // Lose the answer of the third step, after it committed.
    let stepRequests = 0;
    server.faults.match = (body) => {
      const text = JSON.stringify(body);
      return FENCE.test(text) && text.includes('UPDATE \\"t\\"') && ++stepRequests === 3;
    };
    server.faults.dropNext(1, { after: true });
    const retries: RunnerEvent[] = [];
    const runner = new Runner({
      client: remote,
      migrations: [counterMigration()],
      tuning: { initialBatch: 10, maxBatch: 10, yieldMs: 0, retryMinMs: 1, retryMaxMs: 5 },
      onEvent: (event) => {
        if (event.type === "retrying") retries.push(event);
      },
    });
    await runner.runUntilDone();

    expect(retries).toHaveLength(1);
    const counters = await countersById(local);
    expect([...counters.values()].filter((n) => n !== 1n)).toEqual([]);
    expect((await rawStateRow(local, "counter_v1"))?.rows_processed).toBe("60");
  });
});
