/**
 * Lifecycle hooks: a webhook POSTed to a real local HTTP receiver when a migration is done or failed, retried
 * with back-off when the receiver fails (bounded), signed when a secret is set, with no secret in the payload,
 * and never holding a step back; and the typed `onLifecycle` API for embedders.
 */
import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Client } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { type LifecycleEvent, onLifecycle, WebhookNotifier } from "../../src/engine/hooks.ts";
import { loadOperatorConfig } from "../../src/engine/operator-config.ts";
import { Runner } from "../../src/engine/runner.ts";
import { createService } from "../../src/service.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";
import { counterMigration, createCounterTable, FakeClock } from "../helpers/engine.ts";

interface Received {
  readonly headers: IncomingMessage["headers"];
  readonly body: string;
}

/** A webhook receiver: answers each request with the next status of `statuses` (then 200), or holds it. */
class Receiver {
  readonly requests: Received[] = [];
  readonly server: Server;
  #statuses: number[];
  #held: ServerResponse[] = [];
  hold = false;

  constructor(statuses: number[] = []) {
    this.#statuses = [...statuses];
    this.server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        this.requests.push({ headers: req.headers, body });
        if (this.hold) {
          this.#held.push(res);
          return;
        }
        res.writeHead(this.#statuses.shift() ?? 200).end("ok");
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/trickle?token=url-token-123`;
  }

  release(): void {
    for (const res of this.#held.splice(0)) res.writeHead(200).end("ok");
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

let db: TempDb | undefined;
let receiver: Receiver | undefined;
afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
  db?.cleanup();
  db = undefined;
});

const COUNTER = counterMigration({ name: "counter_v1", filter: "done = 0", set: "n = n + 1, done = 1" });
const SECRET = "webhook-secret-0123456789";

async function setup(): Promise<Client> {
  db = tempDb();
  const client = db.open();
  await createCounterTable(
    client,
    Array.from({ length: 100 }, (_, i) => BigInt(i + 1)),
  );
  return client;
}

describe("webhook", () => {
  it("delivers `done` after two failed attempts, signed, with no secret in the payload", async () => {
    const client = await setup();
    receiver = new Receiver([500, 503]);
    const url = await receiver.listen();
    const logs: string[] = [];
    const notifier = new WebhookNotifier({ url, secret: SECRET, retryBaseMs: 10, log: (l) => logs.push(l) });
    const runner = new Runner({
      client,
      migrations: [COUNTER],
      tuning: { initialBatch: 25, maxBatch: 25 },
      clock: new FakeClock(),
    });
    notifier.attach(runner);

    await runner.runUntilDone();
    await notifier.idle();

    expect(receiver.requests).toHaveLength(3);
    const bodies = new Set(receiver.requests.map((r) => r.body));
    expect(bodies.size).toBe(1); // the same event each attempt
    const payload = JSON.parse(receiver.requests[0]!.body) as LifecycleEvent;
    expect(payload).toEqual({
      event: "done",
      migration: "counter_v1",
      status: "done",
      rowsProcessed: 100,
      rowsTotal: 100,
      quarantined: 0,
      error: null,
      at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
    const body = receiver.requests[2]!.body;
    expect(body).not.toContain(SECRET);
    expect(body).not.toContain("url-token-123");
    expect(receiver.requests.map((r) => r.headers["x-trickle-delivery-attempt"])).toEqual(["1", "2", "3"]);
    expect(receiver.requests[2]!.headers["x-trickle-signature"]).toBe(
      `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
    );
    expect(receiver.requests[0]!.headers["content-type"]).toBe("application/json");
    expect(logs).toEqual([]); // delivered in the end: nothing to report
  });

  it("gives up after maxAttempts on 5xx, and at once on another 4xx, logging without the URL", async () => {
    receiver = new Receiver([500, 500, 500, 500, 500, 404]);
    const url = await receiver.listen();
    const logs: string[] = [];
    const notifier = new WebhookNotifier({ url, maxAttempts: 3, retryBaseMs: 5, log: (l) => logs.push(l) });
    const event: LifecycleEvent = {
      event: "failed",
      migration: "x_v1",
      status: "failed",
      rowsProcessed: 1,
      rowsTotal: 2,
      quarantined: null,
      error: "boom",
      at: new Date().toISOString(),
    };
    expect(await notifier.deliver(event)).toEqual({ ok: false, attempts: 3, status: 500 });
    expect(receiver.requests).toHaveLength(3);
    receiver.requests.length = 0;
    await notifier.deliver(event); // two more 500s, then the third attempt gets a 404
    expect(receiver.requests).toHaveLength(3);
    expect(logs).toHaveLength(2);
    expect(logs[0]).toMatch(/webhook \(failed of x_v1\) not delivered after 3 attempt\(s\): HTTP 500/);
    for (const line of logs) expect(line).not.toContain("url-token-123");
    // A refused connection is retried as well, then given up.
    const closed = new WebhookNotifier({ url: "http://127.0.0.1:9/", maxAttempts: 2, retryBaseMs: 1 });
    expect(await closed.deliver(event)).toMatchObject({ ok: false, attempts: 2, status: null });
  });

  it("never holds a step: the run finishes while the receiver still has not answered", async () => {
    const client = await setup();
    receiver = new Receiver();
    receiver.hold = true;
    const notifier = new WebhookNotifier({ url: await receiver.listen(), retryBaseMs: 10 });
    const runner = new Runner({ client, migrations: [COUNTER], clock: new FakeClock() });
    notifier.attach(runner);
    await runner.runUntilDone();
    expect((await runner.store.get("counter_v1"))?.status).toBe("done");
    await waitFor(() => receiver!.requests.length === 1);
    expect(notifier.pending).toBe(1); // the delivery is still waiting for its answer
    receiver.release();
    await notifier.idle();
    expect(notifier.pending).toBe(0);
  });

  it("is called by the service for `failed` when TRICKLE_WEBHOOK_URL is set", async () => {
    const client = await setup();
    receiver = new Receiver();
    const url = await receiver.listen();
    const operator = loadOperatorConfig({ TRICKLE_WEBHOOK_URL: url, TRICKLE_WEBHOOK_SECRET: SECRET });
    await client.execute("CREATE TABLE aux (x INTEGER)");
    const broken = counterMigration({ name: "broken_v1", set: "n = (SELECT x FROM aux)" });
    const service = createService({
      client,
      config: { ...loadConfig({}, []), migrations: [broken] },
      operator,
      log: () => {},
    });
    const seen: LifecycleEvent[] = [];
    service.onLifecycle((event) => seen.push(event));
    await service.runner.init();
    await client.execute("DROP TABLE aux"); // the change no longer compiles when the run starts
    await service.tick(1000);
    await service.hooksIdle();
    await service.stop();
    expect(seen).toMatchObject([{ event: "failed", migration: "broken_v1", status: "failed" }]);
    expect(receiver.requests).toHaveLength(1);
    const payload = JSON.parse(receiver.requests[0]!.body) as LifecycleEvent;
    expect(payload).toMatchObject({
      event: "failed",
      migration: "broken_v1",
      rowsProcessed: 0,
    });
    expect(payload.error).toMatch(/no such table: aux/);
    expect(receiver.requests[0]!.body).not.toContain(SECRET);
  });

  it("refuses a URL that is not http(s)", () => {
    expect(() => new WebhookNotifier({ url: "file:///etc/passwd" })).toThrow(/http:\/\/ or https:\/\//);
    expect(() => new WebhookNotifier({ url: "not a url" })).toThrow(/not a valid URL/);
  });
});

describe("typed lifecycle API", () => {
  it("onLifecycle reports done and failed only, and unsubscribes", async () => {
    const client = await setup();
    const runner = new Runner({ client, migrations: [COUNTER], clock: new FakeClock() });
    const seen: LifecycleEvent[] = [];
    const off = onLifecycle(runner, (event) => seen.push(event));
    await runner.runUntilDone();
    expect(seen.map((e) => [e.event, e.migration, e.rowsProcessed])).toEqual([["done", "counter_v1", 100]]);
    off();
    await client.execute(
      "UPDATE _async_migrations SET status = 'pending', pass = 0 WHERE name = 'counter_v1'",
    );
    await runner.runUntilDone();
    expect(seen).toHaveLength(1);
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!condition()) throw new Error("condition not met");
}
