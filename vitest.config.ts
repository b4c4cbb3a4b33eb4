import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Multi-process tests (crash, concurrency) share the machine's two cores with the test workers.
    maxWorkers: 2,
  },
});
