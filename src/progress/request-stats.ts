/**
 * Per-route request statistics for `/api/perf` (count, average, p50, p95, max), like the seed's perf endpoint.
 *
 * Requests are grouped by the route pattern that answered them (`/api/migrations/:name`, not each concrete
 * path), and unmatched requests share one `(not found)` entry, so the number of entries is bounded by the
 * number of routes whatever clients send. Percentiles come from the last `window` durations of each route.
 */
import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";

export interface EndpointStats {
  readonly count: number;
  readonly avgMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly maxMs: number;
}

export interface RequestStatsReport {
  /** Seconds since the stats started (the process start, in practice). */
  readonly uptime: number;
  readonly totalRequests: number;
  readonly avgMs: number;
  readonly endpoints: Readonly<Record<string, EndpointStats>>;
}

export const UNMATCHED_ROUTE = "(not found)";

class RouteStats {
  count = 0;
  totalMs = 0;
  maxMs = 0;
  readonly #window: number[];
  #next = 0;

  constructor(windowSize: number) {
    this.#window = new Array<number>(windowSize);
  }

  add(ms: number): void {
    this.count++;
    this.totalMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
    this.#window[this.#next] = ms;
    this.#next = (this.#next + 1) % this.#window.length;
  }

  report(): EndpointStats {
    const samples = this.#window.slice(0, Math.min(this.count, this.#window.length)).sort((a, b) => a - b);
    return {
      count: this.count,
      avgMs: round(this.count > 0 ? this.totalMs / this.count : 0),
      p50Ms: round(percentile(samples, 0.5)),
      p95Ms: round(percentile(samples, 0.95)),
      maxMs: round(this.maxMs),
    };
  }
}

export class RequestStats {
  readonly #routes = new Map<string, RouteStats>();
  readonly #window: number;
  readonly #startedAt: number;
  readonly #clock: () => number;
  #total = 0;
  #totalMs = 0;

  /** `clock` is a monotonic ms source (default `performance.now`). */
  constructor(options: { window?: number; clock?: () => number } = {}) {
    this.#window = options.window ?? 1000;
    this.#clock = options.clock ?? (() => performance.now());
    this.#startedAt = this.#clock();
  }

  record(route: string, ms: number): void {
    let stats = this.#routes.get(route);
    if (!stats) {
      stats = new RouteStats(this.#window);
      this.#routes.set(route, stats);
    }
    stats.add(ms);
    this.#total++;
    this.#totalMs += ms;
  }

  report(): RequestStatsReport {
    const endpoints: Record<string, EndpointStats> = {};
    for (const [route, stats] of [...this.#routes].sort(([a], [b]) => a.localeCompare(b)))
      endpoints[route] = stats.report();
    return {
      uptime: round((this.#clock() - this.#startedAt) / 1000),
      totalRequests: this.#total,
      avgMs: round(this.#total > 0 ? this.#totalMs / this.#total : 0),
      endpoints,
    };
  }

  /** Middleware timing every request and filing it under the route pattern that handled it. */
  middleware(): MiddlewareHandler {
    const stats = this;
    return async function requestStats(c, next) {
      const began = stats.#clock();
      try {
        await next();
      } finally {
        // Middleware registered with `use` shows up as method ALL; the handler that answered is the last other one.
        const handler = matchedRoutes(c)
          .filter((r) => r.method !== "ALL")
          .at(-1);
        const route = handler ? handler.path : UNMATCHED_ROUTE;
        stats.record(route, stats.#clock() - began);
      }
    };
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[index] ?? 0;
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
