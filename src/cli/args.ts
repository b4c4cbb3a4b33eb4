/**
 * Command-line parsing for `trickle`, on `node:util`'s `parseArgs`: a few commands with a few typed flags each,
 * `--config FILE` and `--help` anywhere on the line. Anything unknown or malformed is a `UsageError` whose message
 * names the command, flag or value at fault, in one line. The help texts are generated from the same table.
 */
import { parseArgs } from "node:util";
import { int64Key } from "../engine/state/row.ts";

/** A mistake on the command line. `command` names the command whose help explains it (none: the global help). */
export class UsageError extends Error {
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

export const CONTROL_ACTIONS = ["pause", "resume", "cancel", "retry"] as const;
export type ControlCommandName = (typeof CONTROL_ACTIONS)[number];

export type Command =
  | {
      readonly name: "help";
      /** The command whose help to show; undefined for the global help. */
      readonly topic: string | undefined;
    }
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
      readonly json: boolean;
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
      /** Keys to retry; all unresolved rows when undefined. */
      readonly keys: readonly bigint[] | undefined;
      readonly all: boolean;
      readonly json: boolean;
      readonly migrations: string | undefined;
    }
  | {
      readonly name: ControlCommandName;
      readonly migration: string;
      readonly migrations: string | undefined;
    }
  | {
      readonly name: "fleet";
      readonly action: "run" | "status";
      /** The fleet file: one database URL per line. */
      readonly databases: string;
      readonly json: boolean;
      readonly untilDone: boolean;
      readonly canary: number;
      readonly concurrency: number;
      readonly continueOnError: boolean;
      readonly budgetMs: number | undefined;
      readonly migrations: string | undefined;
    };

/** The parsed command line: the command, and the global `--config FILE`. */
export interface CommandLine {
  readonly command: Command;
  readonly configFile: string | undefined;
}

type FlagKind = "boolean" | "integer" | "fraction" | "string" | "keys";

interface FlagSpec {
  readonly kind: FlagKind;
  /** Smallest accepted integer. */
  readonly min?: number;
  /** The value's placeholder in the help (`N`, `a,b|all`); none for a boolean. */
  readonly value?: string;
  readonly help: string;
}

interface CommandSpec {
  /** Names of positional arguments; `?` marks an optional one. */
  readonly positionals: readonly string[];
  /** One line for the global help. */
  readonly summary: string;
  /** More lines for the command's own help. */
  readonly details: readonly string[];
  readonly flags: Readonly<Record<string, FlagSpec>>;
  readonly exitCodes: string;
}

const MIGRATIONS_FLAG: FlagSpec = {
  kind: "string",
  value: "a,b|all",
  help: "the migrations to act on (default: the enabled ones, see TRICKLE_MIGRATIONS)",
};

const CONFIG_HELP = "user-defined migrations (JSON, or a .ts/.js module); wins over TRICKLE_CONFIG";

function controlSpec(what: string): CommandSpec {
  return {
    positionals: ["name"],
    summary: what,
    details: [
      "Acts on the database directly, through the same checks and audit trail as the control API; a running",
      "server or `trickle run` picks the change up at its next step.",
    ],
    flags: { migrations: MIGRATIONS_FLAG },
    exitCodes:
      "0 done; 1 the transition is not allowed from the current status; 2 usage, configuration, no such migration or database",
  };
}

