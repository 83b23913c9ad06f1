import { execFile } from 'node:child_process';
import { cp, mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { startPrivateKeyring } from '../scripts/private-keyring.mjs';
import type { SelfTestReport } from '../src/self-test.js';
import { isLinux, repoRoot, tempDir } from './helpers.js';

const bin = join(repoRoot, 'dist', 'esm', 'bin.js');

interface Run { code: number; stdout: string; stderr: string }

async function selfTest(args: string[], env: NodeJS.ProcessEnv, binary = bin): Promise<Run> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [binary, ...args], { env, encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

async function noBusEnv(): Promise<NodeJS.ProcessEnv> {
  const { DBUS_SESSION_BUS_ADDRESS: _bus, ...rest } = process.env;
  // An empty runtime dir, so libsecret cannot find a bus socket there either.
  return { ...rest, XDG_RUNTIME_DIR: await tempDir(), HOME: await tempDir() };
}

const report = (run: Run) => JSON.parse(run.stdout) as SelfTestReport;

describe.runIf(isLinux)('self-test on Linux, spawned as users run it', () => {
  it('passes with a private Secret Service: libsecret chosen, every step ok, one line per step with its time', async () => {
    const run = await selfTest(['self-test'], process.env);
    expect(run.code).toBe(0);
    for (const line of ['backend    ok   libsecret', 'step       ok   store round trip', 'step       ok   lock round trip',
      'step       ok   msal round trip', 'backend    skip safe-storage', 'result     OK']) {
      expect(run.stdout).toContain(line);
    }
    expect(run.stdout).toMatch(/store round trip +\d+\.\d ms/);
    expect(run.stdout).not.toContain('\u001b['); // no colour when not a TTY
    const json = report(await selfTest(['self-test', '--json'], process.env));
    expect(json).toMatchObject({ ok: true, platform: 'linux', chosen: { kind: 'libsecret', encrypted: true } });
    // Which program answered, and that the secret crossed the bus encrypted.
    const daemon = process.env.MKC_SECRET_SERVICE === 'keepassxc' ? 'keepassxc' : 'gnome-keyring-daemon';
    expect(json.chosen!.store).toMatch(new RegExp(`^Secret Service ${daemon} \\(pid \\d+\\), dh-ietf1024-sha256-aes128-cbc-pkcs7 session$`));
    expect(json.steps.map((s) => [s.name, s.status])).toEqual([
      ['store round trip', 'ok'], ['lock round trip', 'ok'], ['msal round trip', 'ok']]);
  });

  it('fails with exit 1 and names D-Bus and the fix when there is no session bus', async () => {
    const env = await noBusEnv();
    const run = await selfTest(['self-test'], env);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('DBUS_SESSION_BUS_ADDRESS is not set');
    expect(run.stdout).toContain('dbus-run-session');
    expect(run.stdout).toContain('--allow-plaintext');
    const json = report(await selfTest(['self-test', '--json'], env));
    expect(json).toMatchObject({ ok: false, chosen: null, error: { code: 'BACKEND_UNAVAILABLE' } });
    expect(json.candidates.map((c) => [c.kind, c.usable])).toEqual([['libsecret', false], ['plaintext-file', false], ['safe-storage', false]]);
  });

  it('fails with exit 1 and names the missing Secret Service when the bus has none', async () => {
    const keyring = await startPrivateKeyring({ withSecretService: false });
    try {
      const run = await selfTest(['self-test', '--json'], { ...process.env, ...keyring.env });
      expect(run.code).toBe(1);
      expect(report(run).error?.message).toMatch(/no Secret Service .*gnome-keyring/);
    } finally {
      await keyring.stop();
    }
  });

  it('fails with KEYRING_LOCKED when the collection is locked', async () => {
    const keyring = await startPrivateKeyring();
    try {
      await keyring.lockCollection();
      // KeePassXC shows its unlock dialog (offscreen: nobody answers); gnome-keyring has no prompter here at all.
      const run = await selfTest(['self-test', '--json', '--prompt-timeout', '2'], { ...process.env, ...keyring.env });
      expect(run.code).toBe(1);
      expect(report(run).error?.code).toBe('KEYRING_LOCKED');
      expect(report(run).error?.message).toContain('Unlock it');
    } finally {
      await keyring.stop();
    }
  });

  it('with --allow-plaintext and no bus, passes on the plaintext file and says it is not encrypted', async () => {
    const env = await noBusEnv();
    const run = await selfTest(['self-test', '--allow-plaintext'], env);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('chosen     plaintext-file (NOT encrypted');
    const json = report(await selfTest(['self-test', '--allow-plaintext', '--json'], env));
    expect(json).toMatchObject({ ok: true, chosen: { kind: 'plaintext-file', encrypted: false } });
    expect(json.candidates.map((c) => [c.kind, c.usable])).toEqual([['libsecret', false], ['plaintext-file', true], ['safe-storage', false]]);
  });

  it('works without keytar: a consumer install without the optional native module passes with the Secret Service, and imports', async () => {
    // A consumer install without the optional keytar (`npm install --ignore-scripts`, no compiler): the package
    // copied, msal-node next to it. On Linux nothing native is needed (issue 13).
    const consumer = await tempDir();
    const packageDir = join(consumer, 'node_modules', 'msal-keychain-cache');
    await mkdir(packageDir, { recursive: true });
    await cp(join(repoRoot, 'dist'), join(packageDir, 'dist'), { recursive: true });
    await cp(join(repoRoot, 'package.json'), join(packageDir, 'package.json'));
    await symlink(join(repoRoot, 'node_modules', '@azure'), join(consumer, 'node_modules', '@azure'));
    const run = await selfTest(['self-test', '--json'], process.env, join(packageDir, 'dist', 'esm', 'bin.js'));
    expect(run.code).toBe(0);
    expect(report(run)).toMatchObject({ ok: true, chosen: { kind: 'libsecret' } });
    expect(report(run).candidates[0]!).toMatchObject({ kind: 'libsecret', usable: true });
    await expect(promisify(execFile)(process.execPath, ['-e', "require.resolve('keytar')"], { cwd: consumer })).rejects.toThrow();
    const script = `const m = require('msal-keychain-cache'); console.log(typeof m.createCachePlugin);`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { cwd: consumer, encoding: 'utf8' });
    expect(stdout.trim()).toBe('function');
  });

  it('loads no native code at import, for a plaintext cache, or for the Secret Service, even where keytar is installed', async () => {
    const loaded = "process.report.getReport().sharedObjects.some((p) => p.endsWith('.node') || /libsecret/.test(p))";
    const directory = await tempDir();
    const script = (backend: string) => `
      const { createPersistence } = require(${JSON.stringify(join(repoRoot, 'dist', 'cjs', 'index.js'))});
      const atImport = ${loaded};
      createPersistence({ cachePath: ${JSON.stringify(join(directory, 'cache.json'))}, backend: '${backend}',
        allowPlaintextFallback: true, loggerOptions: { loggerCallback() {} } })
        .then(() => console.log(atImport, ${loaded}));`;
    const run = async (backend: string) =>
      (await promisify(execFile)(process.execPath, ['-e', script(backend)], { encoding: 'utf8' })).stdout.trim();
    expect(await run('plaintext-file')).toBe('false false');
    // A real round trip with the private Secret Service (verify is on), still no native module.
    expect(await run('libsecret')).toBe('false false');
  });
});

describe('self-test arguments', () => {
  it.each([[['self-test', '--bogus']], [['frobnicate']], [[]]])('exits 2 on bad arguments %j', async (args) => {
    const run = await selfTest(args, process.env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('Usage: msal-keychain-cache self-test');
  });

  it('colours its output on a terminal only, and not when NO_COLOR is set (to anything but "")', async () => {
    // `script` gives the command a pseudo-terminal, as an interactive shell would.
    const onTerminal = async (extra: NodeJS.ProcessEnv) => (await promisify(execFile)('script',
      ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} self-test`, '/dev/null'],
      { env: { ...process.env, TERM: 'xterm', NO_COLOR: undefined, ...extra }, encoding: 'utf8' })).stdout;
    expect(await onTerminal({})).toContain('\u001b[32mok  \u001b[0m');
    expect(await onTerminal({ NO_COLOR: '1' })).not.toContain('\u001b[');
    expect(await onTerminal({ NO_COLOR: '' })).toContain('\u001b[');
    expect((await selfTest(['self-test'], process.env)).stdout).not.toContain('\u001b['); // piped
  });

  it('an unwritable temporary directory: exit 1, ACCESS_DENIED, and says to point TMPDIR somewhere writable', async () => {
    const locked = join(await tempDir(), 'read-only');
    await mkdir(locked, { mode: 0o555 });
    const asRoot = process.getuid?.() === 0;
    const args = [bin, 'self-test', '--json'];
    // root writes anywhere, so as root the self-test runs as "nobody" to meet the permission check.
    const run = await promisify(execFile)(process.execPath, args, {
      env: { ...process.env, TMPDIR: locked }, encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
    }).then((r) => ({ code: 0, stdout: r.stdout }), (error: { code: number; stdout: string }) => ({ code: error.code, stdout: error.stdout }));
    expect(run.code).toBe(1);
    const json = JSON.parse(run.stdout) as SelfTestReport;
    expect(json).toMatchObject({ ok: false, error: { code: 'ACCESS_DENIED', message: expect.stringContaining('TMPDIR') } });
    expect(json.error!.message).toContain(locked);
  });

  it('--json has exactly the documented fields', async () => {
    const json = report(await selfTest(['self-test', '--json'], process.env));
    expect(Object.keys(json).sort()).toEqual(['arch', 'candidates', 'chosen', 'node', 'ok', 'platform', 'steps', 'totalMs']);
    expect(Object.keys(json.candidates[0]!).sort()).toEqual(['kind', 'ms', 'usable']);
    expect(Object.keys(json.steps[0]!).sort()).toEqual(['detail', 'ms', 'name', 'status']);
    const failed = report(await selfTest(['self-test', '--json'], await noBusEnv()));
    expect(Object.keys(failed).sort()).toEqual(['arch', 'candidates', 'chosen', 'error', 'node', 'ok', 'platform', 'steps', 'totalMs']);
    expect(Object.keys(failed.candidates[0]!).sort()).toEqual(['code', 'kind', 'ms', 'reason', 'usable']);
  });

  it('prints help and the version', async () => {
    expect((await selfTest(['--help'], process.env)).stdout).toContain('--allow-plaintext');
    expect((await selfTest(['--version'], process.env)).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
