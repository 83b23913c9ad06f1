// The Redis store against a real redis-server that this test file starts and stops (scripts/redis-server.mjs).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { inspect, promisify } from 'node:util';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeFromEnv } from '../examples/web-app/server.mjs';
import { startRedis } from '../scripts/redis-server.mjs';
import { createRedisStore, type PartitionStore } from '../src/distributed/index.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';
import { repoRoot, webApp, webSignIn as signIn } from './helpers.js';
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
      const started = performance.now();
      const stalled = await Promise.all([
        store.get('user:stalled'),
        store.version!('user:stalled'),
        webApp(store, cipher, 'user:stalled', endpoint).getTokenCache().getAllAccounts(),
      ].map((call) => call.then(() => 'answered', (error: unknown) => ({ error, after: performance.now() - started }))));
      for (const failed of stalled) {
        expect(failed).toMatchObject({ error: { code: 'STORE_FAILED', message: expect.stringContaining('no answer within 1000 ms') } });
        // Not before timeoutMs (a slow answer is not a failure); the upper side is the watchdog's quarter period,
        // with room for a loaded machine's event-loop lag.
        const { after } = failed as { after: number };
        expect(after).toBeGreaterThanOrEqual(995);
        expect(after).toBeLessThan(1000 * 1.25 + 2000);
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

  it("a command in flight keeps the process alive until its answer or STORE_FAILED; an idle store does not", async () => {
    const distributed = JSON.stringify(join(repoRoot, 'dist', 'esm', 'distributed', 'index.js'));
    const run = (client: string, timeoutMs: number) => promisify(execFile)(process.execPath, ['--input-type=module', '-e', `
      const { createRedisStore } = await import(${distributed});
      const store = createRedisStore({ client: ${client}, timeoutMs: ${timeoutMs} });
      try { await store.get('k'); console.log('answered'); } catch (error) { console.log(error.code); }`], { encoding: 'utf8', timeout: 30_000 });
    // A client that never answers and holds nothing open (an unreferenced socket behaves so): the caller still hears.
    expect((await run('{ sendCommand: () => new Promise(() => {}) }', 300)).stdout.trim()).toBe('STORE_FAILED');
    // Answered at once, with a 20 s timeout: the process exits when its work is done, not after the watchdog's period.
    const started = Date.now();
    expect((await run('{ sendCommand: async () => [null, null] }', 20_000)).stdout.trim()).toBe('answered');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("a refused command (WRONGTYPE) says so, and its error carries neither the key nor the blob ioredis attaches", async () => {
    const ioredis = new Redis(redis.url, { lazyConnect: true });
    await ioredis.connect();
    try {
      const refusing = createRedisStore({ client: ioredis, keyPrefix: 'wrongtype-secret-key:', timeoutMs: 1000 });
      await ioredis.set('wrongtype-secret-key:user', 'not a hash');
      const error = await refusing.compareAndSet('user', Buffer.from('sealed-blob-bytes'), null).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'STORE_FAILED', message: expect.stringContaining('WRONGTYPE') });
      expect((error as Error).message).toContain('keyPrefix');
      const shown = inspect(error, { depth: 10, showHidden: true });
      expect(shown).not.toContain('wrongtype-secret-key');
      expect(shown).not.toContain(Buffer.from('sealed-blob-bytes').toString('base64'));
    } finally {
      await ioredis.quit();
    }
  });

  it('the example web app picks this store from MSAL_CACHE_STORE=redis', async () => {
    const { store: chosen, close } = await storeFromEnv({ MSAL_CACHE_STORE: 'redis', REDIS_URL: redis.url });
    const version = await chosen!.compareAndSet('example-env', Buffer.from('x'), null);
    expect(await store.get('example-env')).toEqual({ version, value: Buffer.from('x') });
    await close();
  });
});
