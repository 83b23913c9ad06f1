// A PartitionStore in Redis. Takes the app's own connected client, and never imports a Redis client itself:
// - node-redis v4/v5 `createClient()`, as is;
// - node-redis `createCluster()`, as is (its sendCommand takes the key first, so it is recognised and called so);
// - node-redis `createSentinel()`, as is (its sendCommand takes isReadonly first: recognised by getMasterNode);
// - ioredis `new Redis()` (Sentinel too: `new Redis({ sentinels, name })`) or `new Redis.Cluster()`, as is (through its `call`);
// - anything else with `sendCommand(args: string[])`.
// Each partition is one hash key { v: version, d: base64 blob } ('' for a tombstone); compare-and-set and
// sign-out are Lua scripts on that single key, so they are atomic, and they work unchanged on Redis Cluster
// (one key = one slot, no hash tags). Every command goes to the key's master: a replica may lag behind a write.
import { performance } from 'node:perf_hooks';
import { KeychainCacheError, withTypedErrors } from '../errors.js';
import { randomHex } from '../files.js';
import { checkOptions, defaultTombstoneTtlMs, describeType, optionalDuration, optionalTimeout } from './checks.js';
import type { PartitionStore } from './store.js';

export interface RedisCommandClient {
  sendCommand(args: string[]): Promise<unknown>;
}

