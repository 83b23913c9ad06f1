// What every PartitionStore must do, run by the embedded, Redis and PostgreSQL suites against the real thing.
import { createHash, randomBytes } from 'node:crypto';
import { ConfidentialClientApplication, type ICachePlugin } from '@azure/msal-node';
import { expect, it } from 'vitest';
import { type BlobCipher, createBlobCipher, createPartitionedCachePlugin, type PartitionStore, partitionKeys } from '../src/distributed/index.js';
import { createTokenEndpoint, testAuthority } from '../src/token-endpoint.js';
import { recordingLogger, runFixture, webApp, webSignIn } from './helpers.js';

export const storeKeys = { k1: randomBytes(32).toString('base64') };
export const storeCipher = createBlobCipher({ keys: storeKeys, currentKeyId: 'k1' });

export interface StoreSubject {
  store: PartitionStore;
  /** How test/fixtures/distributed-worker.mjs reaches the same store: { directory } | { redisUrl } | { postgres }. */
  workerArgs: Record<string, string>;
  /** Flips a byte of the stored blob of `partitionKey` in place, bypassing the store's API. */
  tamper(partitionKey: string): Promise<void>;
}

export function storeContract(subject: () => StoreSubject, prefix: string): void {
  it('compare-and-set: only on the version read, null on conflict; get and delete', async () => {
    const { store } = subject();
    const key = `${prefix}-cas`;
    expect(await store.get(key)).toBeNull();
    const v1 = await store.compareAndSet(key, Buffer.from([1, 2, 3]), null);
    expect(v1).toEqual(expect.any(String));
    expect(await store.compareAndSet(key, Buffer.from([9]), null)).toBeNull();
    expect(await store.compareAndSet(key, Buffer.from([9]), 'stale-version')).toBeNull();
    const v2 = await store.compareAndSet(key, Buffer.from([4, 5]), v1);
    expect(v2).not.toBe(v1);
    expect(await store.get(key)).toEqual({ version: v2, value: Buffer.from([4, 5]) });
    expect(await store.delete(key)).toBe(true);
    expect(await store.delete(key)).toBe(false);
  });

  it('two app instances (processes) refresh the same 100 users at once (new scopes by refresh token): no token lost', async () => {
    const { store, workerArgs } = subject();
    const users = Array.from({ length: 100 }, (_, i) => `${prefix}-${i}`);
    const endpoint = createTokenEndpoint();
    for (const user of users) await webSignIn(webApp(store, storeCipher, `user:${user}`, endpoint), user);
    const runs = await Promise.all(['A.Read', 'B.Read'].map((scope) =>
      runFixture('distributed-worker', { ...workerArgs, mode: 'refresh', users, scope, keys: storeKeys, currentKeyId: 'k1' })));
    for (const run of runs) {
      expect(run.code).toBe(0);
      const result = JSON.parse(run.stdout.split('RESULT ')[1]!) as { failures: string[]; requests: Record<string, number> };
      expect(result.failures).toEqual([]);
      expect(result.requests.refresh_token).toBe(100); // every token came from a refresh, none from a sign-in
    }
    const lost: string[] = [];
    for (const user of users) {
      const blob = await store.get(`user:${user}`);
      const cache = JSON.parse(storeCipher.open(blob!.value, `user:${user}`).text) as { AccessToken: Record<string, { target: string }> };
      const targets = Object.values(cache.AccessToken).map((t) => t.target.toLowerCase()).join(' ');
      if (!['user.read', 'a.read', 'b.read'].every((scope) => targets.includes(scope))) lost.push(`${user}: ${targets}`);
    }
    expect(lost).toEqual([]);
  });

  it('a tampered blob: DECRYPT_FAILED logged, the user signs in again, nothing crashes', async () => {
    const { store, tamper } = subject();
    const key = `user:${prefix}-tampered`;
    const endpoint = createTokenEndpoint();
    await webSignIn(webApp(store, storeCipher, key, endpoint), 'tampered');
    await tamper(key);
    const log = recordingLogger();
    const app = webApp(store, storeCipher, key, endpoint, { loggerOptions: log.loggerOptions });
    expect(await app.getTokenCache().getAllAccounts()).toEqual([]);
    expect(log.lines.filter((l) => l.level === 1 && l.message.includes('DECRYPT_FAILED'))).toHaveLength(1);
    await webSignIn(app, 'tampered');
    expect(await webApp(store, storeCipher, key, endpoint).getTokenCache().getAllAccounts()).toHaveLength(1);
  });
}

