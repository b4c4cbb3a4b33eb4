/**
 * User-defined migrations on Workers (design.md: "the server, the CLI and the Worker bundle all read it"): a
 * Worker has no file system, so `TRICKLE_CONFIG` holds the JSON itself — as text, or as the object a
 * `[vars.TRICKLE_CONFIG]` table in wrangler.toml becomes. The handlers run in Node here (they are portable;
 * test/edge/worker.test.ts runs the bundle in workerd) against the Hrana test server over real HTTP.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createWorker, type WorkerContext } from "../../src/worker/handlers.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import { countersById, createCounterTable, rawStateRow } from "../helpers/engine.ts";
import { type HranaServer, startHranaServer } from "../hrana/server.ts";

let db: TempDb | undefined;
let server: HranaServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  db?.cleanup();
  db = undefined;
});

const pending: Promise<unknown>[] = [];
const ctx: WorkerContext = {
  waitUntil: (promise) => {
    pending.push(promise);
  },
  passThroughOnException: () => {},
  props: {},
};

const MIGRATIONS = {
  migrations: [
    { name: "t_counter_v1", table: "t", key: "id", filter: "done = 0", set: "n = n + 1, done = 1" },
  ],
};

describe.each([
  { form: "inline JSON text", config: JSON.stringify(MIGRATIONS) },
  { form: "an object binding", config: MIGRATIONS },
])("TRICKLE_CONFIG on Workers as $form", ({ config }) => {
  it("runs the user's migration to done through cron invocations, and the status routes show it", async () => {
    db = tempDb();
    const local = db.open();
    await createCounterTable(
      local,
      Array.from({ length: 300 }, (_, i) => BigInt(i + 1)),
    );
    server = await startHranaServer({ dbPath: db.path });
    const env = { DATABASE_URL: server.url, TRICKLE_CONFIG: config, TRICKLE_MIGRATIONS: "t_counter_v1" };
    const worker = createWorker();
    for (let i = 0; i < 50 && (await rawStateRow(local, "t_counter_v1"))?.status !== "done"; i++) {
      await worker.scheduled({ cron: "* * * * *", scheduledTime: Date.now() }, env, ctx);
      await Promise.all(pending.splice(0));
    }
    expect(await rawStateRow(local, "t_counter_v1")).toMatchObject({ status: "done", rows_processed: "300" });
    expect([...(await countersById(local)).values()].every((n) => n === 1n)).toBe(true);
    const perf = await worker.fetch(new Request("http://worker/api/perf"), env, ctx);
    const body = (await perf.json()) as { asyncMigrations: { name: string; status: string }[] };
    expect(body.asyncMigrations).toContainEqual(expect.objectContaining({ name: "t_counter_v1" }));
  });
});

describe("a bad TRICKLE_CONFIG on Workers", () => {
  it("is a configuration error naming the migration and the field", async () => {
    const env = {
      DATABASE_URL: "https://db.example.com",
      TRICKLE_CONFIG: JSON.stringify({
        migrations: [{ name: "x_v1", table: "t", key: "id", set: "n = 1", filtre: "1" }],
      }),
    };
    const response = await createWorker().fetch(new Request("http://worker/api/healthz"), env, ctx);
    expect(response.status).toBe(500);
    const { error } = (await response.json()) as { error: string };
    expect(error).toMatch(/TRICKLE_CONFIG/);
    expect(error).toMatch(/x_v1/);
    expect(error).toMatch(/filtre/);
  });
});