const SPECS: Readonly<Record<string, CommandSpec>> = {
  seed: {
    positionals: [],
    summary: "Create the CoreScope schema and fill it with synthetic data (the database must be empty).",
    details: [
      "Deterministic per seed. Creates the database file when it does not exist.",
      "Progress goes to stderr, the summary to stdout.",
    ],
    flags: {
      transmissions: { kind: "integer", min: 0, value: "N", help: "transmissions to create (default 71000)" },
      observations: { kind: "integer", min: 0, value: "M", help: "observations to create (default 1500000)" },
      "legacy-fraction": {
        kind: "fraction",
        value: "F",
        help: "share of transmissions with last_seen = 0, 0..1 (default 0.9)",
      },
      seed: { kind: "integer", min: Number.MIN_SAFE_INTEGER, value: "S", help: "random seed (default 1)" },
    },
    exitCodes: "0 seeded; 1 the database already has rows; 2 usage or configuration",
  },
  status: {
    positionals: [],
    summary: "Show every migration: status, rows, percent, rate, ETA, reason or error, lease owner.",
    details: ["Read-only: a database that does not exist is an error (exit 2), never created."],
    flags: {
      json: { kind: "boolean", help: "print a JSON array (the only thing on stdout)" },
    },
    exitCodes: "0 shown; 2 usage, configuration or no database",
  },
  run: {
    positionals: [],
    summary:
      "Run one time-budgeted slice of the enabled migrations, or slices until no runnable work is left.",
    details: [
      "Uses the server's engine and every TRICKLE_* tuning variable. Creates the database file when it does not",
      "exist. Progress goes to stderr, the summary to stdout. The first SIGINT/SIGTERM finishes the step in flight",
      "and releases the lease; a second one exits at once.",
    ],
    flags: {
      "until-done": { kind: "boolean", help: "run slices until no runnable work is left" },
      "budget-ms": {
        kind: "integer",
        min: 1,
        value: "N",
        help: "time budget of a slice (default TRICKLE_SLICE_BUDGET_MS)",
      },
      migrations: MIGRATIONS_FLAG,
      json: { kind: "boolean", help: "print the summary as JSON (the only thing on stdout)" },
    },
    exitCodes: "0 ok; 1 a migration failed; 2 usage or configuration; 130 / 143 stopped by SIGINT / SIGTERM",
  },
  verify: {
    positionals: ["name?"],
    summary: "Count rows that still need work (whole table); exit 1 unless every count is 0.",
    details: [
      "Read-only. A migration whose table does not exist in this database cannot be verified: that is exit 1",
      "too, so verify only passes as a CI gate on a database where the backfill is complete.",
    ],
    flags: { migrations: MIGRATIONS_FLAG },
    exitCodes:
      "0 no rows left; 1 rows left, or a migration cannot apply here; 2 usage, configuration or no database",
  },
  "dry-run": {
    positionals: ["name?"],
    summary:
      "Run one real step in a transaction that is rolled back (nothing changes); project the whole run.",
    details: [
      "Shows the candidate rows, sample rows before/after, the step's time, and the whole run projected for the",
      "slice budget and the tick interval (default: slices back to back; give your cron's interval, e.g. 60000).",
    ],
    flags: {
      migrations: MIGRATIONS_FLAG,
      "batch-size": { kind: "integer", min: 1, value: "N", help: "keys in the trial step" },
      "tick-interval-ms": {
        kind: "integer",
        min: 1,
        value: "N",
        help: "how often your scheduler ticks, for the projection",
      },
      json: { kind: "boolean", help: "print a JSON array of reports (the only thing on stdout)" },
    },
    exitCodes: "0 ok; 1 the trial failed to run; 2 usage, configuration or no database",
  },
  failures: {
    positionals: ["name"],
    summary: "List the quarantined (poison) rows of a migration, or ask the runner to retry them.",
    details: [
      "Quarantined rows are keys whose step failed on their own; --retry asks the runner to re-apply the change",
      "to them (all unresolved ones, or --keys).",
    ],
    flags: {
      all: { kind: "boolean", help: "list resolved rows too" },
      json: { kind: "boolean", help: "print a JSON array (the only thing on stdout)" },
      retry: { kind: "boolean", help: "mark the rows for retry" },
      keys: { kind: "keys", value: "k1,k2", help: "with --retry: only these keys" },
      migrations: MIGRATIONS_FLAG,
    },
    exitCodes: "0 ok; 2 usage, configuration, no such migration or no database",
  },
  fleet: {
    positionals: ["run|status"],
    summary: "One backfill across many databases (a database per tenant), listed one URL per line in FILE.",
    details: [
      "Each tenant keeps its own _async_migrations (exactly-once on its own); the fleet's progress is read from",
      "them. run: the canary tenants first, then waves of --concurrency tenants; a failed or unreachable tenant",
      "stops further waves unless --continue-on-error. A killed fleet run resumes where each tenant stands.",
      "status is read-only. Tenants are never created: a missing file is reported unreachable.",
    ],
    flags: {
      databases: { kind: "string", value: "FILE", help: "the fleet: one database URL per line, # comments" },
      "until-done": {
        kind: "boolean",
        help: "run: each tenant until no runnable work is left (default: one slice)",
      },
      canary: {
        kind: "integer",
        min: 0,
        value: "N",
        help: "run: tenants that run and finish first (default 1)",
      },
      concurrency: { kind: "integer", min: 1, value: "N", help: "tenants at a time (default 4)" },
      "continue-on-error": { kind: "boolean", help: "run: go on with further waves after a tenant failed" },
      "budget-ms": { kind: "integer", min: 1, value: "N", help: "run: time budget of a slice" },
      migrations: MIGRATIONS_FLAG,
      json: { kind: "boolean", help: "print the tenants and the summary as JSON (the only thing on stdout)" },
    },
    exitCodes:
      "0 every tenant done; 1 a tenant is not done (failed, unreachable, pending); 2 usage or configuration",
  },
  pause: controlSpec("Pause a migration (a running one stops after its step in flight)."),
  resume: controlSpec("Resume a paused migration."),
  cancel: controlSpec("Cancel a migration; its rows keep what was already changed."),
  retry: controlSpec("Retry a failed or cancelled migration from its cursor."),
  help: {
    positionals: ["command?"],
    summary: "Show this text, or a command's help.",
    details: [],
    flags: {},
    exitCodes: "0",
  },
};

