import { defineConfig } from 'vitest/config';

// Cluster tests start a real control plane (see test/support/control-plane.ts). They run one file
// at a time, only through this config, with timeouts far above a unit test's because starting the
// control plane and waiting for pods takes tens of seconds on a busy machine.
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 240_000,
    teardownTimeout: 60_000,
  },
});
