// What every PartitionStore must do, run by the embedded, Redis and PostgreSQL suites against the real thing.
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { createBlobCipher, type PartitionStore } from '../src/distributed/index.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';
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
