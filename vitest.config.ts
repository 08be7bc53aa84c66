import { defineConfig } from 'vitest/config';

/**
 * Two projects, both part of `npm test`:
 * - unit: pure logic, no processes.
 * - podman: anything that needs real Podman, Nix, containers or HTTP. Never skipped: where Podman or Nix
 *   is missing these tests fail, and `npm test` runs scripts/setup.sh first, which installs them.
 *   Files run one at a time (containers are heavy on 2 cores); tests inside a file run in order.
 */
export default defineConfig({
  test: {
    // An unhandled rejection or 'error' event anywhere in a test process fails the run: it is a bug
    // the test found (gateway processes started by a test log theirs, and test/helpers/main-process.ts
    // fails the test on that line). This is vitest's default, said here so that nobody turns it off.
    dangerouslyIgnoreUnhandledErrors: false,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.podman.test.ts', 'test/runtime/nix/**'],
        },
      },
      {
        test: {
          name: 'podman',
          include: ['test/**/*.podman.test.ts', 'test/runtime/nix/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
