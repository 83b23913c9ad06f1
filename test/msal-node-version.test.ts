// Which @azure/msal-node the suites run against: node_modules' own, or in the version matrix's msal-node lane the
// copy scripts/version-matrix.mjs installed (MKC_EXPECT_MSAL_NODE names its version; vitest.config.ts and
// scripts/msal-node-swap.cjs make every import resolve to it). Test files, child processes and worker threads
// must all load the expected one, so that lane cannot silently run on node_modules' msal-node.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { version } from '@azure/msal-node';
import { describe, expect, it } from 'vitest';
import { msalNode3Version, nodeVersions } from '../scripts/version-matrix.mjs';
import { repoRoot } from './helpers.js';

const expected = process.env.MKC_EXPECT_MSAL_NODE
  ?? (JSON.parse(readFileSync(join(repoRoot, 'node_modules', '@azure', 'msal-node', 'package.json'), 'utf8')) as { version: string }).version;
// Both module formats: msal-node ships an ES module and a CommonJS build, and our dist/cjs requires the latter.
const probe = `import('@azure/msal-node').then((m) => console.log(m.version, require('@azure/msal-node').version))`;

describe(`@azure/msal-node ${expected} is the one loaded`, () => {
  it('in test files', () => {
    expect(version).toBe(expected);
  });

  it('in child processes, imported and required', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', probe], { cwd: repoRoot, encoding: 'utf8' });
    expect(stdout.trim()).toBe(`${expected} ${expected}`);
  });

  it('in worker threads, imported and required', async () => {
    const source = probe.replace('console.log(', "require('node:worker_threads').parentPort.postMessage([").replace('version))', 'version].join(" ")))');
    const worker = new Worker(source, { eval: true });
    const loaded = await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
    expect(loaded).toBe(`${expected} ${expected}`);
  });
});

const packageJson = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
  engines: { node: string }; peerDependencies: Record<string, string>; devDependencies: Record<string, string>;
};

describe('the versions this lane and the package claim', () => {
  it('this lane runs on the Node it claims (MKC_EXPECT_NODE, set by scripts/version-matrix.mjs), in test files and child processes', async () => {
    const claimed = process.env.MKC_EXPECT_NODE;
    const floor = Number(/^>=\s*(\d+)$/.exec(packageJson.engines.node)?.[1]);
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(floor);
    if (claimed !== undefined) expect(process.version.startsWith(claimed), `${process.version} is not ${claimed}`).toBe(true);
    // Tests that run `node` by name get the same Node (the lane puts its bin first on PATH).
    const { stdout } = await promisify(execFile)('node', ['--version'], { encoding: 'utf8' });
    expect(stdout.trim()).toBe(process.version);
  });

  it("the peer range is exactly what the matrix tests: msal-node 3's tested release up to the installed major", () => {
    const installedMajor = Number((JSON.parse(readFileSync(join(repoRoot, 'node_modules', '@azure', 'msal-node', 'package.json'), 'utf8')) as { version: string }).version.split('.')[0]);
    expect(packageJson.peerDependencies['@azure/msal-node']).toBe(`>=${msalNode3Version} <${installedMajor + 1}`);
    expect(msalNode3Version.split('.')[0]).toBe('3');
    // The Node lanes: every even major above the engines floor up to the newest, as the GitHub matrix has them.
    const floor = Number(/^>=\s*(\d+)$/.exec(packageJson.engines.node)?.[1]);
    expect(nodeVersions.map((version) => Number(version.split('.')[0]))).toEqual([floor + 2, floor + 4]);
  });
});
