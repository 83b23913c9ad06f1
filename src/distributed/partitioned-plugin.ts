// The cache plugin for confidential clients (web apps, web APIs, daemons): one encrypted blob per
// partition (a user, an app's tenant, an OBO assertion) in a PartitionStore. msal-node's own
// DistributedCachePlugin has no concurrency control: two app instances refreshing one user's tokens
// overwrite each other. Here every write is a compare-and-set on the version that was read; on conflict
// the latest blob is reloaded, the two versions are merged entity by entity, and the write is retried.
//
// What a request may do to the store:
// - A read never writes. A blob this instance cannot open is left as it is (during a key rotation another
//   instance can still read it); the request sees an empty cache.
// - A write (a new sign-in, a refresh) over a blob this instance cannot open first keeps its bytes aside, under
//   `<partition>#unreadable-<hash of the bytes>` with no expiry, then writes: a user can always sign in again,
//   and nothing is destroyed. A blob that names a key id this instance lacks is reported as the configuration
//   error it is (once per key id), never as corruption; reads leave it alone for the instances that have the key.
// - A sign-out (store.delete) leaves a tombstone. Every blob carries the sign-out it follows (its epoch), and a
//   client remembers the epoch it first read: a write whose request read before a sign-out is dropped, never
//   merged back, even when msal re-reads just before saving and the user has signed in again meanwhile.
import { createHash } from 'node:crypto';
import type { ICachePlugin, TokenCacheContext } from '@azure/msal-node';
import { accountsIn, mergeCaches, parseCacheJson, replaceMemory } from '../cache-json.js';
import { asKeychainCacheError, isKeychainCacheError, KeychainCacheError } from '../errors.js';
import { createLogger, type Logger, type LoggerOptions } from '../logger.js';
import { type BlobCipher, type BlobUnreadableError, type UnreadableReason } from './blob-cipher.js';
import { checkLoggerOptions } from '../options.js';
import { checkOptions, describeType, got, optionalCount, optionalDuration, optionalFlag } from './checks.js';
import type { PartitionStore } from './store.js';

export interface PartitionedCachePluginOptions {
  store: PartitionStore;
  /**
   * Whose cache this is: see `partitionKeys`. A plugin with a partitionKey serves that partition only (one
   * plugin and one msal client per request). Leave it out on the sign-in redirect, where the user is not known
   * yet: each write then goes to the partition of the account it wrote (`partitionKeys.forAccount`), decided
   * per request, so one such plugin can serve every sign-in. A key built from a missing id (`account:undefined`,
   * `app:id.null`, `account:`) is refused with INVALID_OPTION: every request with that mistake would share it.
   */
  partitionKey?: string;
  /** AES-256-GCM per blob (createBlobCipher). Required unless allowPlaintext is true. */
  cipher?: BlobCipher;
  /** Store blobs unencrypted (only where the store itself is encrypted and private). Default false. */
  allowPlaintext?: boolean;
  /** Sliding expiry of the partition in ms (at least 1000), renewed by every read and write. Default none. */
  ttlMs?: number;
  /** Compare-and-set attempts before giving up with STORE_FAILED (1 to 1000). Default 20. */
  maxAttempts?: number;
  /**
   * Decrypted partitions kept in this process (0 to 100000), each used only while the store still has the same
   * version (one small version read per access instead of the blob and its decryption). Default 1000.
   */
  memoryEntries?: number;
  loggerOptions?: LoggerOptions;
}

// A key built from a value that was missing or of the wrong type: `account:${undefined}`, `app:${id}.${null}`,
// `account:${{}}`. Every request with that mistake would share the one partition (and its tokens), so such keys are
// refused: by the helpers below, by the plugin at creation (partitionKey) and per request (the account a sign-in
// wrote). How strict: a segment (between ':' and '.') that is exactly what JavaScript writes for a missing or wrong
// value (undefined, null, NaN, [object Object]), a key that ends in ':' or '.' (a prefix with an empty id), and an
// empty or blank key. Every other key stays valid as it was ('p', 'user:42', 'account:<oid>.<tid>', your own formats).
const placeholders = ['undefined', 'null', 'NaN', '[object Object]'];
const placeholder = /(^|[:.])(undefined|null|NaN|\[object Object\])($|[:.])/;

