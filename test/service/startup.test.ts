/**
 * Starting next to a live application: the first write (creating or upgrading `_async_migrations`) may meet
 * another connection's write lock. Start-up retries that instead of exiting.
 */
import { afterEach, describe, expect, it } from "vitest";
import { killAllChildren, spawnLockHolder } from "../fixtures/multiprocess.ts";
import {
  freePort,
  getJson,
  poll,
  type ServerProcess,
  startServerProcess,
  waitForExit,
} from "../fixtures/server-process.ts";
import { createCoreScopeSchema, type TempDb, tempDb } from "../helpers/db.ts";

let db: TempDb | undefined;
let server: ServerProcess | undefined;
afterEach(async () => {
  server?.child.kill("SIGKILL");
  if (server) await server.exited;
  server = undefined;
  await killAllChildren();
  db?.cleanup();
  db = undefined;
});

describe("start-up while another process holds the write lock", () => {
  it("retries the state-table write and serves once the lock is released", async () => {
    db = tempDb();
    const client = db.open();
    await createCoreScopeSchema(client);
    client.close();
    const holder = spawnLockHolder("holder", { dbPath: db.path, holdMs: 1_500 });
    await holder.waitForLine((line) => line.type === "locked", 20_000);

    const port = await freePort();
    server = startServerProcess({ port, env: { PORT: String(port), DATABASE_URL: db.url } });
    const health = await poll(async () => {
      const res = await getJson(server!.url("/api/healthz"));
      return res.status === 200 ? res.body : undefined;
    }, "healthz after the lock is released");
    expect(Array.isArray(health.async_migrations)).toBe(true);
    expect(await Promise.race([server.exited.then(() => "exited"), Promise.resolve("running")])).toBe(
      "running",
    );
    server.child.kill("SIGTERM");
    expect((await waitForExit(server, 15_000)).code).toBe(0);
  });
});
