/** Plain output helpers shared by the CLI commands. */

export function out(line = ""): void {
  process.stdout.write(`${line}\n`);
}

export function err(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Counters in JSON: a number while it is a safe integer (every realistic count), otherwise its decimal text,
 * so no value is ever rounded.
 */
export function jsonCount(value: bigint): number | string {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}

/** Keys in JSON: always decimal text (keys may be near 2^63 and are identifiers, not quantities). */
export function jsonKey(value: bigint | null): string | null {
  return value === null ? null : value.toString();
}

/** Left-aligns columns of a small table. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}
