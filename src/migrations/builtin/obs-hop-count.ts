import { defineMigration } from "../define.ts";

/**
 * Example of a larger backfill with a prerequisite column: `observations.hop_count` from the length of the
 * JSON array in `path_json` (-1 where the path is missing or not a JSON array). Opt-in: it adds a column.
 */
export const obsHopCountV1 = defineMigration({
  name: "obs_hop_count_v1",
  description: "Add observations.hop_count and fill it from json_array_length(path_json)",
  table: "observations",
  key: "id",
  filter: "hop_count IS NULL",
  set: `hop_count = CASE WHEN json_valid(path_json) AND json_type(path_json) = 'array' THEN json_array_length(path_json) ELSE -1 END`,
  prerequisites: [{ kind: "column", table: "observations", column: "hop_count", type: "INTEGER" }],
});
