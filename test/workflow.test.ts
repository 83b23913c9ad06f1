// .github/workflows/ci.yml is checked here, where it cannot run: by a workflow validator from the npm registry
// (@action-validator/cli, GitHub's workflow schema), and by our own rules: each job runs our npm scripts and test
// files as they are, the Node matrix covers every supported major, and the macOS keychain is always deleted.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot, tempDir } from './helpers.js';

const workflowPath = join(repoRoot, '.github', 'workflows', 'ci.yml');
const workflowText = readFileSync(workflowPath, 'utf8');
const validator = join(repoRoot, 'node_modules', '.bin', 'action-validator');

interface Step { run?: string; uses?: string; if?: string; with?: Record<string, unknown> }
interface Job { 'runs-on': string; 'timeout-minutes'?: number; steps: Step[]; strategy?: { matrix?: Record<string, unknown[]> } }
const workflow = parse(workflowText) as { on: unknown; permissions: unknown; jobs: Record<string, Job> };
const packageJson = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string>; engines: { node: string } };
const runs = (job: Job) => job.steps.map((step) => step.run ?? '').join('\n');

async function validate(path: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(validator, [path], { encoding: 'utf8' });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('the GitHub workflow', () => {
  it('passes the workflow validator, which does fail a broken copy (so a pass means something)', async () => {
    expect(await validate(workflowPath)).toMatchObject({ code: 0 });
    const directory = join(await tempDir(), '.github', 'workflows');
    await mkdir(directory, { recursive: true });
    const broken = join(directory, 'ci.yml');
    await writeFile(broken, workflowText.replace('runs-on: windows-latest', 'runs-onn: windows-latest'));
    expect((await validate(broken)).code).not.toBe(0);
  });

  it('runs on every push and pull request, reads only, and bounds every job', () => {
    expect(workflow.on).toMatchObject({ push: null, pull_request: null });
    expect(workflow.permissions).toEqual({ contents: 'read' });
    expect(Object.keys(workflow.jobs).sort()).toEqual(['linux', 'macos', 'node-versions', 'windows']);
    for (const [name, job] of Object.entries(workflow.jobs)) {
      expect(job['timeout-minutes'], name).toBeGreaterThan(0);
      for (const step of job.steps) if (step.uses) expect(step.uses, name).toMatch(/^actions\/(checkout|setup-node)@v\d+$/);
    }
    expect(workflow.jobs.macos!['runs-on']).toMatch(/^macos-/);
    expect(workflow.jobs.windows!['runs-on']).toMatch(/^windows-/);
  });

  it('each job runs what we run here: .ci/run, npm scripts that exist, test files that exist', () => {
    expect(runs(workflow.jobs.linux!)).toMatch(/bash \.ci\/run/);
    const all = Object.values(workflow.jobs).map(runs).join('\n');
    const scripts = [...all.matchAll(/npm run (?:--silent )?([\w:-]+)/g)].map((match) => match[1]!);
    expect(scripts.length).toBeGreaterThan(5);
    for (const script of scripts) expect(packageJson.scripts, script).toHaveProperty([script]);
    const files = [...all.matchAll(/\btest\/[\w./-]+\.test\.ts\b/g)].map((match) => match[0]);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) expect(existsSync(join(repoRoot, file)), file).toBe(true);
    // No job installs or tests another way than the scripts: npm ci, the build and the test runner only.
    for (const command of all.split('\n').filter((line) => /^(npm|npx) /.test(line.trim()))) {
      expect(command.trim()).toMatch(/^(npm ci\b|npm run |npx vitest run )/);
    }
  });

  it('the Node matrix covers every major the engines range allows, from its floor to the newest tested', () => {
    const versions = workflow.jobs['node-versions']!.strategy!.matrix!['node-version']!.map(Number);
    const floor = Number(/>=\s*(\d+)/.exec(packageJson.engines.node)![1]);
    expect(versions).toContain(floor);
    expect(versions).toEqual(expect.arrayContaining([20, 22, 24]));
    // Every even (LTS) major from the floor up to the highest listed.
    for (let major = floor; major <= Math.max(...versions); major += 2) expect(versions).toContain(major);
    // No compiler: the Linux backend needs no native addon.
    expect(runs(workflow.jobs['node-versions']!)).toMatch(/npm ci --ignore-scripts/);
  });

  it('macOS works in a temporary, unlocked, default keychain, deleted whatever happened', () => {
    const steps = workflow.jobs.macos!.steps;
    const setup = steps.map((step) => step.run ?? '').join('\n');
    for (const command of ['security create-keychain', 'security unlock-keychain', 'security default-keychain', 'security list-keychains']) {
      expect(setup).toContain(command);
    }
    const cleanup = steps.find((step) => step.run?.includes('security delete-keychain'));
    expect(cleanup?.if).toBe('always()');
    expect(steps.indexOf(cleanup!)).toBe(steps.length - 1);
    expect(setup).toMatch(/test\/contract\.test\.ts/);
    expect(setup).toMatch(/npm run self-test/);
    expect(runs(workflow.jobs.windows!)).toMatch(/test\/contract\.test\.ts[\s\S]*npm run self-test/);
  });
});