/** What createRedisStore takes as a client: see the top of this file. */
export type RedisClientLike =
  | RedisCommandClient
  | { sendCommand(firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>; getSlotMaster(slot: number): unknown }
  | { sendCommand(isReadonly: boolean | undefined, args: string[]): Promise<unknown>; getMasterNode(): unknown }
  | { call(command: string, ...args: string[]): Promise<unknown> };

export interface RedisStoreOptions {
  client: RedisClientLike;
  /** Prefix of every key. Default `'msal-cache:'`. */
  keyPrefix?: string;
  /**
   * Fail a command with STORE_FAILED after this long, at most a quarter of it later (a client queues commands while
   * Redis is down). A write that timed out has an unknown outcome: Redis may still apply it, and the next read sees
   * it. Default 5000.
   */
  timeoutMs?: number;
  /** How long a sign-out's tombstone stays (at least 1000 ms): longer than any request. Default 24 hours. */
  tombstoneTtlMs?: number;
}

// KEYS[1] key; ARGV: expected version ('' = nothing stored), new version, base64 data, TTL ms ('0' = none).
const compareAndSetScript = `
local current = redis.call('HGET', KEYS[1], 'v')
if (current or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) else redis.call('PERSIST', KEYS[1]) end
return 1`;

// KEYS[1] key; ARGV: the tombstone's version, its TTL ms. 1 when a live blob was there.
const signOutScript = `
local data = redis.call('HGET', KEYS[1], 'd')
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', '')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if data and data ~= '' then return 1 end
return 0`;

type Send = (key: string, args: string[]) => Promise<unknown>;

function sender(client: unknown): Send | undefined {
  if (typeof client !== 'object' || client === null) return undefined;
  const candidate = client as Record<string, unknown>;
  // node-redis cluster: sendCommand(firstKey, isReadonly, args); isReadonly false keeps reads on the master.
  if (typeof candidate.sendCommand === 'function' && typeof candidate.getSlotMaster === 'function') {
    const send = candidate.sendCommand as (key: string, readonly: boolean, args: string[]) => Promise<unknown>;
    return (key, args) => send.call(client, key, false, args);
  }
  // node-redis sentinel: sendCommand(isReadonly, args); false keeps every command on the master (with
  // replicaPoolSize > 0 a read-only one would go to a replica, which may lag behind a write).
  if (typeof candidate.sendCommand === 'function' && typeof candidate.getMasterNode === 'function') {
    const send = candidate.sendCommand as (readonly: boolean, args: string[]) => Promise<unknown>;
    return (_key, args) => send.call(client, false, args);
  }
  // ioredis (standalone and Cluster): call(command, ...args) routes by the command's keys.
  if (typeof candidate.call === 'function') {
    const call = candidate.call as (command: string, ...args: string[]) => Promise<unknown>;
    return (_key, [command, ...args]) => call.call(client, command!, ...args);
  }
  if (typeof candidate.sendCommand === 'function') {
    const send = candidate.sendCommand as (args: string[]) => Promise<unknown>;
    return (_key, args) => send.call(client, args);
  }
  return undefined;
}

/**
 * The client's error without what it attached of the command: ioredis puts the command's arguments (the key, and for
 * a write the sealed blob, or with allowPlaintext the token cache itself) on its reply errors. Name, message, code
 * and stack stay.
 */
function sanitized(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const copy = new Error(error.message);
  copy.name = error.name;
  if (error.stack !== undefined) copy.stack = error.stack;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') Object.assign(copy, { code });
  return copy;
}

const clientNeeded = 'a connected node-redis client or cluster (createClient / createCluster / createSentinel), an ioredis Redis or ' +
  'Cluster, or an object with sendCommand(args: string[])';

export function createRedisStore(options: RedisStoreOptions): PartitionStore {
  checkOptions(options, 'createRedisStore', ['client', 'keyPrefix', 'timeoutMs', 'tombstoneTtlMs'], `{ client }: ${clientNeeded}`);
  const send = sender(options.client);
  if (!send) {
    throw new KeychainCacheError('INVALID_OPTION', `createRedisStore needs { client }: ${clientNeeded}; got ${describeType(options.client)}` +
      `${typeof options.client === 'object' && options.client !== null ? ' with none of sendCommand and call' : ''}.`);
  }
  const prefix = options.keyPrefix ?? 'msal-cache:';
  if (typeof prefix !== 'string') throw new KeychainCacheError('INVALID_OPTION', `keyPrefix must be a string, e.g. 'my-app:msal:'; got ${describeType(prefix)}.`);
  const timeoutMs = optionalTimeout(options.timeoutMs, 'timeoutMs', 5000);
  const tombstoneTtlMs = optionalDuration(options.tombstoneTtlMs, 'tombstoneTtlMs', 1000,
    'It must outlast any request that reads a partition.') ?? defaultTombstoneTtlMs;

  const fail = (args: string[], error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    // A reply error (WRONGTYPE, OOM, READONLY, NOPERM...) is Redis refusing the command, not Redis being away.
    const refused = error instanceof Error && /ReplyError|ErrorReply/.test(error.name);
    return new KeychainCacheError('STORE_FAILED', `Redis ${args[0]} failed (${message}). ` + (refused
      ? 'Redis refused it: WRONGTYPE means other data uses keys under this keyPrefix (choose another), OOM a full ' +
        'maxmemory, READONLY a replica where the master was expected, NOPERM an ACL without this command.'
      : 'Check that Redis is running and reachable; the client reconnects by itself once it is.'), { cause: sanitized(error) });
  };
  // One watchdog timer for every command in flight, not a timer and a Promise.race per command: those cost ~5% of
  // a web request's time (measured in `npm run bench -- --only distributed`). A stalled command fails between
  // timeoutMs and 1.25 x timeoutMs after it was sent. While a command is in flight the timer keeps the process
  // alive, as a per-command timer would (a client with an unreferenced socket, or one that never answers, must
  // still get its answer or STORE_FAILED, not an exit with the write untold); idle, it does not, and it stops.
  const inFlight = new Set<{ sentAt: number; expire: () => void }>();
  let watchdog: NodeJS.Timeout | undefined;
  const settled = () => { if (inFlight.size === 0) watchdog?.unref(); };
  const watch = () => {
    const now = performance.now();
    for (const pending of inFlight) if (now - pending.sentAt >= timeoutMs) pending.expire();
    if (inFlight.size === 0) {
      clearInterval(watchdog);
      watchdog = undefined;
    }
  };
  const command = (key: string, args: string[]): Promise<unknown> => new Promise((resolve, reject) => {
    const pending = {
      sentAt: performance.now(),
      expire: () => {
        inFlight.delete(pending);
        settled();
        reject(fail(args, new Error(`no answer within ${timeoutMs} ms`)));
      },
    };
    inFlight.add(pending);
    if (watchdog === undefined) watchdog = setInterval(watch, Math.max(1, Math.ceil(timeoutMs / 4)));
    else if (inFlight.size === 1) watchdog.ref();
    let sent: Promise<unknown>;
    try {
      sent = Promise.resolve(send(key, args));
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then(
      (reply) => { if (inFlight.delete(pending)) { settled(); resolve(reply); } },
      (error: unknown) => { if (inFlight.delete(pending)) { settled(); reject(fail(args, error)); } },
    );
  });
  const text = (value: unknown) => (Buffer.isBuffer(value) ? value.toString('utf8') : String(value));

  return withTypedErrors({
    async get(partitionKey) {
      const key = prefix + partitionKey;
      const reply = await command(key, ['HMGET', key, 'v', 'd']) as [unknown, unknown];
      if (!Array.isArray(reply) || reply[0] === null || reply[0] === undefined || reply[1] === null || reply[1] === undefined) return null;
      return { version: text(reply[0]), value: Buffer.from(text(reply[1]), 'base64') };
    },
    async version(partitionKey) {
      const key = prefix + partitionKey;
      const reply = await command(key, ['HGET', key, 'v']);
      return reply === null || reply === undefined ? null : text(reply);
    },
    async compareAndSet(partitionKey, value, expectedVersion, ttlMs) {
      const key = prefix + partitionKey;
      const version = randomHex(12);
      const written = await command(key, ['EVAL', compareAndSetScript, '1', key, expectedVersion ?? '', version,
        value.toString('base64'), String(ttlMs && ttlMs > 0 ? Math.ceil(ttlMs) : 0)]);
      return Number(written) === 1 ? version : null;
    },
    async delete(partitionKey) {
      const key = prefix + partitionKey;
      return Number(await command(key, ['EVAL', signOutScript, '1', key, randomHex(12), String(tombstoneTtlMs)])) === 1;
    },
    async touch(partitionKey, ttlMs) {
      const key = prefix + partitionKey;
      await command(key, ['PEXPIRE', key, String(Math.ceil(ttlMs))]);
    },
  }, 'The Redis store');
}
