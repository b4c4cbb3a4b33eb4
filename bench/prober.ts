/**
 * The HTTP prober: polls `/api/healthz` and `/api/perf` of the serving process in turn, one request at a time
 * on a keep-alive connection, and records each request's latency. Each route is asked every `interval` ms
 * (the two are interleaved half an interval apart) on a fixed schedule. A request's latency runs from its
 * intended start: when a slow answer held the connection, the requests due meanwhile are sent right after it
 * and count the wait (no coordinated omission), as a load balancer's health checks would.
 *
 * Usage: node --import tsx bench/prober.ts <base-url> <interval-ms>
 * Prints `{"type":"ready"}`; on the line `stop` on stdin prints `{"type":"result",…}` and exits.
 */
import { Agent, request } from "node:http";
import { nowMs } from "./procs.ts";

export const ROUTES = ["/api/healthz", "/api/perf"] as const;

function get(agent: Agent, url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { agent, method: "GET" }, (res) => {
      res.resume(); // read the whole body: the latency includes producing it
      res.once("end", () => resolve(res.statusCode ?? 0));
      res.once("error", () => resolve(0));
    });
    req.setTimeout(60_000, () => req.destroy());
    req.once("error", () => resolve(0)); // not listening (yet), reset…
    req.end();
  });
}

async function main(): Promise<void> {
  const [base, intervalText] = process.argv.slice(2);
  const interval = Number(intervalText);
  if (!base || !(interval > 0)) throw new Error("usage: prober.ts <base-url> <interval-ms>");
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let stopping = false;
  process.stdin.setEncoding("utf8");
  let input = "";
  process.stdin.on("data", (chunk: string) => {
    input += chunk;
    if (input.includes("stop")) stopping = true;
  });
  // Flat columns: start (epoch ms), latency ms, HTTP status (0 = no answer), route index in ROUTES.
  const samples: number[] = [];
  process.stdout.write(`${JSON.stringify({ type: "ready" })}\n`);
  const half = interval / 2;
  let due = nowMs();
  for (let i = 0; !stopping; i++) {
    const wait = due - nowMs();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (stopping) break;
    const route = i % ROUTES.length;
    const status = await get(agent, `${base}${ROUTES[route]}`);
    const ended = nowMs();
    samples.push(Math.round(due * 100) / 100, Math.round((ended - due) * 1000) / 1000, status, route);
    due += half;
  }
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ type: "result", samples })}\n`, () => process.exit(0));
}

main().catch((error: unknown) => {
  process.stderr.write(`prober: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
