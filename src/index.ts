/**
 * trickle as a library: the public, typed API for embedding it in an existing application (see
 * examples/embed-hono/ and the README's "Embedding" section).
 *
 * The usual path: define migrations with `defineMigration`, build the service with `createService` on your
 * libSQL client (`intMode: "bigint"`), mount `service.app` in your Hono app (any prefix works: the status page
 * and the banner address the API relatively), and drive ticks with `service.start()` (an in-process timer),
 * `service.tick()` (from your own cron or scheduler), or both. `service.onLifecycle` / `runner.on` report what
 * happens. For more control, the pieces are exported too: `Runner`, `Scheduler`, `MigrationControls`,
 * `SnapshotCache`, `createApp` and the route factories.
 *
 * Portable: nothing here imports `node:*`, so the same entry works on Node, Workers, Deno and Bun. The package's
 * other entries: `./worker` (the Workers module: `export { default } from "trickle-backfill/worker"`) and `./node`
 * (the Node server with its engine thread, src/node/index.ts).
 */

// HTTP
export { type AppConfig, type AppDeps, createApp, type SnapshotSource } from "./app.ts";
// Configuration: every setting (src/settings.ts) and the migrations it selects
export {
  configFromSettings,
  type Env,
  inlineMigrations,
  loadConfig,
  type ServiceConfig,
} from "./config.ts";
export type { Clock } from "./engine/clock.ts";
export {
  type ControlAction,
  type ControlPort,
  type ControlResult,
  type FailureRetryResult,
  MigrationControls,
  type MigrationControlsOptions,
  type TuningPatch,
} from "./engine/controls.ts";
export {
  type DryRunOptions,
  type DryRunProjection,
  type DryRunReport,
  type DryRunSample,
  dryRunMigration,
  projectRun,
} from "./engine/dry-run.ts";
// The engine, assembled as every runtime assembles it
export {
  createControls,
  createEngine,
  createRunner,
  type Engine,
  type EngineOptions,
  type EngineSettings,
} from "./engine/engine.ts";
export { type ClassifiedError, classifyError } from "./engine/errors.ts";
export type { RunnerEvent, RunnerEventListener } from "./engine/events.ts";
export {
  type LifecycleEvent,
  onLifecycle,
  toLifecycleEvent,
  WebhookNotifier,
  type WebhookOptions,
} from "./engine/hooks.ts";
export {
  DEFAULT_OPERATOR_CONFIG,
  loadOperatorConfig,
  type OperatorConfig,
} from "./engine/operator-config.ts";
// Engine
export {
  type MigrationOutcome,
  Runner,
  type RunnerMigrationState,
  type RunnerOptions,
  type SliceResult,
} from "./engine/runner.ts";
export { Scheduler, type SchedulerOptions, SchedulerStoppedError } from "./engine/scheduler.ts";
export {
  type FailureRow,
  type Lease,
  type MigrationRow,
  type MigrationStatus,
  STATE_TABLE,
  StateStore,
} from "./engine/state-store.ts";
export type { ThrottleConfig, ThrottlePolicy } from "./engine/throttle.ts";
export { DEFAULT_TUNING, resolveTuning, type Tuning } from "./engine/tuning.ts";
export {
  migrationsFromConfig,
  migrationsFromModule,
  parseMigrationsJson,
} from "./migrations/config-file.ts";
// Definitions
export {
  type CustomMigration,
  defineMigration,
  type MigrationDefinition,
  type MigrationThrottle,
  type MigrationTuning,
  type Prerequisite,
  type ResolvedMigration,
  resolveMigration,
  type StepRange,
  type UpdateMigration,
} from "./migrations/define.ts";
export {
  BUILTIN_MIGRATIONS,
  buildCatalogue,
  type Catalogue,
  DEFAULT_ENABLED,
  selectMigrations,
} from "./migrations/registry.ts";
// Progress and the read path
export { computeProgress, type ProgressFigures } from "./progress/rate.ts";
export {
  buildSnapshot,
  isMigrationRunning,
  type MigrationInfo,
  migrationInfo,
  type Snapshot,
  SnapshotCache,
  SnapshotPublisher,
} from "./progress/snapshot.ts";
export { healthRoutes } from "./routes/health.ts";
export { metricsRoutes } from "./routes/metrics.ts";
export { migrationRoutes } from "./routes/migrations.ts";
export { openApiRoutes } from "./routes/openapi.ts";
export { perfRoutes } from "./routes/perf.ts";
export { tickRoutes } from "./routes/tick.ts";
export { uiRoutes } from "./routes/ui.ts";

// The whole service in one process
export {
  createService,
  logStateChange,
  type Service,
  type ServiceOptions,
  type ServiceSettings,
} from "./service.ts";
export { loadSettings, SETTINGS_VARIABLES, type Settings } from "./settings.ts";
// Cloudflare Workers: the handlers the `./worker` entry exports as its default, built on your own catalogue
export {
  createWorker,
  WORKER_LEASE_TTL_MS,
  WORKER_SLICE_BUDGET_MS,
  type WorkerContext,
  type WorkerEnv,
  type WorkerHandlers,
  type WorkerScheduledController,
} from "./worker/handlers.ts";
