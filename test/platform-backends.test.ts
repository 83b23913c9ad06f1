// Backend-specific behaviour beyond the shared contract: Electron safeStorage (through the stand-in),
// and the macOS Keychain's error mapping (keytar passes on the Security framework's messages).
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PublicClientApplication } from '@azure/msal-node';
import { describe, expect, it } from 'vitest';
import { createSafeStorageStandIn } from '../scripts/safe-storage-stand-in.mjs';
import { createCachePlugin, createPersistence, type SafeStorageLike } from '../src/index.js';
import { dpapiErrorCode, explainDpapiFailure } from '../src/persistence/dpapi-file.js';
import { explainKeychainError } from '../src/persistence/keychain.js';
import { createTokenEndpoint, testAuthority } from '../src/token-endpoint.js';
import { clientId, recordingLogger, tempDir } from './helpers.js';

const quiet = { loggerCallback: () => undefined };

async function cachePath(): Promise<string> {
  return join(await tempDir(), 'cache', 'msal-cache.bin');
}

describe('safe-storage backend (Electron safeStorage stand-in)', () => {
  it('before the app is ready it waits, and works once ready arrives', async () => {
    const standIn = createSafeStorageStandIn({ ready: false });
    setTimeout(() => standIn.emitReady(), 150);
    const started = Date.now();
    const persistence = await createPersistence({ cachePath: await cachePath(), safeStorage: standIn.safeStorage, platform: 'linux', loggerOptions: quiet });
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    expect([persistence.kind, persistence.encrypted]).toEqual(['safe-storage', true]);
  });

  it('never ready within safeStorageWaitMs: BACKEND_UNAVAILABLE saying to wait for app.whenReady(), nothing written', async () => {
    const path = await cachePath();
    const { safeStorage } = createSafeStorageStandIn({ ready: false, api: 'sync' });
    await expect(createPersistence({ cachePath: path, safeStorage, safeStorageWaitMs: 200, loggerOptions: quiet }))
      .rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining('app.whenReady()') });
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it("Linux 'basic_text' (Chromium's hard-coded key) is plaintext: refused without the flag", async () => {
    const path = await cachePath();
    const { safeStorage } = createSafeStorageStandIn({ backend: 'basic_text' });
    await expect(createPersistence({ cachePath: path, safeStorage, platform: 'linux', loggerOptions: quiet }))
      .rejects.toMatchObject({ code: 'PLAINTEXT_NOT_ALLOWED', message: expect.stringContaining('basic_text') });
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it("Linux 'basic_text' with allowPlaintextFallback: used, reported as not encrypted, warned about every time", async () => {
    const path = await cachePath();
    const { safeStorage } = createSafeStorageStandIn({ backend: 'basic_text' });
    const log = recordingLogger();
    const persistence = await createPersistence({ cachePath: path, safeStorage, platform: 'linux', allowPlaintextFallback: true, loggerOptions: log.loggerOptions });
    expect([persistence.kind, persistence.encrypted]).toEqual(['safe-storage', false]);
    await createPersistence({ cachePath: path, safeStorage, platform: 'linux', allowPlaintextFallback: true, loggerOptions: log.loggerOptions });
    expect(log.lines.filter((l) => l.level === 1 && /UNENCRYPTED.*basic_text/.test(l.message))).toHaveLength(2);
    await persistence.save('{"Account":{}}');
    expect((await readFile(path)).subarray(0, 3).toString()).toBe('v10');
  });

  it('getSelectedStorageBackend is a Linux matter: on win32 and darwin it is not consulted', async () => {
    const { safeStorage } = createSafeStorageStandIn({ backend: 'basic_text' });
    for (const platform of ['win32', 'darwin'] as const) {
      const persistence = await createPersistence({ cachePath: await cachePath(), safeStorage, platform, loggerOptions: quiet });
      expect(persistence.encrypted).toBe(true);
    }
  });

  it('uses the async API when it is there (Electron 39+, the sync one is deprecated) and the sync one otherwise', async () => {
    const calls: string[] = [];
    const { safeStorage } = createSafeStorageStandIn({ api: 'both' });
    const spied = Object.fromEntries(Object.entries(safeStorage).map(([name, fn]) =>
      [name, (...args: unknown[]) => { calls.push(name); return (fn as (...a: unknown[]) => unknown)(...args); }])) as SafeStorageLike;
    const persistence = await createPersistence({ cachePath: await cachePath(), safeStorage: spied, platform: 'win32', loggerOptions: quiet });
    await persistence.save('{}');
    expect(await persistence.load()).toBe('{}');
    expect(new Set(calls)).toEqual(new Set(['isAsyncEncryptionAvailable', 'encryptStringAsync', 'decryptStringAsync']));
  });

  it("another app's or user's key: DECRYPT_FAILED, moved aside by the plugin, never handed to MSAL", async () => {
    const path = await cachePath();
    const mine = createSafeStorageStandIn({ platform: 'win32', keyringPassword: 'mine' }).safeStorage;
    const theirs = createSafeStorageStandIn({ platform: 'win32', keyringPassword: 'theirs' }).safeStorage;
    await (await createPersistence({ cachePath: path, safeStorage: theirs, platform: 'win32', loggerOptions: quiet })).save('{"Account":{}}');
    const persistence = await createPersistence({ cachePath: path, safeStorage: mine, platform: 'win32', loggerOptions: quiet });
    await expect(persistence.load()).rejects.toMatchObject({ code: 'DECRYPT_FAILED' });

    const log = recordingLogger();
    const plugin = await createCachePlugin({ cachePath: path, safeStorage: mine, platform: 'win32', loggerOptions: log.loggerOptions });
    const client = new PublicClientApplication({ auth: { clientId, authority: testAuthority }, cache: { cachePlugin: plugin },
      system: { networkClient: createTokenEndpoint().networkClient } });
    expect(await client.getTokenCache().getAllAccounts()).toEqual([]);
    expect(log.lines.filter((l) => l.level === 1 && /DECRYPT_FAILED.*moved aside/.test(l.message))).toHaveLength(1);
    expect((await readdir(dirname(path))).filter((n) => n.includes('.corrupt-'))).toHaveLength(1);
  });
});

describe('safe-storage: an unreachable key is not damaged data (nothing moved, users stay signed in)', () => {
  // Through the real plugin and msal-node client: users signed in, then the OS store holding safeStorage's key
  // goes away after start (the stand-in's loseKey: Electron reports encryption unavailable, or for the async
  // API "temporarily unavailable"). The cache must survive byte-for-byte and come back with the key.
  it.each(['sync', 'async'] as const)('%s API: reads and writes throw BACKEND_UNAVAILABLE, the file is untouched, nothing is moved aside; with the key back every account is there', async (api) => {
    const path = await cachePath();
    const keyringPassword = `kp-${api}`;
    const endpoint = createTokenEndpoint();
    const client = (plugin: Awaited<ReturnType<typeof createCachePlugin>>) => new PublicClientApplication({
      auth: { clientId, authority: testAuthority }, cache: { cachePlugin: plugin }, system: { networkClient: endpoint.networkClient } });
    const first = client(await createCachePlugin({ cachePath: path, safeStorage: createSafeStorageStandIn({ api, keyringPassword }).safeStorage, loggerOptions: quiet }));
    for (const user of ['ann', 'ben']) await first.acquireTokenByCode({ code: user, scopes: ['User.Read'], redirectUri: 'http://localhost' });
    const bytes = await readFile(path);

    const standIn = createSafeStorageStandIn({ api, keyringPassword });
    const log = recordingLogger();
    const app = client(await createCachePlugin({ cachePath: path, safeStorage: standIn.safeStorage, loggerOptions: log.loggerOptions }));
    standIn.loseKey();
    // The first read is served from what creation loaded and decrypted (verify-by-load, issue 13), the file being
    // unchanged since; the write needs the key and throws.
    expect(await app.getTokenCache().getAllAccounts()).toHaveLength(2);
    await expect(app.acquireTokenByCode({ code: 'cat', scopes: ['User.Read'], redirectUri: 'http://localhost' }))
      .rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    // A process started while the key is away throws (at creation, or at its first read), never an empty cache.
    await expect(createCachePlugin({ cachePath: path, safeStorage: standIn.safeStorage, safeStorageWaitMs: 200, loggerOptions: quiet, verify: false })
      .then((plugin) => client(plugin).getTokenCache().getAllAccounts())).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(await readFile(path)).toEqual(bytes);
    expect(await readdir(dirname(path))).toEqual(['msal-cache.bin']);
    expect(log.lines.filter((l) => /DECRYPT_FAILED|moved aside/.test(l.message))).toEqual([]);

    standIn.restoreKey();
    expect((await app.getTokenCache().getAllAccounts()).map((a) => a.username).sort()).toEqual(['ann@example.test', 'ben@example.test']);
  });

  it('damaged bytes while the key is there stay DECRYPT_FAILED (a flipped byte of an AES-GCM blob; bytes with no v10/v11 prefix)', async () => {
    const path = await cachePath();
    const { safeStorage } = createSafeStorageStandIn({ platform: 'win32' });
    const persistence = await createPersistence({ cachePath: path, safeStorage, platform: 'win32', loggerOptions: quiet });
    await persistence.save('{"Account":{}}');
    const sealed = await readFile(path);
    sealed[sealed.length - 1] = sealed[sealed.length - 1]! ^ 0x01;
    await writeFile(path, sealed);
    await expect(persistence.load()).rejects.toMatchObject({ code: 'DECRYPT_FAILED' });
    await writeFile(path, 'not sealed at all');
    await expect(persistence.load()).rejects.toMatchObject({ code: 'DECRYPT_FAILED' });
  });

  it('a key lost before the plugin is created: selection fails BACKEND_UNAVAILABLE', async () => {
    const path = await cachePath();
    const standIn = createSafeStorageStandIn({ api: 'sync' });
    standIn.loseKey();
    await expect(createPersistence({ cachePath: path, safeStorage: standIn.safeStorage, safeStorageWaitMs: 50, loggerOptions: quiet }))
      .rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
  });
});

describe('dpapi-file: each Win32 error of CryptUnprotectData is data or environment, explicitly', () => {
  // @primno/dpapi throws Error("Encryption/Decryption failed. Error code: <GetLastError()>"): the text of
  // its dpapi_win.cpp. Data errors are quarantined by the plugin; every other answer moves nothing.
  const failure = (code: number) => new Error(`Encryption/Decryption failed. Error code: ${code}`);
  const cases: [string, number, string][] = [
    ['ERROR_INVALID_DATA (wrong entropy, tampered, truncated: what Wine answers too)', 13, 'data'],
    ['ERROR_INVALID_PARAMETER (a malformed blob)', 87, 'data'],
    ['NTE_BAD_DATA', 0x80090005, 'data'],
    ['NTE_BAD_LEN', 0x80090004, 'data'],
    ['NTE_BAD_SIGNATURE', 0x80090006, 'data'],
    ['NTE_BAD_KEY_STATE (master key unusable: profile loaded without the password)', 0x8009000b, 'KEYRING_LOCKED'],
    ['NTE_NO_KEY', 0x8009000d, 'KEYRING_LOCKED'],
    ['NTE_BAD_KEYSET', 0x80090016, 'KEYRING_LOCKED'],
    ['ERROR_FILE_NOT_FOUND (master key file not there: profile not loaded)', 2, 'KEYRING_LOCKED'],
    ['ERROR_PATH_NOT_FOUND', 3, 'KEYRING_LOCKED'],
    ['ERROR_NO_SUCH_LOGON_SESSION', 1312, 'KEYRING_LOCKED'],
    ['ERROR_ACCESS_DENIED', 5, 'ACCESS_DENIED'],
    ['NTE_PERM', 0x80090010, 'ACCESS_DENIED'],
    ['RPC_S_SERVER_UNAVAILABLE (LSA or domain controller)', 1722, 'BACKEND_UNAVAILABLE'],
    ['ERROR_NO_LOGON_SERVERS', 1311, 'BACKEND_UNAVAILABLE'],
    ['ERROR_NOT_ENOUGH_MEMORY (not known to mean damaged data)', 8, 'STORE_FAILED'],
  ];
  it.each(cases)('%s -> %s', (_name, code, expected) => {
    const meaning = explainDpapiFailure(failure(code), 'open', 'C:\\cache\\msal-cache.bin');
    expect(meaning === 'data' ? 'data' : meaning.code).toBe(expected);
    if (meaning !== 'data') {
      expect(meaning.message).toContain('C:\\cache\\msal-cache.bin');
      expect(meaning.message).toContain('left as it is');
      expect(meaning.cause).toBeInstanceOf(Error);
    }
  });

  it('reads HRESULTs however the binding renders them, and never calls an encryption failure damaged data', () => {
    expect(dpapiErrorCode(failure(2148073483))).toBe(0x8009000b);
    expect(dpapiErrorCode(new Error('Encryption/Decryption failed. Error code: -2147024883'))).toBe(0x8007000d);
    expect(dpapiErrorCode(new Error('DPAPI is not supported on this platform.'))).toBeUndefined();
    expect(explainDpapiFailure(new Error('DPAPI is not supported on this platform.'), 'open', 'c.bin')).toMatchObject({ code: 'STORE_FAILED' });
    expect(explainDpapiFailure(failure(13), 'seal', 'c.bin')).toMatchObject({ code: 'STORE_FAILED' });
    expect(explainDpapiFailure(failure(0x8009000b), 'seal', 'c.bin')).toMatchObject({ code: 'KEYRING_LOCKED' });
  });
});

describe('keychain backend: macOS errors get a code and a fix', () => {
  // The texts macOS's SecCopyErrorMessageString gives for each OSStatus, as keytar passes them on.
  const cases: [string, string, RegExp][] = [
    ['User interaction is not allowed.', 'KEYRING_LOCKED', /security unlock-keychain/],
    ['User canceled the operation.', 'ACCESS_DENIED', /Always Allow.*differently signed|differently signed.*Always Allow/s],
    ['The user name or passphrase you entered is not correct.', 'ACCESS_DENIED', /differently signed build/],
    ['Write permissions error.', 'ACCESS_DENIED', /Keychains/],
    ['A default keychain could not be found.', 'BACKEND_UNAVAILABLE', /Reset My Default Keychain|default-keychain/],
    ['No keychain is available. You may need to restart your computer.', 'BACKEND_UNAVAILABLE', /login keychain/],
    ["A required entitlement isn't present.", 'BACKEND_UNAVAILABLE', /entitlement/],
    ['An unknown error occurred.', 'STORE_FAILED', /macOS Keychain reported an error/],
  ];
  it.each(cases)('%s -> %s', (message, code, fix) => {
    const error = explainKeychainError(new Error(message), 'read the macOS Keychain item (service "s", account "a")');
    expect(error.code).toBe(code);
    expect(error.message).toMatch(fix);
    expect(error.message).toContain('macOS Keychain item (service "s", account "a")');
    expect((error.cause as Error).message).toBe(message);
  });
});
