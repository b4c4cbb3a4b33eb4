/**
 * `npm start`: the Node runtime entry. Configuration comes from the environment (see src/config.ts); with none
 * at all it opens `data/trickle.db`, applies trickle's state schema, registers the default migrations and
 * serves on port 8787. SIGTERM/SIGINT stop it gracefully (exit 0).
 */
import { startNodeServer } from "./node/server.ts";

startNodeServer({ handleSignals: true }).catch((error: unknown) => {
  // Configuration errors name the variable; nothing here prints a secret or the database URL.
  process.stderr.write(`trickle: cannot start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
