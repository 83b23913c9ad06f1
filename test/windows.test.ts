// The Windows lane: the dpapi-file backend's contract and its own cases, run by a real Windows build of
// Node 22 (with the real prebuilt DPAPI binding calling crypt32) under Wine, against the built package.
// Wine's DPAPI is Wine's implementation: this proves our Windows code path, binding loading and Windows
// file semantics, not Microsoft's crypto (see the README's verification table).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findWine, startWindowsNode, toWindowsPath, windowsNodeVersion } from '../scripts/windows-node.mjs';
import { contractCases } from './contract/persistence-contract.mjs';
import { repoRoot } from './helpers.js';
import { laneCases } from './windows/lane-cases.mjs';

interface LaneResult { name: string; ok: boolean; ms: number; error?: string; details?: Record<string, unknown> }
interface LaneReport { facts: Record<string, string>; results: LaneResult[] }

const expected = [...contractCases.filter((c) => !c.posixOnly).map((c) => `contract: ${c.name}`), ...laneCases.map((c) => c.name)];

// On Linux, Wine is required (CI installs it; the skip guard fails CI if this is skipped).
describe.runIf(process.platform === 'linux' && findWine() !== undefined)('Windows lane: dpapi-file in Windows Node under Wine [linux only]', () => {
  let report: LaneReport;
  let stop: (() => Promise<void>) | undefined;
  let directory: string;

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'mkc-lane-results-'));
    const windows = await startWindowsNode();
    stop = windows.stop;
    const resultsPath = join(directory, 'results.json');
    const run = await windows.runScript(join(repoRoot, 'test', 'windows', 'lane.mjs'), [toWindowsPath(resultsPath)], { timeoutMs: 300_000 });
    const text = await readFile(resultsPath, 'utf8').catch(() => undefined);
    if (text === undefined) {
      throw new Error(`The Windows lane wrote no results (exit ${run.code}).\nstdout: ${run.stdout.slice(-2000)}\nstderr: ${run.stderr.slice(-4000)}`);
    }
    report = JSON.parse(text) as LaneReport;
    if (report.facts.setupError) throw new Error(`The Windows lane failed to start: ${report.facts.setupError}`);
  }, 400_000);

  afterAll(async () => {
    await stop?.();
    await rm(directory, { recursive: true, force: true });
  });

  it(`ran in a Windows build of Node ${windowsNodeVersion} (process.platform win32, x64)`, () => {
    expect(report.facts).toMatchObject({ platform: 'win32', arch: 'x64', node: `v${windowsNodeVersion}` });
  });

  it('ran every case it was meant to, and nothing else', () => {
    expect(report.results.map((r) => r.name).sort()).toEqual([...expected].sort());
  });

  it.each(expected)('%s', (name) => {
    const result = report.results.find((r) => r.name === name);
    expect(result, `the lane did not run "${name}"`).toBeDefined();
    if (!result!.ok) throw new Error(`Failed in the Windows node:\n${result!.error}`);
  });
});
