// Confidential-client caches: one encrypted blob per partition, compare-and-set writes that merge on
// conflict. Embedded file store; real msal-node ConfidentialClientApplication; real processes.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createBlobCipher, createFileStore, createPartitionedCachePlugin, createRedisStore, createSessionStore, keyFromPersistence, mergeCaches, partitionKeys,
} from '../src/distributed/index.js';
import { createPersistence } from '../src/index.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';
import { forChild, isLinux, recordingLogger, repoRoot, storeOptions, tempDir, webApp, webSignIn as signIn } from './helpers.js';
import { storeContract, storeSafetyContract, type StoreSubject } from './store-contract.js';

const k1 = randomBytes(32);
const k2 = randomBytes(32);

/** A partition file with one byte of its blob flipped, and (as any write does) a new version in its header. */
function tampered(bytes: Buffer): Buffer {
  const newline = bytes.indexOf(0x0a);
  const header = JSON.parse(bytes.subarray(0, newline).toString('utf8')) as { v: string };
  const body = Buffer.from(bytes.subarray(newline + 1));
  body[body.length - 5]! ^= 0x20;
  return Buffer.concat([Buffer.from(`${JSON.stringify({ ...header, v: `${header.v}-tampered` })}\n`), body]);
}


describe('blob cipher (AES-256-GCM, key id in the header)', () => {
  const cipher = createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' });

  it('round-trips, and the same text seals differently twice with no plaintext in the blob', () => {
    const a = cipher.seal('{"secret":"rt.abc"}', 'p');
    const b = cipher.seal('{"secret":"rt.abc"}', 'p');
    expect(a.equals(b)).toBe(false);
    expect(a.includes(Buffer.from('rt.abc'))).toBe(false);
    expect(cipher.open(a, 'p')).toEqual({ text: '{"secret":"rt.abc"}', keyId: 'k1', stale: false });
  });

  it('refuses a flipped byte, a truncated blob, a wrong key under the same id, an unknown key id, and another partition', () => {
    const blob = cipher.seal('{"a":1}', 'p');
    const flipped = Buffer.from(blob);
    flipped[flipped.length - 20]! ^= 1;
    const other = createBlobCipher({ keys: { k1: k2 }, currentKeyId: 'k1' });
    const unknown = createBlobCipher({ keys: { k2 }, currentKeyId: 'k2' });
    for (const attempt of [() => cipher.open(flipped, 'p'), () => cipher.open(blob.subarray(0, 20), 'p'), () => other.open(blob, 'p'),
      () => unknown.open(blob, 'p'), () => cipher.open(blob, 'another user'), () => cipher.open(Buffer.from('{"plain":1}'), 'p')]) {
      expect(attempt).toThrow(expect.objectContaining({ code: 'DECRYPT_FAILED' }));
    }
  });

  it('rejects bad keys with INVALID_OPTION', () => {
    expect(() => createBlobCipher({ keys: { k1: randomBytes(16) }, currentKeyId: 'k1' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(() => createBlobCipher({ keys: { k1 }, currentKeyId: 'k9' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });
});

describe('partitioned cache plugin over the embedded file store', () => {
  let directory: string;
  let fileStore: Awaited<ReturnType<typeof createFileStore>>;
  beforeAll(async () => {
    directory = await tempDir();
    fileStore = await createFileStore({ directory });
  });
  const subject = (): StoreSubject => ({
    store: fileStore,
    workerArgs: { directory },
    tamper: async (partitionKey) => {
      const path = fileStore.pathFor(partitionKey);
      await writeFile(path, tampered(await readFile(path)));
    },
  });
  storeContract(subject, 'file');
  storeSafetyContract(subject, 'file');

  it('a silent call is served from the partition; another user\'s partition stays separate', async () => {
    const store = await createFileStore({ directory: await tempDir() });
    const cipher = createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' });
    const endpoint = createTokenEndpoint();
    const signedIn = await signIn(webApp(store, cipher, partitionKeys.forAccount('alice-home'), endpoint), 'alice');
    endpoint.refuse = true;
    const next = webApp(store, cipher, partitionKeys.forAccount('alice-home'), endpoint);
    const [account] = await next.getTokenCache().getAllAccounts();
    expect((await next.acquireTokenSilent({ account: account!, scopes: ['User.Read'] })).accessToken).toBe(signedIn.accessToken);
    expect(await webApp(store, cipher, partitionKeys.forAccount('bob-home'), endpoint).getTokenCache().getAllAccounts()).toEqual([]);
  });

  it('expires a partition after its TTL', async () => {
    const store = await createFileStore({ directory: await tempDir() });
    const cipher = createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' });
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:ttl', endpoint, { ttlMs: 1000 }), 'ttl');
    expect(await store.get('user:ttl')).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 1300));
    expect(await store.get('user:ttl')).toBeNull();
    expect(await webApp(store, cipher, 'user:ttl', endpoint).getTokenCache().getAllAccounts()).toEqual([]);
  });

  it('key rotation: blobs under the old key stay readable, and the next write seals with the new key', async () => {
    const store = await createFileStore({ directory: await tempDir() });
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' }), 'user:rotate', endpoint), 'rotate');
    const rotated = createBlobCipher({ keys: { k1, k2 }, currentKeyId: 'k2' });
    expect(rotated.open((await store.get('user:rotate'))!.value, 'user:rotate')).toMatchObject({ keyId: 'k1', stale: true });
    const app = webApp(store, rotated, 'user:rotate', endpoint);
    const [account] = await app.getTokenCache().getAllAccounts();
    await app.acquireTokenSilent({ account: account!, scopes: ['Another.Read'] });
    expect(rotated.open((await store.get('user:rotate'))!.value, 'user:rotate')).toMatchObject({ keyId: 'k2', stale: false });
    const rewritten = (await store.get('user:rotate'))!.value;
    expect(() => createBlobCipher({ keys: { k2 }, currentKeyId: 'k2' }).open(rewritten, 'user:rotate')).not.toThrow();
  });

  it('a tampered blob or a wrong key: DECRYPT_FAILED logged, the user signs in again, nothing crashes', async () => {
    const directory = await tempDir();
    const store = await createFileStore({ directory });
    const cipher = createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' });
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:tamper', endpoint), 'tamper');
    const path = store.pathFor('user:tamper');
    await writeFile(path, tampered(await readFile(path)));
    for (const reader of [cipher, createBlobCipher({ keys: { k1: k2 }, currentKeyId: 'k1' })]) {
      const log = recordingLogger();
      const app = webApp(store, reader, 'user:tamper', endpoint, { loggerOptions: log.loggerOptions });
      expect(await app.getTokenCache().getAllAccounts()).toEqual([]);
      expect(log.lines.filter((l) => l.level === 1 && l.message.includes('DECRYPT_FAILED'))).toHaveLength(1);
      await signIn(app, 'tamper');
      expect((await app.getTokenCache().getAllAccounts())).toHaveLength(1);
    }
  });

  it('refuses to store unencrypted blobs unless asked, and needs a partition key', async () => {
    const store = await createFileStore({ directory: await tempDir() });
    expect(() => createPartitionedCachePlugin({ store, partitionKey: 'p' })).toThrow(expect.objectContaining({ code: 'PLAINTEXT_NOT_ALLOWED' }));
    expect(() => createPartitionedCachePlugin({ store, partitionKey: '', allowPlaintext: true })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(partitionKeys.forApp('client', 'tenant')).toBe('app:client.tenant');
    expect(partitionKeys.forOnBehalfOf('eyJ.assertion')).toMatch(/^obo:[0-9a-f]{64}$/);
  });

  it('mergeCaches keeps both sides\' new entities and this side\'s removals', () => {
    const base = JSON.stringify({ AccessToken: { a: { t: 1 }, gone: { t: 0 } } });
    const ours = JSON.stringify({ AccessToken: { a: { t: 2 }, mine: { t: 1 } } });
    const latest = JSON.stringify({ AccessToken: { a: { t: 1 }, gone: { t: 0 }, theirs: { t: 1 } } });
    expect(JSON.parse(mergeCaches(base, ours, latest))).toEqual({ AccessToken: { a: { t: 2 }, mine: { t: 1 }, theirs: { t: 1 } } });
  });
});

describe('a blob key kept in the OS secret store', () => {
  it.runIf(isLinux)('is created once in the private Secret Service, then the same key comes back to every process', async () => {
    const options = await storeOptions('libsecret');
    const first = await keyFromPersistence(await createPersistence(options));
    expect(first).toHaveLength(32);
    expect(await keyFromPersistence(await createPersistence(options))).toEqual(first);
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', `
      const { createPersistence } = await import(${JSON.stringify(join(repoRoot, 'dist', 'esm', 'index.js'))});
      const { keyFromPersistence } = await import(${JSON.stringify(join(repoRoot, 'dist', 'esm', 'distributed', 'index.js'))});
      const key = await keyFromPersistence(await createPersistence(${JSON.stringify(forChild(options))}));
      console.log(key.toString('base64'));`], { encoding: 'utf8' });
    expect(stdout.trim()).toBe(first.toString('base64'));
    const cipher = createBlobCipher({ keys: { os: first }, currentKeyId: 'os' });
    expect(cipher.open(cipher.seal('{}', 'p'), 'p').text).toBe('{}');
  });

  it('refuses a persistence that stores in the clear unless allowUnencrypted, and writes nothing there', async () => {
    const options = await storeOptions('plaintext-file');
    const persistence = await createPersistence(options);
    await expect(keyFromPersistence(persistence)).rejects.toMatchObject({ code: 'PLAINTEXT_NOT_ALLOWED' });
    expect(await persistence.load()).toBeNull();
    expect(await keyFromPersistence(persistence, { allowUnencrypted: true })).toHaveLength(32);
  });

  it('is never replaced silently: an unreadable stored key is CACHE_CORRUPT', async () => {
    const options = await storeOptions('plaintext-file');
    const persistence = await createPersistence(options);
    await persistence.save('{"aes256Key":"c2hvcnQ="}');
    await expect(keyFromPersistence(persistence, { allowUnencrypted: true })).rejects.toMatchObject({ code: 'CACHE_CORRUPT' });
    expect(await persistence.load()).toBe('{"aes256Key":"c2hvcnQ="}');
  });
});

describe('distributed options are checked at creation (INVALID_OPTION)', () => {
  it('ttlMs, maxAttempts, memoryEntries, tombstoneTtlMs and the Redis timeout take only sensible numbers', async () => {
    const store = await createFileStore({ directory: await tempDir() });
    const cipher = createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' });
    const plugin = (extra: object) => () => createPartitionedCachePlugin({ store, cipher, partitionKey: 'p', ...extra });
    for (const ttlMs of [0, -1, 0.4, 999, 1500.5, Number.NaN, Number.POSITIVE_INFINITY, '60000', null]) {
      expect(plugin({ ttlMs }), `ttlMs ${String(ttlMs)}`).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining('ttlMs') }));
    }
    for (const maxAttempts of [0, -3, 1.5, Number.NaN, 1e9, '5']) {
      expect(plugin({ maxAttempts }), `maxAttempts ${String(maxAttempts)}`).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    }
    for (const memoryEntries of [-1, 2.5, Number.POSITIVE_INFINITY]) {
      expect(plugin({ memoryEntries })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    }
    expect(plugin({ cipher: { seal: 1 } })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(plugin({ ttlMs: 1000, maxAttempts: 1, memoryEntries: 0 })).not.toThrow();
    const client = { sendCommand: async () => null };
    for (const timeoutMs of [0, -5, Number.NaN, 0.5, 2 ** 31, 'soon']) {
      expect(() => createRedisStore({ client, timeoutMs: timeoutMs as number })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    }
    for (const tombstoneTtlMs of [0, 10, Number.NaN]) {
      expect(() => createRedisStore({ client, tombstoneTtlMs })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
      await expect(createFileStore({ directory: await tempDir(), tombstoneTtlMs })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    }
    expect(() => createRedisStore({ client: {} as never })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(() => createBlobCipher({ keys: { k: undefined as never }, currentKeyId: 'k' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });

  it('key ids from a blob header (anyone who can write the store picks them) are escaped and cut in errors and logs', async () => {
    const store = await createFileStore({ directory: await tempDir() });
    const cipher = createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' });
    const hostile = `evil\n[FATAL] fake log line \u001b[31m${'x'.repeat(200)}`;
    const forged = createBlobCipher({ keys: { [hostile]: k2 }, currentKeyId: hostile });
    await store.compareAndSet('user:hostile', forged.seal('{}', 'user:hostile'), null);
    const log = recordingLogger();
    const endpoint = createTokenEndpoint();
    const app = webApp(store, cipher, 'user:hostile', endpoint, { loggerOptions: log.loggerOptions });
    expect(await app.getTokenCache().getAllAccounts()).toEqual([]);
    let failure: Error | undefined;
    try { cipher.open((await store.get('user:hostile'))!.value, 'user:hostile'); } catch (error) { failure = error as Error; }
    expect(failure).toMatchObject({ code: 'DECRYPT_FAILED' });
    await signIn(app, 'hostile'); // the bytes are kept aside, and the sign-in works
    expect(log.lines.length).toBeGreaterThanOrEqual(2);
    for (const text of [...log.lines.map((l) => l.message), failure!.message]) {
      expect(text).not.toMatch(/[\n\u001b]/);
      expect(text).not.toContain('x'.repeat(60));
      expect(text).not.toContain('[FATAL] fake log line \u001b');
    }
    expect(log.lines.filter((l) => l.level === 0)).toHaveLength(1);
  });
});

describe('session store (the cache in the user\'s own session)', () => {
  const cipher = createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' });
  it('keeps the user\'s cache sealed in the session, compare-and-set within the request, tombstone on sign-out', async () => {
    const request: { session: Record<string, unknown> } = { session: {} };
    const store = createSessionStore({ request });
    const endpoint = createTokenEndpoint();
    const key = partitionKeys.forAccount('session-user');
    await signIn(webApp(store, cipher, key, endpoint), 'session-user');
    const kept = JSON.stringify(request.session);
    expect(kept).not.toContain('secret');
    expect(kept).not.toMatch(/AccessToken|RefreshToken/);
    endpoint.refuse = true;
    const [account] = await webApp(store, cipher, key, endpoint).getTokenCache().getAllAccounts();
    expect((await webApp(store, cipher, key, endpoint).acquireTokenSilent({ account: account!, scopes: ['User.Read'] })).fromCache).toBe(true);
    const version = (await store.get(key))!.version;
    expect(await store.compareAndSet(key, Buffer.from('x'), 'not-the-version')).toBeNull();
    expect(await store.delete(key)).toBe(true);
    expect((await store.get(key))?.value).toHaveLength(0);
    expect((await store.get(key))?.version).not.toBe(version);
    expect(await webApp(store, cipher, key, endpoint).getTokenCache().getAllAccounts()).toEqual([]);
  });

  it('a cache the session cannot hold (a cookie session\'s few KB) is a clear STORE_FAILED, and the session keeps what it had', async () => {
    const request: { session: Record<string, unknown> } = { session: { other: 'kept' } };
    const store = createSessionStore({ request, maxBytes: 1000 });
    const endpoint = createTokenEndpoint();
    const failure = await signIn(webApp(store, cipher, partitionKeys.forAccount('big'), endpoint), 'big').catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'STORE_FAILED', message: expect.stringContaining('cookie-backed session') });
    expect(request.session).toEqual({ other: 'kept' });
    expect(() => createSessionStore({ request, maxBytes: 10 })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(() => createSessionStore({} as never)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    await expect(createSessionStore({ request: {} }).get('p')).rejects.toMatchObject({ code: 'STORE_FAILED' });
  });
});