/** A store whose next compareAndSet on `key` first runs `meanwhile` (another instance acting while this request is in flight). */
function interleaved(store: PartitionStore, key: string, meanwhile: () => Promise<void>): PartitionStore {
  let pending: (() => Promise<void>) | undefined = meanwhile;
  return {
    get: (k) => store.get(k),
    ...(store.version ? { version: (k: string) => store.version!(k) } : {}),
    delete: (k) => store.delete(k),
    ...(store.touch ? { touch: (k: string, ttl: number) => store.touch!(k, ttl) } : {}),
    async compareAndSet(k, value, expected, ttlMs) {
      if (k === key && pending) {
        const run = pending;
        pending = undefined;
        await run();
      }
      return store.compareAndSet(k, value, expected, ttlMs);
    },
  };
}

const targetsOf = (cipher: BlobCipher, blob: Buffer, key: string) => {
  const text = cipher.open(blob, key).text;
  const json = text.slice(text.indexOf('{'));
  return Object.values((JSON.parse(json) as { AccessToken: Record<string, { target: string }> }).AccessToken).map((t) => t.target.toLowerCase()).sort();
};

/** Issue 11's cases: rotation-safe reads, partitions per request, final sign-outs. Run on every store. */
export function storeSafetyContract(subject: () => StoreSubject, prefix: string): void {
  const k1 = storeKeys.k1;
  const k2 = randomBytes(32).toString('base64');
  const newer = createBlobCipher({ keys: { k1, k2 }, currentKeyId: 'k2' });
  const older = createBlobCipher({ keys: { k1 }, currentKeyId: 'k1' });

  it('rolling key rotation: an instance (another process) without the blob\'s key id reads nothing and leaves it; its sign-in keeps the bytes aside', async () => {
    const { store, workerArgs } = subject();
    const user = `${prefix}-rotation`;
    const key = `user:${user}`;
    const endpoint = createTokenEndpoint();
    await webSignIn(webApp(store, newer, key, endpoint), user);
    const before = (await store.get(key))!;
    // In this process, with its log: requests of an instance with k1 only see no account, leave the blob as it is,
    // and one configuration error names the key id, for any number of requests; never "corrupt".
    const log = recordingLogger();
    for (let i = 0; i < 3; i++) {
      expect(await webApp(store, older, key, endpoint, { loggerOptions: log.loggerOptions }).getTokenCache().getAllAccounts()).toEqual([]);
    }
    const errors = log.lines.filter((l) => l.level === 0);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/key id "k2".*not configured/);
    expect(log.lines.filter((l) => /corrupt/i.test(l.message))).toEqual([]);
    expect(await store.get(key)).toEqual(before);
    // The same instance as a separate process: a silent call finds nothing and writes nothing ...
    const read = await runFixture('distributed-worker', { ...workerArgs, mode: 'refresh', users: [user], scope: 'User.Read', keys: { k1 }, currentKeyId: 'k1' });
    expect(JSON.parse(read.stdout.split('RESULT ')[1]!).failures).toEqual([`${user}: NO_ACCOUNT`]);
    expect(await store.get(key)).toEqual(before);
    // ... and a sign-in there works, after keeping the k2 bytes aside, where the instance with k2 still opens them.
    const signIn = await runFixture('distributed-worker', { ...workerArgs, mode: 'signin', users: [user], scope: 'User.Read', keys: { k1 }, currentKeyId: 'k1' });
    expect(JSON.parse(signIn.stdout.split('RESULT ')[1]!).failures).toEqual([]);
    const aside = await store.get(`${key}#unreadable-${createHash('sha256').update(before.value).digest('hex').slice(0, 32)}`);
    expect(aside?.value).toEqual(before.value);
    expect(newer.open(aside!.value, key).text).toContain('AccessToken');
    // The instance that has both keys serves the user from the new blob.
    endpoint.refuse = true;
    const app = webApp(store, newer, key, endpoint);
    const [account] = await app.getTokenCache().getAllAccounts();
    expect((await app.acquireTokenSilent({ account: account!, scopes: ['User.Read'] })).fromCache).toBe(true);
  });

  it('reads never rewrite: a blob under the old key stays under it until a write (an instance with only the old key still reads it)', async () => {
    const { store } = subject();
    const key = `user:${prefix}-old-key`;
    const endpoint = createTokenEndpoint();
    await webSignIn(webApp(store, older, key, endpoint), 'old-key');
    const before = await store.get(key);
    const app = webApp(store, newer, key, endpoint);
    const [account] = await app.getTokenCache().getAllAccounts();
    await app.acquireTokenSilent({ account: account!, scopes: ['User.Read'] });
    expect(await store.get(key)).toEqual(before);
    // A write (a new scope) seals with the current key.
    await app.acquireTokenSilent({ account: account!, scopes: ['Other.Read'] });
    expect(newer.open((await store.get(key))!.value, key)).toMatchObject({ keyId: 'k2', stale: false });
  });

  it('a different key under the same id (keyFromPersistence on two hosts): reads leave the blob; a sign-in keeps its bytes aside, then writes', async () => {
    const { store } = subject();
    const key = `user:${prefix}-same-id`;
    const endpoint = createTokenEndpoint();
    await webSignIn(webApp(store, older, key, endpoint), 'host-a');
    const before = (await store.get(key))!;
    const otherHost = createBlobCipher({ keys: { k1: randomBytes(32) }, currentKeyId: 'k1' });
    const log = recordingLogger();
    const app = webApp(store, otherHost, key, endpoint, { loggerOptions: log.loggerOptions });
    expect(await app.getTokenCache().getAllAccounts()).toEqual([]);
    expect(await store.get(key)).toEqual(before);
    await webSignIn(app, 'host-b');
    const aside = await store.get(`${key}#unreadable-${createHash('sha256').update(before.value).digest('hex').slice(0, 32)}`);
    expect(aside?.value).toEqual(before.value);
    expect(older.open(aside!.value, key).text).toContain('AccessToken');
    expect(log.lines.some((l) => l.message.includes('kept aside'))).toBe(true);
    expect(log.lines.filter((l) => l.message.includes('host-a') || l.message.includes(key))).toEqual([]);
    expect(await webApp(store, otherHost, key, endpoint).getTokenCache().getAllAccounts()).toHaveLength(1);
  });

  it('no stale token after another instance (a process) writes: what this process decrypted before is not served again', async () => {
    const { store, workerArgs } = subject();
    const user = `${prefix}-fresh`;
    const key = `user:${user}`;
    const endpoint = createTokenEndpoint();
    await webSignIn(webApp(store, storeCipher, key, endpoint), user);
    // This process reads (and keeps the decrypted partition in memory) ...
    const [account] = await webApp(store, storeCipher, key, endpoint).getTokenCache().getAllAccounts();
    // ... another instance refreshes the user's tokens for a new scope ...
    const run = await runFixture('distributed-worker', { ...workerArgs, mode: 'refresh', users: [user], scope: 'New.Read', keys: storeKeys, currentKeyId: 'k1' });
    expect(run.code, run.stderr).toBe(0);
    // ... and the next request here is served that token from the cache, with no request to the token endpoint.
    endpoint.refuse = true;
    const next = webApp(store, storeCipher, key, endpoint);
    const result = await next.acquireTokenSilent({ account: account!, scopes: ['New.Read'] });
    expect(result.fromCache).toBe(true);
    expect(endpoint.requests.refresh_token ?? 0).toBe(0);
    const fromOther = targetsOf(storeCipher, (await store.get(key))!.value, key).find((target) => target.includes('new.read'));
    expect(fromOther).toBeDefined();
  });

  it('one plugin without partitionKey, reused for every sign-in: each user lands in their own partition, decided per request', async () => {
    const { store } = subject();
    const endpoint = createTokenEndpoint();
    const plugin = createPartitionedCachePlugin({ store, cipher: storeCipher });
    const client = (cachePlugin: ICachePlugin) => new ConfidentialClientApplication({
      auth: { clientId: 'web-app', authority: testAuthority, clientSecret: 'secret' }, cache: { cachePlugin }, system: { networkClient: endpoint.networkClient },
    });
    const shared = client(plugin);
    // Two clients on the plugin at once, and one client reused for a second user.
    const [alice, bob] = await Promise.all([webSignIn(client(plugin), `${prefix}-alice`), webSignIn(client(plugin), `${prefix}-bob`)]);
    const carol = await webSignIn(shared, `${prefix}-carol`);
    const dave = await webSignIn(shared, `${prefix}-dave`);
    for (const result of [alice, bob, carol, dave]) {
      const key = partitionKeys.forAccount(result.account!);
      const accounts = await webApp(store, storeCipher, key, endpoint).getTokenCache().getAllAccounts();
      expect(accounts.map((a) => a.homeAccountId)).toEqual([result.account!.homeAccountId]);
    }
    expect(plugin.partitionKey).toBeUndefined();
  });

  it('sign-out is final: a refresh in flight on another instance does not bring the partition back; a fresh sign-in afterwards works', async () => {
    const { store } = subject();
    const user = `${prefix}-signout`;
    const key = `user:${user}`;
    const endpoint = createTokenEndpoint();
    await webSignIn(webApp(store, storeCipher, key, endpoint), user);
    const inFlight = webApp(interleaved(store, key, async () => { expect(await store.delete(key)).toBe(true); }), storeCipher, key, endpoint);
    const [account] = await inFlight.getTokenCache().getAllAccounts();
    await inFlight.acquireTokenSilent({ account: account!, scopes: ['Late.Read'] });
    expect((await store.get(key))?.value).toHaveLength(0); // the tombstone
    expect(await webApp(store, storeCipher, key, endpoint).getTokenCache().getAllAccounts()).toEqual([]);
    expect(await store.delete(key)).toBe(false);
    // Signed out, then signed in again while a request from before the sign-out is still in flight: it stays out.
    await webSignIn(webApp(store, storeCipher, key, endpoint), user);
    const [again] = await webApp(store, storeCipher, key, endpoint).getTokenCache().getAllAccounts();
    const stale = webApp(interleaved(store, key, async () => {
      await store.delete(key);
      await webSignIn(webApp(store, storeCipher, key, endpoint), user, 'Fresh.Read');
    }), storeCipher, key, endpoint);
    await stale.getTokenCache().getAllAccounts();
    await stale.acquireTokenSilent({ account: again!, scopes: ['Stale.Read'] });
    let targets = targetsOf(storeCipher, (await store.get(key))!.value, key);
    expect(targets.some((target) => target.includes('fresh.read'))).toBe(true);
    expect(targets.filter((target) => /stale\.read|user\.read|late\.read/.test(target))).toEqual([]);
    // The likeliest timing: sign-out and a new sign-in while the request's refresh is on the network (msal reads
    // the partition again right before it saves, and then sees the new sign-in's blob).
    let onRefresh: (() => Promise<void>) | undefined = async () => {
      await store.delete(key);
      await webSignIn(webApp(store, storeCipher, key, endpoint), user, 'Newest.Read');
    };
    const network = {
      ...endpoint.networkClient,
      async sendPostRequestAsync<T>(url: string, request?: { body?: string }) {
        if (onRefresh && new URLSearchParams(String(request?.body ?? '')).get('grant_type') === 'refresh_token') {
          const run = onRefresh;
          onRefresh = undefined;
          await run();
        }
        return endpoint.networkClient.sendPostRequestAsync<T>(url, request as never);
      },
    };
    const slow = webApp(store, storeCipher, key, { ...endpoint, networkClient: network } as typeof endpoint);
    const [current] = await slow.getTokenCache().getAllAccounts();
    await slow.acquireTokenSilent({ account: current!, scopes: ['During.Read'] });
    expect(onRefresh).toBeUndefined();
    targets = targetsOf(storeCipher, (await store.get(key))!.value, key);

    expect(targets.some((target) => target.includes('newest.read'))).toBe(true);
    expect(targets.filter((target) => /during\.read|fresh\.read|stale\.read/.test(target))).toEqual([]);
  });
}
