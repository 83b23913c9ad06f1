// The skip guard (test/skip-guard-reporter.ts) on small cases of its own: CI fails a run with a skipped test, on
// every OS; a suite tagged for another OS is not a skip; and off Linux a run must have passed its own platform's
// tagged tests (MKC_SKIP_GUARD_PLATFORM makes the reporter judge as on that OS).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers.js';

const fixtures = join(repoRoot, 'test', 'fixtures', 'skip-guard');

async function guarded(testCase: string, env: Record<string, string>): Promise<{ code: number; output: string }> {
  const vitest = join(repoRoot, 'node_modules', 'vitest', 'vitest.mjs');
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [vitest, 'run', '--config', join(fixtures, 'vitest.config.ts')], {
      cwd: fixtures, encoding: 'utf8', env: { ...process.env, MKC_SKIP_GUARD_CASE: testCase, ...env },
    });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

/** Runs a case and checks its exit code and one line of its output. */
async function expectGuarded(testCase: string, env: Record<string, string>, code: number, says?: string): Promise<void> {
  const run = await guarded(testCase, env);
  expect(run.code, run.output).toBe(code);
  if (says !== undefined) expect(run.output).toContain(says);
}

describe('the skip guard', () => {
  for (const platform of ['linux', 'darwin', 'win32']) {
    it(`in CI fails a run with a skipped test (judged as on ${platform})`, () =>
      expectGuarded('skipped', { CI: 'true', MKC_SKIP_GUARD_PLATFORM: platform }, 1, 'is skipped without a platform tag'));
  }

  it('outside CI reports the skip and passes', () =>
    expectGuarded('skipped', { CI: 'false', MKC_SKIP_GUARD_PLATFORM: 'linux' }, 0, '1 passed, 0 failed, 1 skipped'));

  it('a suite tagged for another OS is not a skip on Linux', () =>
    expectGuarded('other-platform', { CI: 'true', MKC_SKIP_GUARD_PLATFORM: 'linux' }, 0, '1 of them for another OS: plan9 only'));

  it('off Linux, a run in which no test of that platform passed fails; one in which they did passes', async () => {
    await expectGuarded('other-platform', { CI: 'true', MKC_SKIP_GUARD_PLATFORM: 'darwin' }, 1, 'no test tagged [darwin only] passed');
    await expectGuarded('own-platform', { CI: 'true', MKC_SKIP_GUARD_PLATFORM: 'win32' }, 0);
  });
});
