import { defineMigration } from "../define.ts";

/**
 * CoreScope's `transmissions.last_seen` backfill: rows left at 0 by the upgrade get the newest observation's
 * timestamp. Rows without observations keep 0 (COALESCE), exactly like the original one-shot statement
 *
 *   UPDATE transmissions SET last_seen = COALESCE((SELECT MAX(timestamp) FROM observations
 *     WHERE transmission_id = transmissions.id), last_seen) WHERE last_seen = 0
 *
 * but here in keyset steps, so those rows are passed over once and never rescanned.
 */
export const txLastSeenBackfillV1 = defineMigration({
  name: "tx_last_seen_backfill_v1",
  description: "Set transmissions.last_seen to the newest observation timestamp where it is still 0",
  table: "transmissions",
  key: "id",
  filter: "last_seen = 0",
  set: `last_seen = COALESCE((SELECT MAX(o.timestamp) FROM observations o WHERE o.transmission_id = transmissions.id), last_seen)`,
  // Still needing work: still 0 although an observation with a non-zero timestamp exists.
  verify: `last_seen = 0 AND COALESCE((SELECT MAX(o.timestamp) FROM observations o WHERE o.transmission_id = transmissions.id), 0) <> 0`,
  requires: ["transmissions", "observations"],
  // Makes MAX(timestamp) per transmission an index-only probe; skipped when any index already leads with
  // these columns (CoreScope's idx_observations_tx_ts does).
  prerequisites: [
    {
      kind: "index",
      name: "idx_observations_tx_ts",
      table: "observations",
      columns: ["transmission_id", "timestamp"],
    },
  ],
});