function spec(name: string): CommandSpec | undefined {
  return Object.hasOwn(SPECS, name) ? SPECS[name] : undefined;
}

/** `run [--until-done] [--budget-ms N] …`: a command and its arguments. */
function synopsis(name: string, command: CommandSpec): string {
  const parts = [name];
  for (const p of command.positionals) parts.push(p.endsWith("?") ? `[${p.slice(0, -1)}]` : `<${p}>`);
  for (const [flag, f] of Object.entries(command.flags)) {
    parts.push(f.value === undefined ? `[--${flag}]` : `[--${flag} ${f.value}]`);
  }
  return parts.join(" ");
}

function optionLines(rows: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`);
}

const ENVIRONMENT = `Environment (the same variables, with the same meaning, as the server's; see README "Configuration"):
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
                           TRICKLE_WEBHOOK_URL for lifecycle webhooks; TRICKLE_MAX_QUARANTINED (default 1000)`;

/** The global help: every command in one line or two, the global options, the environment, the exit codes. */
export function globalHelp(): string {
  const lines = [
    "Usage: trickle <command> [options] [--config FILE]",
    "       (from a checkout: npm run -s trickle -- <command> …)",
    "",
    "Commands:",
  ];
  for (const name of ["seed", "status", "run", "verify", "dry-run", "failures", "fleet"]) {
    const command = SPECS[name]!;
    lines.push(`  ${synopsis(name, command)}`, `        ${command.summary}`);
  }
  lines.push(
    `  ${CONTROL_ACTIONS.join("|")} <name> [--migrations a,b|all]`,
    "        Change a migration's status.",
    "  help [command]",
    `        ${SPECS.help!.summary}`,
    "",
    "Options for every command:",
    ...optionLines([
      ["--config FILE", CONFIG_HELP],
      ["-h, --help", "show the command's help"],
    ]),
    "",
    "Read-only commands (status, verify, dry-run, failures, and the controls) never create a database: a",
    "DATABASE_URL naming a file that does not exist is an error. seed and run create it.",
    "",
    ENVIRONMENT,
    "",
    "Exit codes: 0 ok; 1 failed / conflict / rows left; 2 usage or configuration error; 130 / 143 when run was",
    "stopped by SIGINT / SIGTERM. `trickle <command> --help` tells each command's.",
  );
  return lines.join("\n");
}

/** One command's help; the global help for an unknown name. */
export function commandHelp(name: string): string {
  const command = spec(name);
  if (command === undefined || name === "help") return globalHelp();
  const rows: [string, string][] = Object.entries(command.flags).map(([flag, f]) => [
    f.value === undefined ? `--${flag}` : `--${flag} ${f.value}`,
    f.help,
  ]);
  rows.push(["--config FILE", CONFIG_HELP], ["-h, --help", "show this help"]);
  return [
    `Usage: trickle ${synopsis(name, command)} [--config FILE]`,
    "",
    command.summary,
    ...command.details,
    "",
    "Options:",
    ...optionLines(rows),
    "",
    `Exit codes: ${command.exitCodes}.`,
    "Environment variables (DATABASE_URL, TRICKLE_*): see `trickle --help`.",
  ].join("\n");
}

/** Every flag any command knows, plus the global ones, in `parseArgs`'s terms. */
function parseArgsOptions(): Record<string, { type: "string" | "boolean"; short?: string }> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    config: { type: "string" },
    help: { type: "boolean", short: "h" },
  };
  for (const command of Object.values(SPECS)) {
    for (const [flag, f] of Object.entries(command.flags)) {
      options[flag] = { type: f.kind === "boolean" ? "boolean" : "string" };
    }
  }
  return options;
}

type FlagValue = boolean | number | string | readonly bigint[];

/**
 * Parses `argv` (without `node` and the script). `--config FILE` and `--help`/`-h` may be anywhere; `--help` (or
 * `help <command>`) gives `{ name: "help", topic }`. Throws `UsageError` for anything it does not accept.
 */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  // Non-strict, so that the messages are ours (one line, naming the command); every check is made below.
  const { tokens } = parseArgs({
    args: [...argv],
    options: parseArgsOptions(),
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const positionals = tokens.flatMap((t) => (t.kind === "positional" ? [t.value] : []));
  const options = tokens.flatMap((t) => (t.kind === "option" ? [t] : []));
  const wantsHelp = options.some((t) => t.name === "help");

  const name = positionals[0];
  if (name === undefined) {
    if (wantsHelp) return { command: { name: "help", topic: undefined }, configFile: undefined };
    const first = options[0];
    throw new UsageError(first ? `expected a command before ${first.rawName}` : "missing command");
  }
  const command = spec(name);
  if (command === undefined) throw new UsageError(`unknown command "${name}"`);
  if (wantsHelp) return { command: { name: "help", topic: name }, configFile: undefined };

  let configFile: string | undefined;
  const flags = new Map<string, FlagValue>();
  for (const token of options) {
    const isConfig = token.name === "config";
    const flag = isConfig
      ? undefined
      : Object.hasOwn(command.flags, token.name)
        ? command.flags[token.name]
        : undefined;
    if (!isConfig && flag === undefined) throw new UsageError(`unknown option ${token.rawName}`, name);
    if (isConfig ? configFile !== undefined : flags.has(token.name))
      throw new UsageError(`option --${token.name} given twice`, name);
    if (flag?.kind === "boolean") {
      if (token.value !== undefined) throw new UsageError(`option --${token.name} takes no value`, name);
      flags.set(token.name, true);
      continue;
    }
    // A following `--flag` is the next option, not this one's value (`--seed -3` is a value).
    const raw = token.value;
    if (raw === undefined || (!token.inlineValue && raw.startsWith("--"))) {
      throw new UsageError(
        isConfig ? "option --config needs a file" : `option --${token.name} needs a value`,
        name,
      );
    }
    if (isConfig) {
      if (raw.trim() === "") throw new UsageError("option --config needs a file", name);
      configFile = raw;
      continue;
    }
    flags.set(token.name, parseValue(token.name, flag!, raw, name));
  }

  const args = positionals.slice(1);
  const required = command.positionals.filter((p) => !p.endsWith("?"));
  if (args.length < required.length) throw new UsageError(`missing <${required[args.length]}>`, name);
  if (args.length > command.positionals.length) {
    throw new UsageError(`unexpected argument "${args[command.positionals.length]}"`, name);
  }
  return { command: build(name, flags, args), configFile };
}

function build(name: string, flags: ReadonlyMap<string, FlagValue>, args: readonly string[]): Command {
  const num = (flag: string) => flags.get(flag) as number | undefined;
  const text = (flag: string) => flags.get(flag) as string | undefined;
  const on = (flag: string) => flags.get(flag) === true;
  switch (name) {
    case "help": {
      const topic = args[0];
      if (topic !== undefined && spec(topic) === undefined)
        throw new UsageError(`unknown command "${topic}"`, "help");
      return { name: "help", topic };
    }
    case "seed":
      return {
        name: "seed",
        transmissions: num("transmissions") ?? 71_000,
        observations: num("observations") ?? 1_500_000,
        legacyFraction: num("legacy-fraction") ?? 0.9,
        seed: num("seed") ?? 1,
      };
    case "status":
      return { name: "status", json: on("json") };
    case "run":
      return {
        name: "run",
        untilDone: on("until-done"),
        budgetMs: num("budget-ms"),
        migrations: text("migrations"),
        json: on("json"),
      };
    case "verify":
      return { name, migration: args[0], migrations: text("migrations") };
    case "dry-run":
      return {
        name,
        migration: args[0],
        migrations: text("migrations"),
        batchSize: num("batch-size"),
        tickIntervalMs: num("tick-interval-ms"),
        json: on("json"),
      };
    case "failures": {
      const keys = flags.get("keys") as readonly bigint[] | undefined;
      if (keys !== undefined && !on("retry")) throw new UsageError("option --keys needs --retry", name);
      return {
        name,
        migration: args[0]!,
        retry: on("retry"),
        keys,
        all: on("all"),
        json: on("json"),
        migrations: text("migrations"),
      };
    }
    case "fleet": {
      const action = args[0];
      if (action !== "run" && action !== "status")
        throw new UsageError(`expected "run" or "status", got ${JSON.stringify(action)}`, name);
      const databases = text("databases");
      if (databases === undefined) throw new UsageError("missing --databases FILE", name);
      if (action === "status") {
        for (const flag of ["until-done", "canary", "continue-on-error", "budget-ms"])
          if (flags.has(flag)) throw new UsageError(`option --${flag} is for fleet run`, name);
      }
      return {
        name,
        action,
        databases,
        json: on("json"),
        untilDone: on("until-done"),
        canary: num("canary") ?? 1,
        concurrency: num("concurrency") ?? 4,
        continueOnError: on("continue-on-error"),
        budgetMs: num("budget-ms"),
        migrations: text("migrations"),
      };
    }
    default:
      return { name: name as ControlCommandName, migration: args[0]!, migrations: text("migrations") };
  }
}

function parseValue(flag: string, spec: FlagSpec, raw: string, command: string): FlagValue {
  const value = raw.trim();
  switch (spec.kind) {
    case "integer": {
      // Digits only (underscores allowed as separators: 1_500_000); no floats, exponents or hex.
      const digits = value.replaceAll("_", "");
      const n = Number(digits);
      const min = spec.min ?? 0;
      if (!/^-?\d+$/.test(digits) || !Number.isSafeInteger(n) || n < min) {
        const bound = min === Number.MIN_SAFE_INTEGER ? "an integer" : `an integer ≥ ${min}`;
        throw new UsageError(`option --${flag} must be ${bound}, got ${JSON.stringify(raw)}`, command);
      }
      return n;
    }
    case "fraction": {
      const n = Number(value);
      if (value === "" || !/^[0-9.]+$/.test(value) || !(n >= 0 && n <= 1)) {
        throw new UsageError(
          `option --${flag} must be a number between 0 and 1, got ${JSON.stringify(raw)}`,
          command,
        );
      }
      return n;
    }
    case "string":
      if (value === "") throw new UsageError(`option --${flag} needs a non-empty value`, command);
      return value;
    case "keys": {
      // Exact keys (they may be beyond 2^53), by the same rule as the control API's.
      const keys = value.split(",").map((k) => int64Key(k.trim()));
      if (keys.some((k) => k === undefined)) {
        throw new UsageError(
          `option --${flag} must be comma-separated integer keys, got ${JSON.stringify(raw)}`,
          command,
        );
      }
      return keys as bigint[];
    }
    default:
      return true;
  }
}
