import { defineConfig } from 'vitest/config';

// Suites that start many processes (or Wine, or npm) each load both cores on their own. Run beside each
// other, or beside the rest, they starve one another: on a fresh 2-core CI machine the libsecret
// "8 processes x 25 sign-ins" case (56 s alone) timed out at 120 s next to the crash suite. So the
// light suites run first, two files at a time, and then the heavy ones one file at a time, alone.
const heavy = [
  'test/cross-process.test.ts',
  'test/crash.test.ts',
  'test/usage-patterns.test.ts',
  'test/fault-injection.test.ts',
  'test/windows.test.ts',
  'test/package.test.ts',
  'test/bench-smoke.test.ts',
];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup-env.ts'],
    pool: 'forks',
    reporters: ['default', './test/skip-guard-reporter.ts'],
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'light',
          include: ['test/**/*.test.ts'],
          exclude: heavy,
          // Two cores: the light multi-process tests bring a little parallelism of their own.
          maxWorkers: 2,
          testTimeout: 120_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'heavy',
          include: heavy,
          fileParallelism: false,
          maxWorkers: 1,
          // The slowest heavy case takes about 60 s alone on 2 cores: 5x headroom.
          testTimeout: 300_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
