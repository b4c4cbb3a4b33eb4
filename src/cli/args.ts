/**
 * Command-line parsing for `trickle`, by hand: a few commands with a few typed flags each. Anything unknown or
 * malformed is a `UsageError` whose message names the command, flag or value at fault.
 */

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export const CONTROL_ACTIONS = ["pause", "resume", "cancel", "retry"] as const;
export type ControlCommandName = (typeof CONTROL_ACTIONS)[number];

export type Command =
  | { readonly name: "help" }
  | {
      readonly name: "seed";
      readonly transmissions: number;
      readonly observations: number;
      readonly legacyFraction: number;
      readonly seed: number;
    }
  | { readonly name: "status"; readonly json: boolean }
  | {
      readonly name: "run";
      readonly untilDone: boolean;
      readonly budgetMs: number | undefined;
      readonly migrations: string | undefined;
    }
  | {
      readonly name: "verify";
      readonly migration: string | undefined;
      readonly migrations: string | undefined;
    }
  | {
      readonly name: "dry-run";
      readonly migration: string | undefined;
      readonly migrations: string | undefined;
      readonly batchSize: number | undefined;
      readonly tickIntervalMs: number | undefined;
      readonly json: boolean;
    }
  | {
      readonly name: "failures";
      readonly migration: string;
      readonly retry: boolean;
      /** Keys to retry (decimal text); all unresolved rows when undefined. */
      readonly keys: readonly string[] | undefined;
      readonly all: boolean;
      readonly json: boolean;
      readonly migrations: string | undefined;
    }
  | {
      readonly name: ControlCommandName;
      readonly migration: string;
      readonly migrations: string | undefined;
    };

export const USAGE = `Usage: npm run trickle -- <command> [options] [--config FILE]

Commands:
  seed [--transmissions N] [--observations M] [--legacy-fraction F] [--seed S]
        Create the CoreScope schema and fill it with synthetic data (the database must be empty).
        Defaults: 71000 transmissions, 1500000 observations, legacy fraction 0.9, seed 1.
  status [--json]
        Show every migration: status, rows, percent, rate, ETA, reason or error, lease owner.
  run [--until-done] [--budget-ms N] [--migrations a,b|all]
        Run one time-budgeted slice of the enabled migrations, or slices until no runnable work is left.
  verify [name] [--migrations a,b|all]
        Count rows that still need work (whole table); exit 1 unless every count is 0.
  dry-run [name] [--migrations a,b|all] [--batch-size N] [--tick-interval-ms N] [--json]
        Run one real step inside a transaction that is rolled back (nothing changes): candidate rows, sample
        rows before/after, the step's time, and the whole run projected for the slice budget and tick interval
        (default: slices back to back; give your cron's interval, e.g. 60000).
  failures <name> [--all] [--json] [--retry [--keys k1,k2]]
        List the quarantined (poison) rows of a migration — keys whose step failed on their own — with their
        errors; --retry asks the runner to re-apply the change to them (all, or --keys).
  pause|resume|cancel|retry <name>
        Change a migration's status.
  help  Show this text.

Options for every command:
  --config FILE            user-defined migrations (JSON, or a .ts/.js module); wins over TRICKLE_CONFIG

Environment (the same variables, with the same meaning, as the server's; see README "Configuration"):
  DATABASE_URL             file:…, libsql://…, http(s)://…, ws(s)://… (default file:data/trickle.db)
  DATABASE_AUTH_TOKEN      token for a remote database
  TRICKLE_BUSY_TIMEOUT_MS  busy timeout of local connections in ms (default 100)
  TRICKLE_CONFIG           user-defined migrations: a JSON file, a .ts/.js module, or inline JSON; they are
                           enabled by default next to tx_last_seen_backfill_v1
  TRICKLE_MIGRATIONS       enabled migrations: comma-separated names, "all" or "none"
  TRICKLE_SLICE_BUDGET_MS, TRICKLE_STEP_TARGET_MS, TRICKLE_YIELD_MS, TRICKLE_LEASE_TTL_MS
                           engine tuning, as for the server
  TRICKLE_QUIET_HOURS, TRICKLE_PROBE_SQL, TRICKLE_PROBE_MAX_MS, TRICKLE_THROTTLE_BUSY_RATE, …
                           throttling of run (see README "Throttling"); TRICKLE_STUCK_AFTER_MS for status;
                           TRICKLE_WEBHOOK_URL for lifecycle webhooks; TRICKLE_MAX_QUARANTINED (default 1000)

Exit codes: 0 ok, 1 failed/conflict/work left, 2 usage or configuration error.`;

