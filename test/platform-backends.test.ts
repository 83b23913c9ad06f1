// Backend-specific behaviour beyond the shared contract: Electron safeStorage (through the stand-in),
// and the macOS Keychain's error mapping (keytar passes on the Security framework's messages).
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PublicClientApplication } from '@azure/msal-node';
import { describe, expect, it } from 'vitest';
import { createSafeStorageStandIn } from '../scripts/safe-storage-stand-in.mjs';
import { createCachePlugin, createPersistence, type SafeStorageLike } from '../src/index.js';
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
