import { join } from 'node:path';
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

// The Linux Secret Service suites, run a second time on KeePassXC (issue 13: the backend is proven on two
// real implementations). Only their Secret Service cases: a name with libsecret, Secret Service or keyring
// in it and not safeStorage (the plaintext and safeStorage cases beside them never reach D-Bus, and ran in
// light/heavy); test/skip-guard-reporter.ts counts the cases this pattern leaves out as run elsewhere.
// Left out: fault-injection (strace on our file and lock syscalls; the D-Bus side is the same client) and
// change-token's ext4 loop mount (marker-file timestamps, not the Secret Service).
const secretServiceSuites = [
  'test/secret-service.test.ts',
  'test/cross-process.test.ts',
  'test/crash.test.ts',
  'test/self-test.test.ts',
  'test/interop.test.ts',
  'test/selection.test.ts',
  'test/corruption.test.ts',
  'test/fallback.test.ts',
  'test/lock.test.ts',
  'test/hygiene.test.ts',
  'test/cache-changed.test.ts',
  'test/directories.test.ts',
  'test/distributed.test.ts',
  'test/verify-by-load.test.ts',
  // Not on KeePassXC: test/contract.test.ts, test/single-process.test.ts, test/usage-patterns.test.ts. KeePassXC
  // 2.7.4 (Debian 12's, the only one installable here) dies with SIGSEGV within seconds of each of them, every run,
  // and at random under keytar's own writes too (1 run in 5 of a create/delete loop beside a 1 MB entry): a crash
  // of the service, not a failure of the client. docs/secret-service-providers.md has the reproductions.
];
const secretServiceCases = /^(?!.*safeStorage).*(libsecret|Secret Service|keyring)/i;

// The version matrix's msal-node lane (scripts/version-matrix.mjs) runs suites on another installed msal-node.
// Test files are resolved by vite, hence this alias; their child processes and worker threads are resolved by
// Node, through scripts/msal-node-swap.cjs reading the same variable. test/msal-node-version.test.ts checks both.
const msalNodeRoot = process.env.MKC_MSAL_NODE_ROOT;

export default defineConfig({
  resolve: {
    alias: msalNodeRoot
      ? [{ find: /^@azure\/msal-node$/, replacement: join(msalNodeRoot, 'node_modules', '@azure', 'msal-node') }]
      : [],
  },
  test: {
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
          globalSetup: ['test/global-setup.ts'],
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
          globalSetup: ['test/global-setup.ts'],
          fileParallelism: false,
          maxWorkers: 1,
          // The slowest heavy case takes about 60 s alone on 2 cores: 5x headroom.
          testTimeout: 300_000,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: 'keepassxc',
          include: secretServiceSuites,
          globalSetup: ['test/global-setup-keepassxc.ts'],
          // @ts-expect-error vitest 4's ProjectConfig type leaves testNamePattern out, yet a project's own is
          // applied (this project reports the rest as skipped, and the skip guard counts them as run elsewhere).
          testNamePattern: secretServiceCases,
          // For KeePassXC's own random crashes (test/setup-env.ts restarts it); never in light/heavy. Twice: one
          // clean-clone run of .ci/run saw a SIGSEGV mid-test and the first retry fail on the restarted daemon
          // (docs/secret-service-providers.md has the reproductions).
          retry: 2,
          // After the others, one file at a time: half of these files are heavy ones.
          fileParallelism: false,
          maxWorkers: 1,
          testTimeout: 300_000,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
