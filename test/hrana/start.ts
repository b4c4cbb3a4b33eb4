/**
 * TEST-ONLY: runs the Hrana test server (./server.ts) in its own process, for tests that need it as a child
 * process (workerd, Deno, Bun, multi-process runners):
 *
 *   tsx test/hrana/start.ts --db FILE [--port N] [--token T] [--idle-ms N] [--busy-ms N]
 *
 * Prints one line, the server URL (`http://127.0.0.1:<port>`), once it listens; stops on SIGTERM/SIGINT.
 * The token may also come from HRANA_AUTH_TOKEN (keeps it out of process listings); it is never printed.
 */
import { parseArgs } from "node:util";
import { startHranaServer } from "./server.ts";

function integer(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value))
    throw new Error(`start.ts: ${flag} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

const { values } = parseArgs({
  options: {
    db: { type: "string" },
    port: { type: "string" },
    token: { type: "string" },
    "idle-ms": { type: "string" },
    "busy-ms": { type: "string" },
  },
  strict: true,
});
if (!values.db) throw new Error("start.ts: --db FILE is required (the SQLite file to serve)");
const authToken = values.token ?? process.env.HRANA_AUTH_TOKEN;
const port = integer(values.port, "--port");
const streamIdleMs = integer(values["idle-ms"], "--idle-ms");
const busyTimeoutMs = integer(values["busy-ms"], "--busy-ms");

const server = await startHranaServer({
  dbPath: values.db,
  ...(port === undefined ? {} : { port }),
  ...(authToken ? { authToken } : {}),
  ...(streamIdleMs === undefined ? {} : { streamIdleMs }),
  ...(busyTimeoutMs === undefined ? {} : { busyTimeoutMs }),
});
process.stdout.write(`${server.url}\n`);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
