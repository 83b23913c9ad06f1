// A new user's mistakes get a typed error at creation, saying what is wrong and how to fix it, before anyone
// signs in (issue 12), and leave nothing behind.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCachePlugin, createPersistence, isKeychainCacheError } from '../src/index.js';
import { isLinux, repoRoot, tempDir } from './helpers.js';

const quiet = { loggerCallback: () => undefined };

async function failure(run: () => Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await run();
  } catch (error) {
    expect(isKeychainCacheError(error), String(error)).toBe(true);
    return error as { code: string; message: string };
  }
  throw new Error('expected a KeychainCacheError, got success');
}

describe('cachePath mistakes are INVALID_OPTION at creation, with the fix', () => {
  it.each([
    ['~/.myapp/msal-cache.json', /starts with '~'.*defaultCachePath/],
    ['~', /starts with '~'/],
    ['msal-cache.json', /is relative.*defaultCachePath/],
    ['./cache/msal-cache.json', /is relative/],
    ['../msal-cache.json', /is relative/],
  ])('%s', async (cachePath, message) => {
    for (const create of [createPersistence, createCachePlugin] as const) {
      const error = await failure(() => create({ cachePath, allowPlaintextFallback: true, loggerOptions: quiet }));
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toMatch(message);
    }
    // Nothing was created in the working directory.
    expect(existsSync('~')).toBe(false);
    expect(existsSync('cache')).toBe(false);
  });

  it.each([
    ['/tmp/mkc-newdir/', /names a directory.*msal-cache\.json/],
    ['/tmp/mkc-newdir/.', /names a directory/],
    ['/tmp/mkc-newdir/..', /names a directory/],
    ['/tmp/mkc-a\0b/cache.json', /NUL character/],
  ])('%j (not a file name, or not a path at all)', async (cachePath, message) => {
    for (const create of [createPersistence, createCachePlugin] as const) {
      for (const backend of ['plaintext-file', undefined] as const) {
        const error = await failure(() => create({ cachePath, backend, allowPlaintextFallback: true, loggerOptions: quiet }));
        expect(error.code).toBe('INVALID_OPTION');
        expect(error.message).toMatch(message);
      }
    }
    expect(existsSync('/tmp/mkc-newdir')).toBe(false);
  });

  it('a Windows path ending in a backslash names a directory there too', async () => {
    const error = await failure(() => createPersistence({ cachePath: 'C:\\Users\\me\\cache\\', platform: 'win32', loggerOptions: quiet }));
    expect(error).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringMatching(/names a directory/) });
  });

  it('a file named with a tilde inside an absolute path is fine (only a leading ~ is the shell\'s)', async () => {
    const { tempDir } = await import('./helpers.js');
    const directory = await tempDir();
    const persistence = await createPersistence({ cachePath: `${directory}/~backup/cache.json`, backend: 'plaintext-file', allowPlaintextFallback: true, loggerOptions: quiet });
    expect(persistence.cachePath).toBe(`${directory}/~backup/cache.json`);
  });
});

// The other mistakes need the file system: each runs on every backend that keeps something at cachePath (all of
// them: the keyrings keep their change marker there), as another user where rights matter (the tests run as root
// in CI, and root passes every permission check).
const nobody = 65534;
const standIn = "(await import(" + JSON.stringify(join(repoRoot, 'scripts/safe-storage-stand-in.mjs')) + ")).createSafeStorageStandIn().safeStorage";
const backendOptions: Record<string, string> = {
  'plaintext-file': "{ backend: 'plaintext-file', allowPlaintextFallback: true }",
  // No D-Bus here: the Secret Service is unavailable, so the cache falls back to <cachePath>.plaintext.
  'plaintext fallback': '{ allowPlaintextFallback: true, env: {} }',
  'safe-storage': `{ safeStorage: ${standIn} }`,
  // A Secret Service of the user's own, started by the script: the tests' private one belongs to root.
  libsecret: "{ backend: 'libsecret', env: (await (await import(" + JSON.stringify(join(repoRoot, 'scripts/private-keyring.mjs')) +
    ")).startPrivateKeyring({ provider: 'gnome-keyring' }).then((k) => (globalThis.keyring = k))).env }",
};

