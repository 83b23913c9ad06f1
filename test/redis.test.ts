// The Redis store against a real redis-server that this test file starts and stops (scripts/redis-server.mjs).
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeFromEnv } from '../examples/web-app/server.mjs';
import { startRedis } from '../scripts/redis-server.mjs';
import { createRedisStore, type PartitionStore } from '../src/distributed/index.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';
import { webApp, webSignIn as signIn } from './helpers.js';
import { storeCipher as cipher, storeContract, storeSafetyContract, type StoreSubject } from './store-contract.js';

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

  const subject = (): StoreSubject => ({
    store,
    workerArgs: { redisUrl: redis.url },
    tamper: async (partitionKey) => {
      const bytes = Buffer.from((await store.get(partitionKey))!.value);
      bytes[bytes.length - 3]! ^= 0xff;
      await client.hSet(`msal-cache:${partitionKey}`, { d: bytes.toString('base64'), v: `tampered-${Date.now()}` });
    },
  });
  storeContract(subject, 'redis');
  storeSafetyContract(subject, 'redis');

  it('sliding TTL: reads keep a partition alive past its TTL; left alone it expires', async () => {
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:sliding', endpoint, { ttlMs: 1000 }), 'sliding');
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(await webApp(store, cipher, 'user:sliding', endpoint, { ttlMs: 1000 }).getTokenCache().getAllAccounts()).toHaveLength(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
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

  it('a stalled Redis (SIGSTOP): every command in flight fails with STORE_FAILED after timeoutMs; resumed, the store works again', async () => {
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:stalled', endpoint), 'before-stall');
    const pid = redis.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      const stalled = await Promise.all([
        store.get('user:stalled'),
        store.version!('user:stalled'),
        webApp(store, cipher, 'user:stalled', endpoint).getTokenCache().getAllAccounts(),
      ].map((call) => call.then(() => 'answered', (error: unknown) => error)));
      for (const error of stalled) {
        expect(error).toMatchObject({ code: 'STORE_FAILED', message: expect.stringContaining('no answer within 1000 ms') });
      }
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // The client answers the queued commands once Redis runs again; the next request reads the partition.
    let accounts: unknown[] = [];
    for (let i = 0; i < 100 && accounts.length === 0; i++) {
      accounts = await webApp(store, cipher, 'user:stalled', endpoint).getTokenCache().getAllAccounts().catch(() => []);
      if (accounts.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(accounts).toHaveLength(1);
  });

  it('the example web app picks this store from MSAL_CACHE_STORE=redis', async () => {
    const { store: chosen, close } = await storeFromEnv({ MSAL_CACHE_STORE: 'redis', REDIS_URL: redis.url });
    const version = await chosen!.compareAndSet('example-env', Buffer.from('x'), null);
    expect(await store.get('example-env')).toEqual({ version, value: Buffer.from('x') });
    await close();
  });
});