/** Why `key` cannot be a partition key, or undefined when it can. */
function partitionKeyProblem(key: unknown): string | undefined {
  if (typeof key !== 'string') return `it is ${describeType(key)}, not a string`;
  if (key.trim() === '') return 'it is empty';
  const found = placeholder.exec(key);
  if (found) return `'${found[2]}' in it is what JavaScript writes for a missing value, so every request with that mistake would share one partition`;
  if (/[:.]$/.test(key)) return 'it ends with an empty id, so every request whose id is missing would share one partition';
  return undefined;
}

/** `value` as an id for a partition key helper (a non-empty string that is no placeholder), or INVALID_OPTION naming the helper and the fix. */
function idFor(value: unknown, helper: string, what: string, fix: string): string {
  if (typeof value === 'string' && value.trim() !== '' && partitionKeyProblem(`id:${value}`) === undefined) return value;
  const problem = typeof value !== 'string' || value.trim() === '' ? got(value)
    : `'${value.slice(0, 40)}', which holds what JavaScript writes for a missing value (undefined, null, NaN, [object Object]) or ends with an empty id`;
  throw new KeychainCacheError('INVALID_OPTION', `partitionKeys.${helper} needs ${what}, a non-empty string; got ${problem}. ${fix}`);
}

const noAccount = 'No signed-in account? Do not build a partition key before sign-in: on the sign-in redirect leave partitionKey out ' +
  '(the plugin files the cache under the account that signed in), and afterwards use the homeAccountId kept in the session ' +
  '(result.account.homeAccountId).';

/**
 * Partition keys as msal-node's guidance defines them, prefixed so that kinds never collide. Each helper checks its
 * input and throws INVALID_OPTION for a missing, empty or non-string id: a key such as `account:undefined` would give
 * every request with that mistake one shared partition.
 */
export const partitionKeys = {
  /** A signed-in user's cache: their `homeAccountId` (an AccountInfo, or the id itself). */
  forAccount(account: { homeAccountId: string } | string): string {
    if (typeof account === 'object' && account !== null && !Array.isArray(account)) {
      const id = (account as { homeAccountId?: unknown }).homeAccountId;
      if (id === undefined) {
        throw new KeychainCacheError('INVALID_OPTION', `partitionKeys.forAccount got an object with no homeAccountId: no signed-in account there. ` +
          `Pass msal's AccountInfo (result.account) or its homeAccountId. ${noAccount}`);
      }
      return `account:${idFor(id, 'forAccount', "the account's homeAccountId", noAccount)}`;
    }
    return `account:${idFor(account, 'forAccount', "the signed-in account (its AccountInfo) or its homeAccountId", noAccount)}`;
  },
  /** App-only tokens (client credentials): `clientId.tenantId`. */
  forApp(clientId: string, tenantId: string): string {
    const fix = 'Pass the app\'s client id and the tenant id (GUID or domain) its app-only tokens are for: forApp(clientId, tenantId).';
    return `app:${idFor(clientId, 'forApp', 'clientId', fix)}.${idFor(tenantId, 'forApp', 'tenantId', fix)}`;
  },
  /** On-behalf-of: a hash of the incoming assertion (never the assertion itself). */
  forOnBehalfOf(assertion: string): string {
    // Only the whole string is checked: an assertion is hashed, and a token's own text is never inspected or shown.
    if (typeof assertion !== 'string' || assertion.trim() === '' || placeholders.includes(assertion.trim())) {
      throw new KeychainCacheError('INVALID_OPTION', 'partitionKeys.forOnBehalfOf needs the incoming assertion (the access token the API ' +
        `received), a non-empty string; got ${typeof assertion === 'string' && assertion.trim() !== '' ? `'${assertion}'` : got(assertion)}. ` +
        "Pass the bearer token from the request's Authorization header, as given to acquireTokenOnBehalfOf.");
    }
    return `obo:${createHash('sha256').update(assertion).digest('hex')}`;
  },
};

