// The examples run as users would run them, each invocation its own process, with the network replaced by
// the in-process token endpoint (test/fixtures/example-cli.mjs).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isLinux, repoRoot, runFixture, tempDir } from './helpers.js';

const run = promisify(execFile);

const requestsOf = (stderr: string) => JSON.parse(/REQUESTS (.*)/.exec(stderr)![1]!) as Record<string, number>;

describe.runIf(isLinux)('examples/cli (device code login, cache in the private Secret Service)', () => {
  it('login once; later runs get whoami and a token from the cache with the network refusing; logout', async () => {
    const base = { cachePath: join(await tempDir(), 'cache', 'msal-cache.json'), serviceName: `mkc-example-${randomBytes(4).toString('hex')}` };
    const cli = (argv: string[], extra: object = {}) => runFixture('example-cli', { ...base, argv, ...extra });

    const login = await cli(['login'], { deviceCodeUser: 'alice' });
    expect(login.code).toBe(0);
    expect(login.stdout).toBe('Signed in as alice@example.test\n');
    expect(login.stderr).toMatch(/microsoft\.com\/devicelogin and enter the code [0-9A-F]{8}/);
    expect(requestsOf(login.stderr)).toMatchObject({ devicecode: 1, device_code: 1 });

    const whoami = await cli(['whoami'], { refuse: true });
    expect([whoami.code, whoami.stdout]).toEqual([0, 'alice@example.test\n']);

    const token = await cli(['token'], { refuse: true });
    expect(token.code).toBe(0);
    expect(token.stdout).toMatch(/^at\.[\w-]+\n$/);
    expect(requestsOf(token.stderr)).toEqual({}); // served from the cache: no token request at all

    const logout = await cli(['logout']);
    expect([logout.code, logout.stdout]).toEqual([0, 'Signed out alice@example.test\n']);
    const after = await cli(['whoami']);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain('Not signed in. Run: msal-cli login');
  });

  it('refuses unknown commands with exit 2 and the usage', async () => {
    const run = await runFixture('example-cli', { cachePath: join(await tempDir(), 'c.json'), serviceName: 'mkc-example-usage', argv: ['sign-in'] });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('usage: msal-cli login | whoami | token | logout');
  });
});

// Electron's published types, from the npm registry's electron package (its install script, which
// downloads the binary, is never run: the tarball is only unpacked). Cached in .cache/.
const electronVersion = '45.4.1';
async function electronTypes(): Promise<string> {
  const directory = join(repoRoot, '.cache', `electron-${electronVersion}`);
  const file = join(directory, 'package', 'electron.d.ts');
  if (existsSync(file)) return file;
  await mkdir(directory, { recursive: true });
  const env = { ...process.env, HOME: process.env.MKC_USER_HOME || process.env.HOME };
  await run('npm', ['pack', `electron@${electronVersion}`, '--silent'], { cwd: directory, env });
  await run('tar', ['-xzf', `electron-${electronVersion}.tgz`, 'package/electron.d.ts'], { cwd: directory });
  return file;
}

describe('examples/electron (safeStorage in the main process)', () => {
  it('type-checks against Electron 45\'s published electron.d.ts', async () => {
    const types = await electronTypes();
    const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await run(process.execPath, [tsc, '--noEmit', '--allowJs', '--checkJs', '--strict', '--skipLibCheck',
      '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
      '--typeRoots', join(repoRoot, 'node_modules', '@types'), '--types', 'node',
      types, join(repoRoot, 'examples', 'electron', 'auth.mjs'), join(repoRoot, 'examples', 'electron', 'main.mjs')], { cwd: repoRoot })
      .catch((error: { stdout: string; stderr: string }) => ({ failed: `${error.stdout}${error.stderr}` }));
    expect(result).not.toHaveProperty('failed');
  }, 120_000);

  it('runs in plain Node with the stand-in: waits for ready, signs in through the browser, token from the cache after a restart, sign-out', async () => {
    const userData = await tempDir();
    const { stdout } = await run(process.execPath, [join(repoRoot, 'test', 'fixtures', 'electron-harness.mjs'), userData], { cwd: repoRoot });
    expect(JSON.parse(stdout)).toEqual({
      storage: { kind: 'safe-storage', encrypted: true },
      username: 'electron-user@example.test',
      tokenFromCache: true,
      afterSignOut: null,
      changes: [{ added: ['electron-user@example.test'], removed: [] }, { added: [], removed: ['electron-user@example.test'] }],
    });
    const cache = join(userData, 'msal-cache.bin');
    expect((await stat(cache)).mode & 0o777).toBe(0o600);
    expect((await readFile(cache)).subarray(0, 3).toString()).toBe('v11'); // sealed by safeStorage, not JSON
  });
});
