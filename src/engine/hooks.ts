/**
 * Lifecycle hooks: a typed API for embedders (`onLifecycle`) and an optional webhook called when a migration
 * ends (`done` or `failed`).
 *
 * The webhook is fire-and-forget: a runner event listener is synchronous, so `notify` starts the delivery and
 * returns at once — a slow or failing receiver never delays a step. Deliveries retry with exponential back-off
 * on network errors, 5xx and 429 (at most `maxAttempts` attempts, each with a timeout) and give up on any other
 * 4xx. Where the runtime can end an invocation early (Workers), give `waitUntil`, or await `idle()` before the
 * invocation ends.
 *
 * The payload carries no secret: migration name, status, counts, the error message and the time. With a secret,
 * the body is signed (`X-Trickle-Signature: sha256=<hex HMAC-SHA256 of the body>`) so the receiver can check it
 * came from trickle; the secret itself never leaves the process. Log lines never include the URL (it may carry a
 * token). Portable: `fetch`, `crypto.subtle`, `setTimeout`.
 */
import type { RunnerEvent, RunnerEventListener } from "./events.ts";

export type LifecycleEventName = "done" | "failed";

/** The webhook payload and what `onLifecycle` listeners get. Counters are exact (number, or text beyond 2^53). */
export interface LifecycleEvent {
  readonly event: LifecycleEventName;
  readonly migration: string;
  readonly status: LifecycleEventName;
  readonly rowsProcessed: number | string | null;
  readonly rowsTotal: number | string | null;
  /** Rows skipped as poison rows (null when unknown). */
  readonly quarantined: number | string | null;
  /** The failure message (`failed`), else null. */
  readonly error: string | null;
  /** ISO-8601 UTC. */
  readonly at: string;
}

/** Anything runner events can be subscribed to on (a `Runner`). */
export interface EventSource {
  on(listener: RunnerEventListener): () => void;
}

function exact(value: bigint | undefined): number | string | null {
  if (value === undefined) return null;
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}

/** The lifecycle event of a runner event, if it is one (`done`, `failed`). */
export function toLifecycleEvent(event: RunnerEvent, at: Date = new Date()): LifecycleEvent | undefined {
  if (event.type === "done") {
    return {
      event: "done",
      migration: event.name,
      status: "done",
      rowsProcessed: exact(event.rowsProcessed),
      rowsTotal: exact(event.rowsTotal),
      quarantined: exact(event.quarantined),
      error: null,
      at: at.toISOString(),
    };
  }
  if (event.type === "failed") {
    return {
      event: "failed",
      migration: event.name,
      status: "failed",
      rowsProcessed: exact(event.rowsProcessed),
      rowsTotal: exact(event.rowsTotal),
      quarantined: null,
      error: event.message,
      at: at.toISOString(),
    };
  }
  return undefined;
}

/** Calls `listener` for every migration that ends (`done` or `failed`) on `source`. Returns the unsubscribe. */
export function onLifecycle(source: EventSource, listener: (event: LifecycleEvent) => void): () => void {
  return source.on((event) => {
    const lifecycle = toLifecycleEvent(event);
    if (lifecycle) listener(lifecycle);
  });
}

export interface WebhookOptions {
  /** http(s) URL the events are POSTed to. */
  readonly url: string;
  /** When set, bodies are signed with HMAC-SHA256 (`X-Trickle-Signature`). */
  readonly secret?: string;
  /** Attempts per event, the first included (default 5). */
  readonly maxAttempts?: number;
  /** Delay before the second attempt, doubled for each further one (default 1000 ms). */
  readonly retryBaseMs?: number;
  /** Time limit of one attempt (default 5000 ms). */
  readonly timeoutMs?: number;
  /** Default: the global `fetch`. */
  readonly fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /** One line when a delivery is given up (never with the URL). */
  readonly log?: (line: string) => void;
  /** Keeps the invocation alive until the delivery ends (Workers' `ctx.waitUntil`). */
  readonly waitUntil?: (promise: Promise<unknown>) => void;
}