/** A partition as one access found it. */
interface Loaded {
  /** The version a compare-and-set must match (null: nothing stored). */
  version: string | null;
  /** The cache text for MSAL ('{}' when there is none, or it is unreadable here). */
  text: string;
  /** The sign-out this partition's content follows ('' for none): a tombstone's version, inherited by later writes. */
  epoch: string;
  tombstone: boolean;
  unreadable?: { reason: UnreadableReason; bytes: Buffer };
}

/** What an access finds where nothing is stored (never mutated: shared by every access). */
const nothingStored: Loaded = Object.freeze({ version: null, text: '{}', epoch: '', tombstone: false });

// Sealed text: an optional first line naming the epoch, then msal's JSON (which never starts with this).
const epochPrefix = 'mkc-epoch:';
const withEpoch = (text: string, epoch: string) => (epoch === '' ? text : `${epochPrefix}${epoch}\n${text}`);
function splitEpoch(text: string): { epoch: string; text: string } {
  if (!text.startsWith(epochPrefix)) return { epoch: '', text };
  const newline = text.indexOf('\n');
  return newline < 0 ? { epoch: '', text } : { epoch: text.slice(epochPrefix.length, newline), text: text.slice(newline + 1) };
}

/** Decrypted partitions by store and partition key, shared by every plugin of the process over that store. */
interface Remembered { version: string; text: string; epoch: string; opener: BlobCipher | undefined }
const remembered = new WeakMap<PartitionStore, Map<string, Remembered>>();

/** Unknown key ids already reported, per cipher: a configuration error is logged once, not per request. */
const reportedKeyIds = new WeakMap<object, Set<string>>();
const plaintextOpener = {};

/** What one msal client (TokenCache) did with its plugin: the plugin (`owner`) whose accesses these are. */
interface ClientState {
  owner: object;
  /** What the client's last access read (or its last write stored). */
  read: Loaded | undefined;
  /** The epoch the client's memory comes from: its first read, or its last write (msal reads again right before it
   *  saves, and a sign-out between a request's first read and that save must still drop the request's write). */
  origin: string | undefined;
  /** The version the client's msal memory holds exactly: a request reads several times (accounts, then the token),
   *  and an unchanged version needs no second parse. */
  inMemory: string | undefined;
  /** Whether msal's memory may hold anything (then it is cleared before it is filled again). */
  filled: boolean;
}
const clients = new WeakMap<object, ClientState>();

