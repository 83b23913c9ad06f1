// A PartitionStore in Redis. Takes the app's own connected client (node-redis v4/v5 as is; ioredis
// through `{ sendCommand: (args) => redis.call(...args) }`): this package never imports a Redis client.
// Each partition is one hash key { v: version, d: base64 blob }; compare-and-set is one Lua script on that
// single key, so it is atomic, and it works unchanged on Redis Cluster (one key = one slot, no hash tags).
import { KeychainCacheError } from '../errors.js';
import { randomHex } from '../files.js';
import type { PartitionStore } from './store.js';

export interface RedisCommandClient {
  sendCommand(args: string[]): Promise<unknown>;
}

export interface RedisStoreOptions {
  client: RedisCommandClient;
  /** Prefix of every key. Default `'msal-cache:'`. */
  keyPrefix?: string;
  /** Fail a command with STORE_FAILED after this long (a client queues commands while Redis is down). Default 5000. */
  timeoutMs?: number;
}

// KEYS[1] key; ARGV: expected version ('' = nothing stored), new version, base64 data, TTL ms ('0' = none).
const compareAndSetScript = `
local current = redis.call('HGET', KEYS[1], 'v')
if (current or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) else redis.call('PERSIST', KEYS[1]) end
return 1`;

export function createRedisStore(options: RedisStoreOptions): PartitionStore {
  if (typeof options?.client?.sendCommand !== 'function') {
    throw new KeychainCacheError('INVALID_OPTION', 'createRedisStore needs { client }: a connected node-redis client ' +
      '(or an object with sendCommand(args: string[])).');
  }
  const { client } = options;
  const prefix = options.keyPrefix ?? 'msal-cache:';
  const timeoutMs = options.timeoutMs ?? 5000;

  const command = async (args: string[]): Promise<unknown> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        client.sendCommand(args),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (error) {
      throw new KeychainCacheError('STORE_FAILED', `Redis ${args[0]} failed (${error instanceof Error ? error.message : String(error)}). ` +
        'Check that Redis is running and reachable; the client reconnects by itself once it is.', { cause: error });
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    async get(partitionKey) {
      const reply = await command(['HMGET', prefix + partitionKey, 'v', 'd']) as [string | null, string | null];
      if (!Array.isArray(reply) || reply[0] === null || reply[1] === null) return null;
      return { version: String(reply[0]), value: Buffer.from(String(reply[1]), 'base64') };
    },
    async compareAndSet(partitionKey, value, expectedVersion, ttlMs) {
      const version = randomHex(12);
      const written = await command(['EVAL', compareAndSetScript, '1', prefix + partitionKey, expectedVersion ?? '', version,
        value.toString('base64'), String(ttlMs && ttlMs > 0 ? Math.ceil(ttlMs) : 0)]);
      return Number(written) === 1 ? version : null;
    },
    async delete(partitionKey) {
      return Number(await command(['DEL', prefix + partitionKey])) === 1;
    },
    async touch(partitionKey, ttlMs) {
      await command(['PEXPIRE', prefix + partitionKey, String(Math.ceil(ttlMs))]);
    },
  };
}
