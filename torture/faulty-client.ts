/**
 * Faults at the client boundary: a Proxy over a REAL client that makes some `execute`/`batch` calls fail the
 * way @libsql/client and the network make them fail — SQLITE_BUSY/SQLITE_FULL as `LibsqlError`s, timeouts
 * (`TimeoutError`), `fetch failed` with a connection error as its cause, bare errors carrying a network code.
 *
 * A fault strikes either BEFORE the call is delegated (nothing happened) or AFTER it (the write committed, but
 * the caller sees an error: the ambiguous commit of a lost answer). Every call that is not faulted, and every
 * AFTER-fault's call, runs unchanged against the real database. A persistent fault (deterministic or not)
 * makes every matching call fail until it is cleared.
 */
import { type Client, type InStatement, LibsqlError } from "@libsql/client";

export type FaultKind = "busy" | "full" | "timeout" | "fetch-failed" | "reset";
export type FaultTiming = "before" | "after";
export type ClientMethod = "execute" | "batch";

export interface ClientCall {
  readonly method: ClientMethod;
  readonly statements: readonly InStatement[];
  /** True for a backfill step: a write batch carrying the step's cursor advance (`:trickle_n`). */
  readonly isStep: boolean;
}

export interface InjectedFault {
  readonly kind: FaultKind | "persistent";
  readonly timing: FaultTiming;
  readonly method: ClientMethod;
  readonly isStep: boolean;
}

export const FAULT_KINDS: readonly FaultKind[] = ["busy", "full", "timeout", "fetch-failed", "reset"];

/** An error as the client or the runtime would throw it for `kind`. */
export function faultError(kind: FaultKind): Error {
  switch (kind) {
    case "busy":
      return new LibsqlError("database is locked", "SQLITE_BUSY", "SQLITE_BUSY", 5);
    case "full":
      return new LibsqlError("database or disk is full", "SQLITE_FULL", "SQLITE_FULL", 13);
    case "timeout":
      return new DOMException("The operation was aborted due to timeout", "TimeoutError");
    case "fetch-failed":
      return new TypeError("fetch failed", {
        cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8080"), { code: "ECONNREFUSED" }),
      });
    case "reset":
      return Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
  }
}

/** A deterministic error (a constraint the data violates): retrying cannot help. */
export function deterministicError(message: string): Error {
  return new LibsqlError(message, "SQLITE_CONSTRAINT", "SQLITE_CONSTRAINT_CHECK", 275);
}

function statementsOf(method: ClientMethod, args: readonly unknown[]): InStatement[] {
  if (method === "batch") return [...((args[0] as InStatement[] | undefined) ?? [])];
  const [stmt, params] = args;
  if (typeof stmt === "string") return [params === undefined ? stmt : { sql: stmt, args: params as never }];
  return [stmt as InStatement];
}

function isStepBatch(method: ClientMethod, statements: readonly InStatement[]): boolean {
  return (
    method === "batch" &&
    statements.some(
      (s) =>
        typeof s !== "string" && s.args !== undefined && !Array.isArray(s.args) && ":trickle_n" in s.args,
    )
  );
}

export interface FaultInjectorOptions {
  /** Random source in [0, 1); seed it for repeatable runs. */
  readonly random: () => number;
  /** Probability that a call is faulted. */
  rate: number;
  /** Probability that a fault strikes after the call ran (an ambiguous commit). */
  afterRate: number;
  kinds: readonly FaultKind[];
}

export class FaultInjector {
  readonly injected: InjectedFault[] = [];
  readonly options: FaultInjectorOptions;
  /** While set, every call it matches throws its error (before delegating). */
  persistent: { readonly error: () => Error; readonly match: (call: ClientCall) => boolean } | undefined;
  /** While false, no random faults are injected (persistent ones still are). */
  enabled = true;

  constructor(options: FaultInjectorOptions) {
    this.options = options;
  }

  /** Faults that struck after a step batch had committed. */
  get ambiguousCommits(): number {
    return this.injected.filter((f) => f.timing === "after" && f.isStep).length;
  }

  /** The wrapped client; everything except `execute` and `batch` goes straight to `real`. */
  wrap(real: Client): Client {
    const injector = this;
    return new Proxy(real, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== "function") return value;
        const method = value as (...args: unknown[]) => Promise<unknown>;
        if (property !== "execute" && property !== "batch") return method.bind(target);
        const name: ClientMethod = property;
        return (...args: unknown[]) => injector.#call(name, args, () => method.apply(target, args));
      },
    });
  }

  async #call(
    method: ClientMethod,
    args: readonly unknown[],
    delegate: () => Promise<unknown>,
  ): Promise<unknown> {
    const statements = statementsOf(method, args);
    const call: ClientCall = { method, statements, isStep: isStepBatch(method, statements) };
    if (this.persistent?.match(call)) {
      this.injected.push({ kind: "persistent", timing: "before", method, isStep: call.isStep });
      throw this.persistent.error();
    }
    const { random, rate, afterRate, kinds } = this.options;
    if (!this.enabled || kinds.length === 0 || random() >= rate) return delegate();
    const kind = kinds[Math.floor(random() * kinds.length)]!;
    const timing: FaultTiming = random() < afterRate ? "after" : "before";
    if (timing === "after") await delegate(); // committed; the answer is "lost"
    this.injected.push({ kind, timing, method, isStep: call.isStep });
    throw faultError(kind);
  }
}
