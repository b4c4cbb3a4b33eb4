/**
 * The machine a benchmark ran on, as its JSON records it: CPUs, memory, Node, and the load averages at the start
 * (and, with `loadavgNow`, at the end), so a reader can tell a quiet run from a noisy one.
 */
import { cpus, loadavg, platform, totalmem } from "node:os";
import { round } from "./stats.ts";

export interface MachineInfo {
  readonly cpus: number;
  readonly model: string;
  readonly memGb: number;
  readonly node: string;
  readonly platform: string;
  /** 1, 5 and 15 minute load averages when this was taken. */
  readonly loadavg: readonly number[];
}

export function machineInfo(): MachineInfo {
  return {
    cpus: cpus().length,
    model: cpus()[0]?.model.trim() ?? "unknown",
    memGb: round(totalmem() / 1024 ** 3, 1),
    node: process.version,
    platform: `${platform()} ${process.arch}`,
    loadavg: loadavgNow(),
  };
}

export function loadavgNow(): number[] {
  return loadavg().map((l) => round(l, 2));
}
