// The Redis store against a real redis-server that this test file starts and stops (scripts/redis-server.mjs).
import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis } from '../scripts/redis-server.mjs';
import { createBlobCipher, createRedisStore, type PartitionStore } from '../src/distributed/index.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';
import { recordingLogger, runFixture, webApp, webSignIn as signIn } from './helpers.js';

const keys = { k1: randomBytes(32).toString('base64') };
const cipher = createBlobCipher({ keys, currentKeyId: 'k1' });

// Linux CI installs redis-server (.ci/run); elsewhere the suite needs it on PATH.
describe('Redis store (real redis-server)', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let client: ReturnType<typeof createClient>;
  let store: PartitionStore;
  beforeAll(async () => {
    redis = await startRedis();
    client = createClient({ url: redis.url, socket: { reconnectStrategy: () => 50 } });
    client.on('error', () => undefined); // reconnects are expected in the restart test
    await client.connect();
    store = createRedisStore({ client, timeoutMs: 1000 });
  });
  afterAll(async () => {
    await client?.destroy();
    await redis?.stop();
  });

  it('compare-and-set: only on the version read, null on conflict; get and delete', async () => {
    expect(await store.get('p')).toBeNull();
    const v1 = await store.compareAndSet('p', Buffer.from([1, 2, 3]), null);
    expect(v1).toEqual(expect.any(String));
    expect(await store.compareAndSet('p', Buffer.from([9]), null)).toBeNull();
    expect(await store.compareAndSet('p', Buffer.from([9]), 'stale-version')).toBeNull();
    const v2 = await store.compareAndSet('p', Buffer.from([4, 5]), v1);
    expect(v2).not.toBe(v1);
    expect(await store.get('p')).toEqual({ version: v2, value: Buffer.from([4, 5]) });
    expect(await store.delete('p')).toBe(true);
    expect(await store.delete('p')).toBe(false);
  });

  it('two app instances (processes) sign in the same 100 users at once with different scopes: no token lost', async () => {
    const users = Array.from({ length: 100 }, (_, i) => `redis-${i}`);
    const runs = await Promise.all(['A.Read', 'B.Read'].map((scope) =>
      runFixture('distributed-worker', { redisUrl: redis.url, users, scope, keys, currentKeyId: 'k1' })));
    for (const run of runs) {
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout.split('RESULT ')[1]!).failures).toEqual([]);
    }
    const lost: string[] = [];
    for (const user of users) {
      const blob = await store.get(`user:${user}`);
      const cache = JSON.parse(cipher.open(blob!.value, `user:${user}`).text) as { AccessToken: Record<string, { target: string }> };
      const targets = Object.values(cache.AccessToken).map((t) => t.target.toLowerCase()).join(' ');
      if (!targets.includes('a.read') || !targets.includes('b.read')) lost.push(`${user}: ${targets}`);
    }
    expect(lost).toEqual([]);
  });

  it('sliding TTL: reads keep a partition alive past its TTL; left alone it expires', async () => {
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:sliding', endpoint, { ttlMs: 400 }), 'sliding');
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await webApp(store, cipher, 'user:sliding', endpoint, { ttlMs: 400 }).getTokenCache().getAllAccounts()).toHaveLength(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await store.get('user:sliding')).toBeNull();
  });

  it('a Redis restart mid-run: clear STORE_FAILED while it is down, and it recovers by itself', async () => {
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:restart', endpoint), 'before-restart');
    await redis.kill();
    const down = await signIn(webApp(store, cipher, 'user:restart', endpoint), 'while-down').catch((error: unknown) => error);
    expect(down).toMatchObject({ code: 'STORE_FAILED', message: expect.stringContaining('Check that Redis is running') });
    await redis.start();
    let recovered = false;
    for (let i = 0; i < 100 && !recovered; i++) {
      recovered = await signIn(webApp(store, cipher, 'user:restart', endpoint), 'after-restart').then(() => true, () => false);
      if (!recovered) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(recovered).toBe(true);
  });

  it('a tampered blob in Redis: DECRYPT_FAILED logged, the user signs in again', async () => {
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:tampered', endpoint), 'tampered');
    const stored = (await store.get('user:tampered'))!;
    const bytes = Buffer.from(stored.value);
    bytes[bytes.length - 3]! ^= 0xff;
    await client.hSet('msal-cache:user:tampered', 'd', bytes.toString('base64'));
    const log = recordingLogger();
    const app = webApp(store, cipher, 'user:tampered', endpoint, { loggerOptions: log.loggerOptions });
    expect(await app.getTokenCache().getAllAccounts()).toEqual([]);
    expect(log.lines.some((l) => l.message.includes('DECRYPT_FAILED'))).toBe(true);
    await signIn(app, 'tampered');
    expect(await webApp(store, cipher, 'user:tampered', endpoint).getTokenCache().getAllAccounts()).toHaveLength(1);
  });
});
