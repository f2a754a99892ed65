import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // The cluster suite needs the Go-built control plane; it runs with vitest.cluster.config.ts.
    exclude: [...configDefaults.exclude, 'test/cluster/**'],
    testTimeout: 20_000,
  },
});
