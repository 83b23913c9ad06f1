// The benchmark itself is run by hand (npm run bench); this only keeps it from rotting: its quickest
// section runs and its --json report has the documented shape. No timing is asserted here.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isLinux, repoRoot } from './helpers.js';

describe.runIf(isLinux)('benchmark script', () => {
  it('runs a section and reports JSON with the machine, the command and the targets', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(repoRoot, 'scripts', 'bench.mjs'), '--quick', '--only', 'import', '--json'],
      { encoding: 'utf8', timeout: 120_000 });
    const report = JSON.parse(stdout);
    expect(report.machine).toMatchObject({ cpus: expect.any(Number), node: process.version });
    expect(report.command).toBe('npm run bench -- --quick --only import');
    expect(report.importTime.ours).toMatchObject({ importMs: expect.any(Number), nativeLoaded: [] });
    expect(report.importTime.theirs.nativeLoaded).toContain('keytar.node');
    expect(report.targets.map((t: { target: string }) => t.target)).toEqual(['import < 5 ms, no native module']);
  });

  it('refuses unknown arguments with exit 2 and the usage', async () => {
    const error = await promisify(execFile)(process.execPath, [join(repoRoot, 'scripts', 'bench.mjs'), '--fast'], { encoding: 'utf8' })
      .catch((caught: { code: number; stderr: string }) => caught);
    expect(error).toMatchObject({ code: 2, stderr: expect.stringContaining('usage: npm run bench') });
  });
});