/**
 * Takes the global `--config FILE` (or `--config=FILE`) out of `argv`, wherever it is. Throws `UsageError` when
 * it has no value or is given twice.
 */
export function splitConfigOption(argv: readonly string[]): {
  argv: string[];
  configFile: string | undefined;
} {
  const rest: string[] = [];
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg !== "--config" && !arg.startsWith("--config=")) {
      rest.push(arg);
      continue;
    }
    if (configFile !== undefined) throw new UsageError("option --config given twice");
    let value: string | undefined;
    if (arg === "--config") {
      value = argv[i + 1];
      if (value === undefined || value.startsWith("--")) throw new UsageError("option --config needs a file");
      i++;
    } else {
      value = arg.slice("--config=".length);
    }
    if (value.trim() === "") throw new UsageError("option --config needs a file");
    configFile = value;
  }
  return { argv: rest, configFile };
}

type FlagKind = "boolean" | "integer" | "fraction" | "string" | "keys";

interface FlagSpec {
  readonly kind: FlagKind;
  /** Smallest accepted integer. */
  readonly min?: number;
}

interface CommandSpec {
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Names of positional arguments; `?` marks an optional one. */
  readonly positionals: readonly string[];
}

const MIGRATIONS_FLAG: FlagSpec = { kind: "string" };

const SPECS: Readonly<Record<string, CommandSpec>> = {
  help: { flags: {}, positionals: [] },
  seed: {
    flags: {
      transmissions: { kind: "integer", min: 0 },
      observations: { kind: "integer", min: 0 },
      "legacy-fraction": { kind: "fraction" },
      seed: { kind: "integer", min: Number.MIN_SAFE_INTEGER },
    },
    positionals: [],
  },
  status: { flags: { json: { kind: "boolean" } }, positionals: [] },
  run: {
    flags: {
      "until-done": { kind: "boolean" },
      "budget-ms": { kind: "integer", min: 1 },
      migrations: MIGRATIONS_FLAG,
    },
    positionals: [],
  },
  verify: { flags: { migrations: MIGRATIONS_FLAG }, positionals: ["name?"] },
  "dry-run": {
    flags: {
      migrations: MIGRATIONS_FLAG,
      "batch-size": { kind: "integer", min: 1 },
      "tick-interval-ms": { kind: "integer", min: 1 },
      json: { kind: "boolean" },
    },
    positionals: ["name?"],
  },
  failures: {
    flags: {
      retry: { kind: "boolean" },
      keys: { kind: "keys" },
      all: { kind: "boolean" },
      json: { kind: "boolean" },
      migrations: MIGRATIONS_FLAG,
    },
    positionals: ["name"],
  },
  ...Object.fromEntries(
    CONTROL_ACTIONS.map((action) => [
      action,
      { flags: { migrations: MIGRATIONS_FLAG }, positionals: ["name"] },
    ]),
  ),
};

type FlagValue = boolean | number | string;

/** Parses `argv` (without `node` and the script). Throws `UsageError` for anything it does not accept. */
export function parseCommand(argv: readonly string[]): Command {
  if (argv.length === 0) throw new UsageError("missing command");
  if (argv.includes("--help") || argv.includes("-h")) return { name: "help" };
  const [name, ...rest] = argv as [string, ...string[]];
  const spec = SPECS[name];
  if (!spec || !Object.hasOwn(SPECS, name)) {
    throw new UsageError(
      name.startsWith("-") ? `expected a command before ${name}` : `unknown command "${name}"`,
    );
  }
  const { flags, positionals } = tokenize(name, spec, rest);
  const numeric = (flag: string, fallback: number) => (flags.get(flag) as number | undefined) ?? fallback;
  const text = (flag: string) => flags.get(flag) as string | undefined;
  switch (name) {
    case "help":
      return { name: "help" };
    case "seed":
      return {
        name: "seed",
        transmissions: numeric("transmissions", 71_000),
        observations: numeric("observations", 1_500_000),
        legacyFraction: numeric("legacy-fraction", 0.9),
        seed: numeric("seed", 1),
      };
    case "status":
      return { name: "status", json: flags.get("json") === true };
    case "run":
      return {
        name: "run",
        untilDone: flags.get("until-done") === true,
        budgetMs: flags.get("budget-ms") as number | undefined,
        migrations: text("migrations"),
      };
    case "verify":
      return { name, migration: positionals[0], migrations: text("migrations") };
    case "dry-run":
      return {
        name,
        migration: positionals[0],
        migrations: text("migrations"),
        batchSize: flags.get("batch-size") as number | undefined,
        tickIntervalMs: flags.get("tick-interval-ms") as number | undefined,
        json: flags.get("json") === true,
      };
    case "failures": {
      const keys = flags.get("keys") as string | undefined;
      if (keys !== undefined && flags.get("retry") !== true)
        throw new UsageError("option --keys needs --retry");
      return {
        name,
        migration: positionals[0]!,
        retry: flags.get("retry") === true,
        keys: keys === undefined ? undefined : keys.split(","),
        all: flags.get("all") === true,
        json: flags.get("json") === true,
        migrations: text("migrations"),
      };
    }
    default:
      return { name: name as ControlCommandName, migration: positionals[0]!, migrations: text("migrations") };
  }
}

