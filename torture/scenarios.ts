/** The torture scenarios in the order they run, with their share of the time limit. */
import { clientFaultsScenario } from "./client-faults.ts";
import type { ScenarioOptions, ScenarioResult } from "./common.ts";
import { crashScenario } from "./crash.ts";
import { diskFullScenario } from "./disk-full.ts";
import { freezeScenario } from "./freeze.ts";
import { fuzzScenario } from "./fuzz.ts";
import { manyRunnersScenario } from "./many-runners.ts";
import { remoteFaultsScenario } from "./remote-faults.ts";
import { starvationScenario } from "./starvation.ts";
import { unreachableScenario } from "./unreachable.ts";

export interface Scenario {
  readonly name: string;
  /** Relative share of `--seconds` (the crash scenario scales with `--kills` and gets the most). */
  readonly weight: number;
  readonly run: (options: ScenarioOptions) => Promise<ScenarioResult>;
}

export const SCENARIOS: readonly Scenario[] = [
  { name: "crash", weight: 6, run: crashScenario },
  { name: "many-runners", weight: 1, run: manyRunnersScenario },
  { name: "freeze", weight: 1, run: freezeScenario },
  { name: "starvation", weight: 1, run: starvationScenario },
  { name: "client-faults", weight: 1, run: clientFaultsScenario },
  { name: "remote-faults", weight: 1, run: remoteFaultsScenario },
  { name: "unreachable", weight: 1, run: unreachableScenario },
  { name: "disk-full", weight: 1, run: diskFullScenario },
  { name: "fuzz", weight: 1, run: fuzzScenario },
];
