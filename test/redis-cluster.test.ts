// The Redis store on a real 3-master Redis Cluster (three redis-server, `redis-cli --cluster create`), through
// the two clients apps use: node-redis's createCluster and ioredis's Cluster, each passed as is.
import { Cluster as IORedisCluster } from 'ioredis';
import { createCluster } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisCluster } from '../scripts/redis-cluster.mjs';
import { createRedisStore, type PartitionStore } from '../src/distributed/index.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';
import { webApp, webSignIn } from './helpers.js';
import { storeCipher, storeContract, storeSafetyContract, type StoreSubject } from './store-contract.js';

let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
beforeAll(async () => { cluster = await startRedisCluster(); }, 60_000);
afterAll(async () => { await cluster?.stop(); });

/** Flips a byte of a stored blob and gives it a new version (as any write does), with the client's own commands. */
async function tamperWith(hget: (key: string) => Promise<string | null>, hset: (key: string, fields: Record<string, string>) => Promise<unknown>,
  partitionKey: string) {
  const key = `msal-cache:${partitionKey}`;
  const bytes = Buffer.from((await hget(key))!, 'base64');
  bytes[bytes.length - 3]! ^= 0xff;
  await hset(key, { d: bytes.toString('base64'), v: `tampered-${Date.now()}` });
}

describe('Redis Cluster through node-redis createCluster (real 3-master cluster)', () => {
  let client: ReturnType<typeof createCluster>;
  let store: PartitionStore;
  beforeAll(async () => {
    client = createCluster({ rootNodes: cluster.nodes.map((n) => ({ url: `redis://${n.host}:${n.port}` })) });
    client.on('error', () => undefined);
    await client.connect();
    store = createRedisStore({ client, timeoutMs: 5000 });
  });
  afterAll(async () => { await client?.close(); });
  const subject = (): StoreSubject => ({
    store,
    workerArgs: { redisCluster: JSON.stringify(cluster.nodes) },
    tamper: (key) => tamperWith((k) => client.hGet(k, 'd') as Promise<string | null>, (k, fields) => client.hSet(k, fields), key),
  });
  storeContract(subject, 'cluster-node-redis');
  storeSafetyContract(subject, 'cluster-node-redis');

  it('partitions spread over all three masters, and each is read back through the cluster', async () => {
    const endpoint = createTokenEndpoint();
    const keys = Array.from({ length: 30 }, (_, i) => `user:spread-${i}`);
    for (const key of keys) await webSignIn(webApp(store, storeCipher, key, endpoint), key);
    const slots = new Set(keys.map((key) => client.getSlotMaster(slotOf(`msal-cache:${key}`)).port));
    expect(slots.size).toBe(3);
    for (const key of keys) expect(await webApp(store, storeCipher, key, endpoint).getTokenCache().getAllAccounts()).toHaveLength(1);
  });
});

describe('Redis Cluster through ioredis Cluster (real 3-master cluster)', () => {
  let client: IORedisCluster;
  let store: PartitionStore;
  beforeAll(async () => {
    client = new IORedisCluster(cluster.nodes);
    client.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => { client.once('ready', resolve); client.once('error', reject); });
    store = createRedisStore({ client });
  });
  afterAll(async () => { client?.disconnect(); });
  const subject = (): StoreSubject => ({
    store,
    workerArgs: { redisCluster: JSON.stringify(cluster.nodes) },
    tamper: (key) => tamperWith((k) => client.hget(k, 'd'), (k, fields) => client.hset(k, fields), key),
  });
  storeContract(subject, 'cluster-ioredis');
  storeSafetyContract(subject, 'cluster-ioredis');
});

// CRC16/XMODEM of the key, mod 16384: the slot Redis Cluster puts a key without hash tag in.
function slotOf(key: string): number {
  let crc = 0;
  for (const byte of Buffer.from(key)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