function tokenize(
  command: string,
  spec: CommandSpec,
  args: readonly string[],
): { flags: Map<string, FlagValue>; positionals: string[] } {
  const flags = new Map<string, FlagValue>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("--")) {
      if (arg.startsWith("-") && arg !== "-") throw new UsageError(`unknown option ${arg} for "${command}"`);
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = arg.slice(2, eq === -1 ? undefined : eq);
    const flagSpec = Object.hasOwn(spec.flags, flag) ? spec.flags[flag] : undefined;
    if (!flagSpec) throw new UsageError(`unknown option --${flag} for "${command}"`);
    if (flags.has(flag)) throw new UsageError(`option --${flag} given twice`);
    if (flagSpec.kind === "boolean") {
      if (eq !== -1) throw new UsageError(`option --${flag} takes no value`);
      flags.set(flag, true);
      continue;
    }
    let raw: string;
    if (eq !== -1) {
      raw = arg.slice(eq + 1);
    } else {
      const next = args[i + 1];
      if (next === undefined || next.startsWith("--")) throw new UsageError(`option --${flag} needs a value`);
      raw = next;
      i++;
    }
    flags.set(flag, parseValue(flag, flagSpec, raw));
  }
  const required = spec.positionals.filter((p) => !p.endsWith("?"));
  if (positionals.length < required.length) {
    throw new UsageError(`"${command}" needs <${required[positionals.length]}>`);
  }
  if (positionals.length > spec.positionals.length) {
    throw new UsageError(`unexpected argument "${positionals[spec.positionals.length]}" for "${command}"`);
  }
  return { flags, positionals };
}

function parseValue(flag: string, spec: FlagSpec, raw: string): FlagValue {
  const value = raw.trim();
  switch (spec.kind) {
    case "integer": {
      // Digits only (underscores allowed as separators: 1_500_000); no floats, exponents or hex.
      const digits = value.replaceAll("_", "");
      const n = Number(digits);
      const min = spec.min ?? 0;
      if (!/^-?\d+$/.test(digits) || !Number.isSafeInteger(n) || n < min) {
        const bound = min === Number.MIN_SAFE_INTEGER ? "an integer" : `an integer ≥ ${min}`;
        throw new UsageError(`option --${flag} must be ${bound}, got ${JSON.stringify(raw)}`);
      }
      return n;
    }
    case "fraction": {
      const n = Number(value);
      if (value === "" || !/^[0-9.]+$/.test(value) || !(n >= 0 && n <= 1)) {
        throw new UsageError(`option --${flag} must be a number between 0 and 1, got ${JSON.stringify(raw)}`);
      }
      return n;
    }
    case "string":
      if (value === "") throw new UsageError(`option --${flag} needs a non-empty value`);
      return value;
    case "keys": {
      // Keys stay decimal text: they may be beyond 2^53 and are parsed to bigint where they are used.
      const keys = value.split(",").map((k) => k.trim());
      if (
        keys.length === 0 ||
        keys.some((k) => !/^-?\d{1,19}$/.test(k) || BigInt(k) > 2n ** 63n - 1n || BigInt(k) < -(2n ** 63n))
      ) {
        throw new UsageError(
          `option --${flag} must be comma-separated integer keys, got ${JSON.stringify(raw)}`,
        );
      }
      return keys.join(",");
    }
    default:
      return true;
  }
}
