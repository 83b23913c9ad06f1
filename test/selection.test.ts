// Which backend createPersistence picks, for every platform, decided on this machine by passing the
// platform in (the package reads process.platform in one place only).
import { execFile } from 'node:child_process';
import { mkdir, readFile, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createSafeStorageStandIn } from '../scripts/safe-storage-stand-in.mjs';
import { candidatesFor, encryptedCandidates, plaintextFallbackPath, selectPersistence } from '../src/create-persistence.js';
import { createLogger } from '../src/logger.js';
import { createPersistence, defaultCachePath, type PersistenceOptions } from '../src/index.js';
import { resolvePersistenceOptions } from '../src/options.js';
import { isLinux, recordingLogger, repoRoot, tempDir } from './helpers.js';

async function options(extra: Partial<PersistenceOptions> = {}): Promise<PersistenceOptions> {
  return { cachePath: join(await tempDir(), 'cache', 'msal-cache.json'), serviceName: `mkc-select-${Date.now()}`, loggerOptions: { loggerCallback: () => undefined }, ...extra };
}

describe('backend selection', () => {
  it('names one encrypted store per platform: DPAPI on win32, Keychain on darwin, libsecret on Linux and other POSIX', () => {
    expect(encryptedCandidates('win32')).toEqual(['dpapi-file']);
    expect(encryptedCandidates('darwin')).toEqual(['keychain']);
    expect(encryptedCandidates('linux')).toEqual(['libsecret']);
    expect(encryptedCandidates('freebsd')).toEqual(['libsecret']);
    expect(encryptedCandidates('openbsd')).toEqual(['libsecret']);
  });

  it('an explicit backend beats safeStorage, and safeStorage beats the platform default', () => {
    const { safeStorage } = createSafeStorageStandIn();
    const resolve = (extra: Partial<PersistenceOptions>) => resolvePersistenceOptions({ cachePath: '/tmp/x.json', ...extra });
    expect(candidatesFor(resolve({ platform: 'win32', safeStorage, backend: 'plaintext-file' }))).toEqual(['plaintext-file']);
    for (const platform of ['win32', 'darwin', 'linux'] as const) {
      expect(candidatesFor(resolve({ platform, safeStorage }))).toEqual(['safe-storage']);
    }
    expect(candidatesFor(resolve({ platform: 'win32' }))).toEqual(['dpapi-file']);
  });

  it('win32 on a machine without Windows: DPAPI is reported unusable with the reason; plaintext only with the flag', async () => {
    const base = await options({ platform: 'win32' });
    const resolved = resolvePersistenceOptions(base);
    const selection = await selectPersistence(resolved, createLogger(resolved.loggerOptions));
    expect(selection.persistence).toBeUndefined();
    expect(selection.error?.code).toBe('BACKEND_UNAVAILABLE');
    expect(selection.attempts.map((a) => [a.kind, a.usable, a.code])).toEqual([
      ['dpapi-file', false, 'BACKEND_UNAVAILABLE'], ['plaintext-file', false, 'PLAINTEXT_NOT_ALLOWED']]);
    if (process.platform !== 'win32') expect(selection.attempts[0]!.reason).toMatch(/DPAPI binding/);

    const log = recordingLogger();
    const fallback = await createPersistence({ ...base, allowPlaintextFallback: true, loggerOptions: log.loggerOptions });
    expect(fallback.kind).toBe('plaintext-file');
    expect(fallback.encrypted).toBe(false);
    // Its own file: cachePath belongs to the encrypted store (DPAPI's cache there on a Windows desktop).
    expect(fallback.cachePath).toBe(plaintextFallbackPath(base.cachePath));
    expect(log.lines.filter((l) => l.level === 1 && /UNENCRYPTED/.test(l.message))).toHaveLength(1);
  });

  it.runIf(isLinux)('with the flag, a store that exists but refuses (UNSAFE_PATH) is reported as such and not fallen back from', async () => {
    const base = await options({ allowPlaintextFallback: true });
    await mkdir(dirname(base.cachePath), { recursive: true, mode: 0o700 });
    await symlink('/dev/null', base.cachePath);
    const resolved = resolvePersistenceOptions(base);
    const selection = await selectPersistence(resolved, createLogger(resolved.loggerOptions));
    expect(selection.persistence).toBeUndefined();
    expect(selection.error?.code).toBe('UNSAFE_PATH');
    expect(selection.attempts.map((a) => [a.kind, a.usable, a.code])).toEqual([['libsecret', false, 'UNSAFE_PATH'], ['plaintext-file', false, 'UNSAFE_PATH']]);
    expect(selection.attempts[1]!.reason).toMatch(/only for a store that does not exist/);
  });

  it('backends for another OS refuse plainly when named on this one', async () => {
    if (process.platform !== 'win32') {
      await expect(createPersistence(await options({ backend: 'dpapi-file' }))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringMatching(/does not exist on/) });
    }
    if (process.platform !== 'darwin') {
      await expect(createPersistence(await options({ backend: 'keychain' }))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringMatching(/macOS Keychain/) });
    }
  });

  it.runIf(isLinux)('darwin picks the keychain backend through keytar (on this Linux machine keytar talks to the private Secret Service)', async () => {
    const persistence = await createPersistence(await options({ platform: 'darwin' }));
    expect(persistence.kind).toBe('keychain');
    expect(persistence.location).toMatch(/^macOS Keychain item/);
  });

  it.runIf(isLinux)('linux and freebsd pick libsecret', async () => {
    expect((await createPersistence(await options({ platform: 'linux' }))).kind).toBe('libsecret');
    expect((await createPersistence(await options({ platform: 'freebsd' }))).kind).toBe('libsecret');
  });

  it('safeStorage given: picked on every platform, and keytar is never loaded', async () => {
    const cachePath = join(await tempDir(), 'msal-cache.bin');
    const script = `
      const { createSafeStorageStandIn } = await import(${JSON.stringify(join(repoRoot, 'scripts', 'safe-storage-stand-in.mjs'))});
      const { createPersistence } = await import(${JSON.stringify(join(repoRoot, 'dist', 'esm', 'index.js'))});
      const kinds = [];
      for (const platform of ['linux', 'darwin', 'win32']) {
        const p = await createPersistence({ cachePath: ${JSON.stringify(cachePath)}, platform, safeStorage: createSafeStorageStandIn().safeStorage });
        kinds.push(p.kind + ':' + p.encrypted);
      }
      const keytar = process.report.getReport().sharedObjects.some((p) => p.endsWith('keytar.node'));
      console.log(JSON.stringify({ kinds, keytar }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(stdout)).toEqual({ kinds: ['safe-storage:true', 'safe-storage:true', 'safe-storage:true'], keytar: false });
  });

  it('rejects bad platform options with INVALID_OPTION before touching any store', async () => {
    const base = await options();
    await expect(createPersistence({ ...base, dataProtectionScope: 'Machine' as never })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await expect(createPersistence({ ...base, dataProtectionEntropy: 42 as never })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await expect(createPersistence({ ...base, safeStorage: {} as never })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await expect(createPersistence({ ...base, backend: 'safe-storage' })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await expect(createPersistence({ ...base, safeStorageWaitMs: -1 })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await expect(readFile(base.cachePath)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('defaultCachePath: %LOCALAPPDATA% on Windows, ~/Library/Caches on macOS, XDG cache elsewhere', () => {
    expect(defaultCachePath('my-cli', { platform: 'win32', env: { LOCALAPPDATA: 'C:\\Users\\ann\\AppData\\Local' } }))
      .toBe('C:\\Users\\ann\\AppData\\Local\\my-cli\\msal-cache.bin');
    expect(defaultCachePath('my-cli', { platform: 'win32', env: { USERPROFILE: 'C:\\Users\\ann' } }))
      .toBe('C:\\Users\\ann\\AppData\\Local\\my-cli\\msal-cache.bin');
    expect(defaultCachePath('my-cli', { platform: 'darwin', env: { HOME: '/Users/ann' } })).toBe('/Users/ann/Library/Caches/my-cli/msal-cache.json');
    expect(defaultCachePath('my-cli', { platform: 'linux', env: { HOME: '/home/ann' } })).toBe('/home/ann/.cache/my-cli/msal-cache.json');
    expect(defaultCachePath('my-cli', { platform: 'linux', env: { HOME: '/home/ann', XDG_CACHE_HOME: '/var/cache/ann' } })).toBe('/var/cache/ann/my-cli/msal-cache.json');
    expect(() => defaultCachePath('../evil', { platform: 'linux', env: { HOME: '/h' } })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(() => defaultCachePath('app', { platform: 'linux', env: {} })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });
});