export interface DeliveryResult {
  readonly ok: boolean;
  readonly attempts: number;
  /** HTTP status of the last attempt, or null when it got no response. */
  readonly status: number | null;
}

export class WebhookNotifier {
  readonly #options: WebhookOptions;
  readonly #inFlight = new Set<Promise<DeliveryResult>>();
  #key: Promise<CryptoKey> | undefined;

  constructor(options: WebhookOptions) {
    let parsed: URL;
    try {
      parsed = new URL(options.url);
    } catch {
      throw new Error("webhook URL is not a valid URL");
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new Error("webhook URL must be http:// or https://");
    }
    const attempts = options.maxAttempts ?? 5;
    if (!(Number.isInteger(attempts) && attempts >= 1 && attempts <= 20))
      throw new Error("webhook maxAttempts must be a whole number from 1 to 20");
    this.#options = options;
  }

  /** Sends the lifecycle events of `source` (a runner). Returns the unsubscribe. */
  attach(source: EventSource): () => void {
    return onLifecycle(source, (event) => this.notify(event));
  }

  /** Starts delivering `event` and returns at once. */
  notify(event: LifecycleEvent): void {
    const delivery = this.deliver(event).finally(() => this.#inFlight.delete(delivery));
    this.#inFlight.add(delivery);
    this.#options.waitUntil?.(delivery);
  }

  /** Deliveries not finished yet. */
  get pending(): number {
    return this.#inFlight.size;
  }

  /** Resolves when every delivery started so far has finished (succeeded or given up). */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Delivers one event with retries; never throws. */
  async deliver(event: LifecycleEvent): Promise<DeliveryResult> {
    const body = JSON.stringify(event);
    const maxAttempts = this.#options.maxAttempts ?? 5;
    const base = this.#options.retryBaseMs ?? 1000;
    const doFetch = this.#options.fetch ?? ((input: string, init: RequestInit) => fetch(input, init));
    let status: number | null = null;
    let problem = "";
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (attempt > 1) await sleep(base * 2 ** (attempt - 2));
      try {
        const headers: Record<string, string> = {
          "content-type": "application/json",
          "user-agent": "trickle-webhook",
          "x-trickle-event": event.event,
          "x-trickle-delivery-attempt": String(attempt),
        };
        if (this.#options.secret) headers["x-trickle-signature"] = `sha256=${await this.#sign(body)}`;
        const response = await doFetch(this.#options.url, {
          method: "POST",
          headers,
          body,
          signal: AbortSignal.timeout(this.#options.timeoutMs ?? 5000),
        });
        status = response.status;
        await response.body?.cancel().catch(() => undefined);
        if (response.ok) return { ok: true, attempts: attempt, status };
        problem = `HTTP ${response.status}`;
        // Another 4xx will not go away by itself (a wrong URL, a rejected payload).
        if (response.status < 500 && response.status !== 429 && response.status !== 408) {
          this.#log(event, attempt, problem);
          return { ok: false, attempts: attempt, status };
        }
      } catch (error) {
        status = null;
        problem = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      }
    }
    this.#log(event, maxAttempts, problem);
    return { ok: false, attempts: maxAttempts, status };
  }

  #log(event: LifecycleEvent, attempts: number, problem: string): void {
    this.#options.log?.(
      `trickle: webhook (${event.event} of ${event.migration}) not delivered after ${attempts} attempt(s): ${problem}`,
    );
  }

  async #sign(body: string): Promise<string> {
    const encoder = new TextEncoder();
    this.#key ??= crypto.subtle.importKey(
      "raw",
      encoder.encode(this.#options.secret ?? ""),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const signature = await crypto.subtle.sign("HMAC", await this.#key, encoder.encode(body));
    return [...new Uint8Array(signature)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
