// The package as users get it: `npm pack`, installed into fresh consumer projects (scripts/package-check.mjs).
// Needs the build (npm test builds first) and the npm registry or npm's cache for the consumer installs.
import { beforeAll, describe, expect, it } from 'vitest';
import { checkNames, runPackageChecks } from '../scripts/package-check.mjs';
import { isLinux } from './helpers.js';

interface CheckResult { name: string; ok: boolean; ms: number; error?: string; details?: unknown }

// Linux: the bundled-CLI check runs the self-test against the private Secret Service.
describe.runIf(isLinux)('packed tarball in fresh consumer projects', () => {
  let results: CheckResult[];
  beforeAll(async () => {
    results = await runPackageChecks({ env: process.env });
  }, 300_000);

  it.each(checkNames)('%s', (name) => {
    const result = results.find((r) => r.name === name);
    expect(result, `check "${name}" did not run`).toBeDefined();
    if (!result!.ok) throw new Error(result!.error);
  });
});