/** Creates a plugin for each cachePath as `uid`, in one child process; returns each outcome's code (or 'ok') and message. */
function createAs(uid: number, backend: string, cachePaths: string[], home: string): { code: string; message: string }[] {
  const script = `
    import { createCachePlugin } from ${JSON.stringify(join(repoRoot, 'dist/esm/index.js'))};
    const extra = ${backendOptions[backend]};
    const results = [];
    for (const cachePath of ${JSON.stringify(cachePaths)}) {
      try {
        await createCachePlugin({ cachePath, loggerOptions: { loggerCallback() {} }, ...extra });
        results.push({ code: 'ok', message: '' });
      } catch (error) { results.push({ code: error.code ?? String(error), message: error.message }); }
    }
    console.log(JSON.stringify(results));
    await globalThis.keyring?.stop();
    process.exit(0);`;
  const output = execFileSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', script],
    { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: home, MKC_SECRET_SERVICE: 'gnome-keyring' }, timeout: 60_000 });
  return JSON.parse(output.trim().split('\n').at(-1)!);
}

describe.runIf(isLinux)('cache directories that cannot be used fail at creation, typed, naming the culprit and the fix', () => {
  for (const backend of Object.keys(backendOptions)) {
    it(`${backend}: a directory as cachePath, a file in the path, an unwritable or untraversable directory`, async () => {
      const base = await tempDir();
      await chmod(base, 0o755);
      const home = join(base, 'home');
      await mkdir(join(home, '.cache'), { recursive: true, mode: 0o700 });
      await mkdir(join(base, 'a-directory'), { mode: 0o700 });
      await writeFile(join(base, 'a-file'), '');
      await mkdir(join(base, 'read-only'), { mode: 0o500 });
      await mkdir(join(base, 'closed', 'inner'), { recursive: true, mode: 0o700 });
      await chmod(join(base, 'closed'), 0o600);
      execFileSync('chown', ['-R', `${nobody}:${nobody}`, base]);
      const [directory, file, readOnly, closed] = createAs(nobody, backend, [
        join(base, 'a-directory'),
        join(base, 'a-file', 'msal-cache.json'),
        join(base, 'read-only', 'msal-cache.json'),
        join(base, 'closed', 'inner', 'msal-cache.json'),
      ], home);
      expect(directory).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringMatching(/a-directory is a directory; cachePath names the cache file.*join\(/) });
      expect(file).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringMatching(/a-file is a file, not a directory/) });
      expect(readOnly).toMatchObject({ code: 'ACCESS_DENIED', message: expect.stringMatching(/read-only \(mode 0500, owner user id 65534\).*could never be saved.*chmod u\+rwx/) });
      expect(closed).toMatchObject({ code: 'ACCESS_DENIED', message: expect.stringMatching(/closed \(mode 0600.*enter it.*chmod u\+x/) });
      // Nothing was made where creation failed.
      expect(await readdir(join(base, 'a-directory'))).toEqual([]);
      expect(await readdir(join(base, 'read-only'))).toEqual([]);
    }, 120_000);
  }

  for (const backend of ['plaintext-file', 'libsecret'] as const) {
    it(`${backend}: a cache already stored (the load is the check) in a directory that became read-only still fails at creation`, async () => {
      const base = await tempDir();
      await chmod(base, 0o755);
      const home = join(base, 'home');
      await mkdir(join(home, '.cache'), { recursive: true, mode: 0o700 });
      const cacheDirectory = join(base, 'cache');
      await mkdir(cacheDirectory, { mode: 0o700 });
      execFileSync('chown', ['-R', `${nobody}:${nobody}`, base]);
      const cachePath = join(cacheDirectory, 'msal-cache.json');
      // A first run stores a cache, then the directory loses its write right (a restored backup, a chmod).
      const script = `
        import { createCachePlugin } from ${JSON.stringify(join(repoRoot, 'dist/esm/index.js'))};
        import { chmodSync } from 'node:fs';
        const extra = ${backendOptions[backend]};
        const create = () => createCachePlugin({ cachePath: ${JSON.stringify(cachePath)}, loggerOptions: { loggerCallback() {} }, ...extra });
        const first = await create();
        await first.persistence.save('{"Account":{}}');
        chmodSync(${JSON.stringify(cacheDirectory)}, 0o500);
        try { await create(); console.log(JSON.stringify({ code: 'ok' })); }
        catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })); }
        await globalThis.keyring?.stop();
    process.exit(0);`;
      const output = execFileSync('setpriv', [`--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', process.execPath, '--input-type=module', '-e', script],
        { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: home, MKC_SECRET_SERVICE: 'gnome-keyring' }, timeout: 60_000 });
      expect(JSON.parse(output.trim().split('\n').at(-1)!)).toMatchObject({ code: 'ACCESS_DENIED', message: expect.stringMatching(/could never be saved/) });
    }, 120_000);
  }

  it('a creation that fails after making the cache directory removes what it made, and only that', async () => {
    const base = await tempDir();
    // Electron's async safeStorage whose key is gone: available, the directory is made, then the check's encryption fails.
    const { createSafeStorageStandIn } = await import('../scripts/safe-storage-stand-in.mjs');
    const standInStorage = createSafeStorageStandIn({ api: 'async' });
    standInStorage.loseKey();
    const error = await failure(() => createCachePlugin({ cachePath: join(base, 'new', 'deeper', 'msal-cache.json'), safeStorage: standInStorage.safeStorage, loggerOptions: quiet }));
    expect(error.code).toBe('STORE_FAILED');
    expect(await readdir(base)).toEqual([]);
    // A directory that was there before, with someone else's file in it, stays.
    await mkdir(join(base, 'kept'));
    await writeFile(join(base, 'kept', 'other-file'), 'x');
    await failure(() => createCachePlugin({ cachePath: join(base, 'kept', 'new', 'msal-cache.json'), safeStorage: standInStorage.safeStorage, loggerOptions: quiet }));
    expect(await readdir(join(base, 'kept'))).toEqual(['other-file']);
  });
});

describe('the plaintext warning says where the tokens are, what that means, why, and what to do, in that order', () => {
  it.each([
    ['chosen', { backend: 'plaintext-file' as const }, '', /^Why: backend: 'plaintext-file' was chosen\. To keep them encrypted, leave backend unset/],
    ['fallback', { env: {} }, '.plaintext', /^Why: no secret store answered as usable in this run, and allowPlaintextFallback: true permits this file then\. The store's answer: .*D-Bus.* stays the encrypted store's/],
  ])('%s', async (_name, extra, suffix, rest) => {
    const cachePath = join(await tempDir(), 'msal-cache.json');
    const warnings: string[] = [];
    await createCachePlugin({ cachePath, allowPlaintextFallback: true, ...extra, loggerOptions: { loggerCallback: (level, message) => { if (level === 1) warnings.push(message); } } });
    expect(warnings).toHaveLength(1);
    const lead = `[msal-keychain-cache] Tokens are stored UNENCRYPTED in ${cachePath}${suffix}: anyone who can read that file can use them. `;
    expect(warnings[0]!.startsWith(lead), warnings[0]).toBe(true);
    expect(warnings[0]!.slice(lead.length)).toMatch(rest);
    // Never the advice to pass the flag that was passed.
    expect(warnings[0]).not.toMatch(/pass allowPlaintextFallback/);
  });
});

describe.runIf(isLinux && process.geteuid?.() === 0)('the fix offered matches what refuses', () => {
  it('an immutable directory (its mode already 0700) gets the kernel\'s answer and where to look, not a chmod that cannot help', async () => {
    const directory = join(await tempDir(), 'immutable');
    await mkdir(directory, { mode: 0o700 });
    execFileSync('chattr', ['+i', directory]);
    try {
      const error = await failure(() => createCachePlugin({ cachePath: join(directory, 'msal-cache.json'), backend: 'plaintext-file',
        allowPlaintextFallback: true, loggerOptions: quiet }));
      expect(error.code).toBe('ACCESS_DENIED');
      expect(error.message).toMatch(/\(EPERM\).*Its mode allows it.*lsattr/);
      expect(error.message).not.toMatch(/chmod/);
    } finally {
      execFileSync('chattr', ['-i', directory]);
    }
  });

  it('a directory made by someone else, even empty, stays when a creation below it fails', async () => {
    const base = await tempDir();
    await mkdir(join(base, 'theirs'));
    const { createSafeStorageStandIn } = await import('../scripts/safe-storage-stand-in.mjs');
    const standInStorage = createSafeStorageStandIn({ api: 'async' });
    standInStorage.loseKey();
    await failure(() => createCachePlugin({ cachePath: join(base, 'theirs', 'a', 'b', 'msal-cache.json'), safeStorage: standInStorage.safeStorage, loggerOptions: quiet }));
    expect(await readdir(base)).toEqual(['theirs']);
    expect(await readdir(join(base, 'theirs'))).toEqual([]);
  });
});

describe.runIf(isLinux)('the self-test reports a broken TMPDIR with the codes a cachePath there gets', () => {
  const withTmpdir = async <T>(value: string, run: () => Promise<T>): Promise<T> => {
    const previous = process.env.TMPDIR;
    process.env.TMPDIR = value;
    try {
      return await run();
    } finally {
      if (previous === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = previous;
    }
  };

  it('under a file: INVALID_OPTION; on a read-only file system: STORE_FAILED; each with the TMPDIR hint', async () => {
    const { runSelfTest } = await import('../src/self-test.js');
    const base = await tempDir();
    await writeFile(join(base, 'a-file'), '');
    const underFile = await withTmpdir(join(base, 'a-file', 'tmp'), () => runSelfTest({ allowPlaintext: true, env: {} }));
    expect(underFile.error).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringMatching(/a-file is a file, not a directory.*TMPDIR=/) });
    if (process.geteuid?.() !== 0) return;
    const mount = join(base, 'ro');
    await mkdir(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mount]);
    try {
      const readOnly = await withTmpdir(mount, () => runSelfTest({ allowPlaintext: true, env: {} }));
      expect(readOnly.error).toMatchObject({ code: 'STORE_FAILED', message: expect.stringMatching(/read-only file system.*TMPDIR=/) });
    } finally {
      execFileSync('umount', [mount]);
    }
  });
});

describe('the fallback warning holds for Electron\'s safeStorage created before ready', () => {
  it('it names app.whenReady() as the way to reach the encrypted store, and says nothing that contradicts that', async () => {
    const { createSafeStorageStandIn } = await import('../scripts/safe-storage-stand-in.mjs');
    const warnings: string[] = [];
    await createCachePlugin({ cachePath: join(await tempDir(), 'app', 'msal-cache.json'), allowPlaintextFallback: true, safeStorageWaitMs: 50,
      safeStorage: createSafeStorageStandIn({ ready: false }).safeStorage,
      loggerOptions: { loggerCallback: (level, message) => { if (level === 1) warnings.push(message); } } });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/no secret store answered as usable in this run/);
    expect(warnings[0]).toMatch(/an Electron app that creates the plugin after app\.whenReady\(\)\) uses the cache kept there/);
    expect(warnings[0]).not.toMatch(/works here/);
  });
});

describe('other options are checked at creation, before anything is read or written', () => {
  const cachePath = '/tmp/mkc-never-created/msal-cache.json';
  const base = { cachePath, backend: 'plaintext-file', allowPlaintextFallback: true } as const;

  it.each([
    [{ loggerCallback: 'x' }, /loggerCallback must be a function/],
    [{ loggerCallback: 5 }, /loggerCallback must be a function/],
    [{ loggerCallback: quiet.loggerCallback, logLevel: 'loud' }, /logLevel must be one of msal-node's LogLevel/],
    [{ loggerCallback: quiet.loggerCallback, logLevel: 7 }, /logLevel/],
    [{ loggerCallback: quiet.loggerCallback, piiLogingEnabled: true }, /Unknown loggerOptions option 'piiLogingEnabled'.*piiLoggingEnabled/],
    [{ loggerCallback: quiet.loggerCallback, piiLoggingEnabled: 'yes' }, /piiLoggingEnabled must be true or false/],
    [[], /loggerOptions must be msal-node LoggerOptions/],
  ])('loggerOptions %o', async (loggerOptions, message) => {
    for (const create of [createPersistence, createCachePlugin] as const) {
      const error = await failure(() => create({ ...base, loggerOptions: loggerOptions as never }));
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toMatch(message);
    }
    expect(existsSync('/tmp/mkc-never-created')).toBe(false);
  });

  it.each(['safeStorageWaitMs', 'promptTimeoutMs', 'lockOptions.timeoutMs', 'lockOptions.staleAfterMs'])(
    '%s takes whole milliseconds only', async (name) => {
      for (const value of [0.5, 1e-9, 1500.25, 0, -1, Number.NaN, Number.POSITIVE_INFINITY, '100', 2 ** 31]) {
        const [outer, inner] = name.split('.');
        const options = inner ? { ...base, loggerOptions: quiet, [outer!]: { [inner]: value } } : { ...base, loggerOptions: quiet, [outer!]: value };
        const error = await failure(() => createCachePlugin(options as never));
        expect(error.code, `${name}: ${String(value)}`).toBe('INVALID_OPTION');
        expect(error.message).toContain(name);
      }
    });

  it('a persistence that is not one is refused when the plugin is made, not at the first sign-in', async () => {
    for (const persistence of [{}, 'x', 5, null, { load: () => null, save: () => undefined }]) {
      const error = await failure(() => createCachePlugin({ persistence } as never));
      expect(error.code, JSON.stringify(persistence)).toBe('INVALID_OPTION');
      expect(error.message).toMatch(/^createCachePlugin\(\{ persistence \}\) needs a persistence from createPersistence\(.*; got (an object without|a string|a number|null)/);
    }
    // A real one is accepted, and the options that come with it are checked too.
    const directory = await tempDir();
    const persistence = await createPersistence({ cachePath: join(directory, 'c.json'), backend: 'plaintext-file', allowPlaintextFallback: true, loggerOptions: quiet });
    await createCachePlugin({ persistence });
    expect((await failure(() => createCachePlugin({ persistence, lockOptions: { timeoutMs: -1 } }))).code).toBe('INVALID_OPTION');
    expect((await failure(() => createCachePlugin({ persistence, lockOptions: { timeotMs: 5 } as never }))).message).toMatch(/Unknown lockOptions option/);
    expect((await failure(() => createCachePlugin({ persistence, loggerOptions: { loggerCallback: 1 } as never }))).message).toMatch(/loggerCallback/);
  });

  it('safeStorage with another backend: that backend wins, and a warning says safeStorage is not used', async () => {
    const safeStorage = { isEncryptionAvailable: () => true, encryptString: (t: string) => Buffer.from(t), decryptString: (b: Buffer) => b.toString() };
    const lines: string[] = [];
    const directory = await tempDir();
    const plugin = await createCachePlugin({ ...base, cachePath: join(directory, 'c.json'), safeStorage,
      loggerOptions: { loggerCallback: (_level, message) => { lines.push(message); } } });
    expect(plugin.persistence.kind).toBe('plaintext-file');
    expect(lines.some((line) => /safeStorage is not used: backend 'plaintext-file' was asked for/.test(line)), lines.join('\n')).toBe(true);
  });

  it('the self-test command refuses a prompt timeout under a millisecond', () => {
    for (const value of ['1e-9', '0.0001', '0', '-1', 'soon']) {
      let status = 0;
      let stderr = '';
      try {
        execFileSync(process.execPath, [join(repoRoot, 'dist', 'esm', 'bin.js'), 'self-test', '--prompt-timeout', value], { stdio: 'pipe' });
      } catch (error) {
        ({ status } = error as { status: number });
        stderr = String((error as { stderr: Buffer }).stderr);
      }
      expect(status, value).toBe(2);
      expect(stderr).toContain('--prompt-timeout needs a number of seconds from 0.001');
    }
  });
});
