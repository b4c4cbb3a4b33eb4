/**
 * Runs the embedded example on Node: `npx tsx examples/embed-hono/server.ts` (PORT, DATABASE_URL, ADMIN_TOKEN
 * from the environment; default port 8788, database `file:data/embed-example.db`). Seeds 5 000 items on an empty
 * database, serves the application and starts trickle's scheduler. Ctrl-C stops both gracefully.
 */
import { mkdirSync } from "node:fs";
import { serve } from "@hono/node-server";
import { createClient } from "@libsql/client";
import { createEmbeddedApp, createItemsSchema } from "./app.ts";

const url = process.env.DATABASE_URL ?? "file:data/embed-example.db";
if (url === "file:data/embed-example.db") mkdirSync("data", { recursive: true });
const client = createClient({ url, intMode: "bigint" });
await createItemsSchema(client);
const count = Number((await client.execute("SELECT COUNT(*) AS n FROM items")).rows[0]?.n ?? 0);
if (count === 0) {
  const inserts = Array.from({ length: 5_000 }, (_, i) => ({
    sql: "INSERT INTO items (name) VALUES (?)",
    args: [`Item number ${i + 1}`],
  }));
  await client.batch(inserts, "write");
}

const { app, trickle } = createEmbeddedApp({
  client,
  adminToken: process.env.ADMIN_TOKEN,
  env: process.env,
  log: (line) => console.log(line),
});
await trickle.start();
const server = serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 8788) }, (info) => {
  console.log(`embed-hono: listening on http://localhost:${info.port}/ (trickle at /admin/trickle/)`);
});

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await trickle.stop();
  server.close();
  client.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
