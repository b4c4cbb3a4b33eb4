/**
 * CoreScope drop-in (design.md, "Public contract"): CoreScope's pull request #1725 named a migration's figures
 * `rate`, `etaSeconds`, `elapsedSeconds`; its re-cut #1735, whose banner and Go server CoreScope carries, names
 * them `ratePerSec`, `etaSec`, `elapsedSec`. Every item the read routes serve carries both spellings, so either
 * client reads trickle unchanged.
 */
import type { MigrationInfo } from "./snapshot.ts";

export type CoreScopeItem = MigrationInfo & {
  readonly ratePerSec: number;
  readonly etaSec: number | null;
  readonly elapsedSec: number;
};

export function withCoreScopeFields(info: MigrationInfo): CoreScopeItem {
  return { ...info, ratePerSec: info.rate, etaSec: info.etaSeconds, elapsedSec: info.elapsedSeconds };
}