export function createPartitionedCachePlugin(options: PartitionedCachePluginOptions): ICachePlugin & { readonly partitionKey: string | undefined } {
  checkOptions(options, 'createPartitionedCachePlugin', ['store', 'partitionKey', 'cipher', 'allowPlaintext', 'ttlMs', 'maxAttempts', 'memoryEntries',
    'loggerOptions'], '{ store, cipher, partitionKey }');
  const { store, cipher } = options;
  const fixedKey = options.partitionKey;
  if (!store || typeof store.get !== 'function' || typeof store.compareAndSet !== 'function') {
    throw new KeychainCacheError('INVALID_OPTION', 'store must be a PartitionStore (createFileStore, createRedisStore, createPostgresStore, createSessionStore).');
  }
  for (const method of ['delete', 'version', 'touch'] as const) {
    if (store[method] !== undefined && typeof store[method] !== 'function') {
      throw new KeychainCacheError('INVALID_OPTION', `store.${method} must be a function (or left out where optional); got ${describeType(store[method])}.`);
    }
  }
  const keyProblem = fixedKey === undefined ? undefined : partitionKeyProblem(fixedKey);
  if (keyProblem !== undefined) {
    throw new KeychainCacheError('INVALID_OPTION', `partitionKey ${typeof fixedKey === 'string' ? `'${fixedKey.slice(0, 60)}' ` : ''}cannot be used: ` +
      `${keyProblem}. Use partitionKeys.forAccount(account) for a signed-in user, forApp(clientId, tenantId) for app tokens, ` +
      'forOnBehalfOf(assertion) for on-behalf-of; or leave it out on the sign-in redirect.');
  }
  if (cipher !== undefined && (typeof cipher?.seal !== 'function' || typeof cipher?.open !== 'function')) {
    throw new KeychainCacheError('INVALID_OPTION', 'cipher must be a BlobCipher: createBlobCipher({ keys, currentKeyId }).');
  }
  const allowPlaintext = optionalFlag(options.allowPlaintext, 'allowPlaintext', false);
  if (!cipher && !allowPlaintext) {
    throw new KeychainCacheError('PLAINTEXT_NOT_ALLOWED', 'Token caches would be stored unencrypted: pass cipher: createBlobCipher({ keys, currentKeyId }), ' +
      'or allowPlaintext: true if the store is private and encrypted itself.');
  }
  const ttlMs = optionalDuration(options.ttlMs, 'ttlMs', 1000, 'It is the sliding expiry of a partition: 7 * 24 * 3600_000 for a week, or leave it out.');
  const maxAttempts = optionalCount(options.maxAttempts, 'maxAttempts', 20, 1, 1000);
  const memoryEntries = optionalCount(options.memoryEntries, 'memoryEntries', 1000, 0, 100_000);
  checkLoggerOptions(options.loggerOptions);
  const logger = createLogger(options.loggerOptions);
  const opener = cipher ?? (plaintextOpener as BlobCipher);
  let memory = remembered.get(store);
  if (!memory) remembered.set(store, memory = new Map());
  const partitions = memory;

  const seal = (text: string, key: string) => (cipher ? cipher.seal(text, key) : Buffer.from(text, 'utf8'));
  const open = (bytes: Buffer, key: string) => (cipher ? cipher.open(bytes, key).text : bytes.toString('utf8'));

  const rememberPartition = (key: string, entry: Remembered) => {
    if (memoryEntries === 0) return;
    partitions.delete(key);
    partitions.set(key, entry);
    // Oldest first: a Map iterates in insertion order, and a use re-inserts.
    while (partitions.size > memoryEntries) partitions.delete(partitions.keys().next().value!);
  };

  const load = async (key: string): Promise<Loaded> => {
    const known = memoryEntries > 0 ? partitions.get(key) : undefined;
    if (known && known.opener === opener && store.version) {
      // One small read says whether what this process decrypted is still what the store has.
      if ((await store.version(key)) === known.version) {
        rememberPartition(key, known);
        return { version: known.version, text: known.text, epoch: known.epoch, tombstone: false };
      }
    }
    const stored = await store.get(key);
    if (!stored) {
      partitions.delete(key);
      return nothingStored;
    }
    if (stored.value.length === 0) {
      partitions.delete(key);
      return { version: stored.version, text: '{}', epoch: stored.version, tombstone: true };
    }
    if (known && known.opener === opener && known.version === stored.version) {
      rememberPartition(key, known);
      return { version: known.version, text: known.text, epoch: known.epoch, tombstone: false };
    }
    try {
      const { epoch, text } = splitEpoch(open(stored.value, key));
      rememberPartition(key, { version: stored.version, text, epoch, opener });
      return { version: stored.version, text, epoch, tombstone: false };
    } catch (error) {
      // By code and fields, not class: a cipher from another copy of this package (or the app's own) says the same.
      if (!isKeychainCacheError(error, 'DECRYPT_FAILED')) throw error;
      const detail = error as Partial<BlobUnreadableError>;
      const reason: UnreadableReason = detail.reason === 'unknown-key' ? 'unknown-key' : 'corrupt';
      const keyId = typeof detail.keyId === 'string' ? detail.keyId : undefined;
      partitions.delete(key);
      reportUnreadable(logger, opener, reason, keyId, error.message);
      return {
        version: stored.version, text: '{}', epoch: '', tombstone: false,
        unreadable: { reason, bytes: stored.value },
      };
    }
  };

  /** Keeps the bytes of a blob this instance cannot open, before a write replaces them. */
  const beforeReplacing = async (key: string, loaded: Loaded): Promise<void> => {
    const unreadable = loaded.unreadable;
    if (!unreadable) return;
    // Named by the bytes' hash: a second, different damage is kept beside the first, the same one is kept once.
    const suffix = `#unreadable-${createHash('sha256').update(unreadable.bytes).digest('hex').slice(0, 32)}`;
    if ((await store.compareAndSet(key + suffix, unreadable.bytes, null)) === null) {
      const already = await store.get(key + suffix);
      if (!already || !already.value.equals(unreadable.bytes)) {
        throw new KeychainCacheError('STORE_FAILED', 'Not saved: the stored cache of this partition cannot be opened here, and its bytes ' +
          `could not be kept aside (partition key + '${suffix}' holds other bytes). Nothing was replaced.`);
      }
    }
    logger.warning(`${unreadable.reason === 'unknown-key' ? 'Key id not configured' : 'DECRYPT_FAILED'}: the stored cache of one partition ` +
      `could not be opened here; its bytes were kept aside as that partition key + '${suffix}' (no expiry: delete it once restored or ` +
      'no longer needed), and the partition is written anew.');
  };

  // Per msal client (its TokenCache; one plugin may serve several clients at once): what it read last, the epoch
  // its memory comes from, and which version that memory holds. In one module-level WeakMap, not maps per plugin:
  // a web app creates a plugin per request, and every WeakMap costs the garbage collector on each collection.
  const owner = {};
  const stateOf = (context: TokenCacheContext): ClientState => {
    let state = clients.get(context.tokenCache);
    if (state === undefined || state.owner !== owner) {
      state = { owner, read: undefined, origin: undefined, inMemory: undefined, filled: state !== undefined };
      clients.set(context.tokenCache, state);
    }
    return state;
  };

  /** Hands MSAL a cache; text MSAL cannot read starts empty (it is replaced on the next write). */
  const apply = (context: TokenCacheContext, state: ClientState, text: string, version?: string | null): void => {
    state.inMemory = undefined;
    try {
      // A client filled before is cleared first (msal's deserialize only adds); a new client's memory is empty.
      if (state.filled) replaceMemory(context, text);
      else context.tokenCache.deserialize(text);
      state.filled = true;
      if (version) state.inMemory = version;
    } catch (error) {
      logger.warning(`The cache of one partition could not be read by MSAL (${error instanceof Error ? error.name : 'error'}, ` +
        `${text.length} characters); it starts empty and is replaced on the next write.`);
      replaceMemory(context, '{}');
    }
  };

  const dropped = (context: TokenCacheContext, state: ClientState, latest: Loaded): void => {
    logger.info('The partition was signed out while this request used it; its changes are dropped (sign-out is final).');
    state.read = latest;
    state.origin = latest.tombstone ? latest.version! : latest.epoch;
    apply(context, state, latest.text);
  };

  const write = async (context: TokenCacheContext, state: ClientState, key: string, base: Loaded, ours: string, origin: string): Promise<void> => {
    let latest = base;
    let candidate = ours;
    let previous = base.text;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      // Signed out since this client's memory was read: a tombstone, or a sign-in after one.
      if (latest.tombstone ? latest.version !== origin : latest.epoch !== origin) return dropped(context, state, latest);
      // Nothing to keep: msal marks every save as a change, even one that stored nothing (a refresh of an account
      // that is gone); a tombstone stays a tombstone, with its expiry.
      if (latest.tombstone && !hasEntities(candidate)) return;
      await beforeReplacing(key, latest);
      const epoch = latest.tombstone ? latest.version! : latest.epoch;
      const written = await store.compareAndSet(key, seal(withEpoch(candidate, epoch), key), latest.version, ttlMs);
      if (written !== null) {
        rememberPartition(key, { version: written, text: candidate, epoch, opener });
        state.read = { version: written, text: candidate, epoch, tombstone: false };
        state.origin = epoch;
        apply(context, state, candidate, written);
        return;
      }
      // Another instance wrote in between: merge our changes into theirs and try again, unless it signed out.
      latest = await load(key);
      if (latest.tombstone ? latest.version !== origin : latest.epoch !== origin) return dropped(context, state, latest);
      candidate = mergeCaches(previous, candidate, latest.text);
      previous = latest.text;
      logger.verbose(`Cache write conflict in one partition (attempt ${attempt}); merged and retrying.`);
    }
    throw new KeychainCacheError('STORE_FAILED', `Gave up writing one partition's cache after ${maxAttempts} conflicting writes ` +
      'by other instances. Nothing was lost from the store; this request\'s new tokens were not saved.');
  };

  return {
    partitionKey: fixedKey,
    async beforeCacheAccess(context: TokenCacheContext) {
      try {
        await beforeAccess(context);
      } catch (error) {
        throw asKeychainCacheError(error, "Reading a partition's token cache");
      }
    },
    async afterCacheAccess(context: TokenCacheContext) {
      try {
        await afterAccess(context);
      } catch (error) {
        throw asKeychainCacheError(error, "Saving a partition's token cache");
      }
    },
  };

  async function beforeAccess(context: TokenCacheContext): Promise<void> {
    const state = stateOf(context);
    if (fixedKey === undefined) {
      // Sign-in: nobody's partition yet; the write finds it from the account it writes.
      state.read = nothingStored;
      apply(context, state, nothingStored.text);
      return;
    }
    const loaded = await load(fixedKey);
    state.read = loaded;
    state.origin ??= loaded.tombstone ? loaded.version! : loaded.epoch;
    // Sliding expiry: a partition in use does not expire between writes.
    if (ttlMs && loaded.version !== null && !loaded.tombstone) await store.touch?.(fixedKey, ttlMs);
    const live = loaded.version !== null && !loaded.tombstone && !loaded.unreadable ? loaded.version : undefined;
    // The same version as the client's memory holds already: nothing to hand over.
    if (live !== undefined && state.inMemory === live) return;
    apply(context, state, loaded.text, live);
  }

  async function afterAccess(context: TokenCacheContext): Promise<void> {
    // A read never writes: not an old key's blob (another instance may not have the new key yet), not an
    // unreadable one, not a tombstone.
    if (!context.cacheHasChanged) return;
    const state = stateOf(context);
    state.inMemory = undefined;
    const ours = context.tokenCache.serialize();
    const read = state.read ?? nothingStored;
    if (fixedKey !== undefined) return write(context, state, fixedKey, read, ours, state.origin ?? read.epoch);
    const homeAccountIds = new Set([...(accountsIn(ours)?.values() ?? [])].map((account) => account.homeAccountId));
    if (homeAccountIds.size !== 1) {
      throw new KeychainCacheError('INVALID_OPTION', homeAccountIds.size === 0
        ? 'No partitionKey was given and the cache holds no account to take it from (app-only tokens need partitionKeys.forApp(clientId, tenantId)).'
        : 'No partitionKey was given and this request wrote tokens of several accounts: give each request a plugin with its partitionKey.');
    }
    const homeAccountId = [...homeAccountIds][0]!;
    if (partitionKeyProblem(`account:${homeAccountId}`) !== undefined) {
      // Per request: a cache whose account has such an id would file every such sign-in under one shared partition.
      throw new KeychainCacheError('INVALID_OPTION', 'Not saved: no partitionKey was given and the account this request wrote has an empty ' +
        'or placeholder homeAccountId, which would be one partition shared by every such sign-in. Give the plugin a partitionKey.');
    }
    const key = partitionKeys.forAccount(homeAccountId);
    const latest = await load(key);
    return write(context, state, key, latest, mergeCaches(read.text, ours, latest.text), latest.tombstone ? latest.version! : latest.epoch);
  }
}

/** Whether a serialized cache holds any entity (an account, a token). */
function hasEntities(text: string): boolean {
  const parsed = parseCacheJson(text);
  return parsed === undefined || Object.values(parsed).some((section) => typeof section === 'object' && section !== null && Object.keys(section).length > 0);
}

function reportUnreadable(logger: Logger, opener: object, reason: UnreadableReason, keyId: string | undefined, message: string): void {
  if (reason === 'corrupt') {
    logger.warning(`DECRYPT_FAILED: ${message} This request sees no cache; the stored bytes are left as they are.`);
    return;
  }
  let reported = reportedKeyIds.get(opener);
  if (!reported) reportedKeyIds.set(opener, reported = new Set());
  const id = keyId ?? '';
  if (reported.has(id)) return;
  reported.add(id);
  logger.error(`Configuration error (logged once per key id): ${message} Until then, requests here see no cache for such ` +
    'partitions and leave them as they are; a sign-in here keeps their bytes aside before writing.');
}
