// The cache plugin for confidential clients (web apps, web APIs, daemons): one encrypted blob per
// partition (a user, an app's tenant, an OBO assertion) in a PartitionStore. msal-node's own
// DistributedCachePlugin has no concurrency control: two app instances refreshing one user's tokens
// overwrite each other. Here every write is a compare-and-set on the version that was read; on conflict
// the latest blob is reloaded, the two versions are merged entity by entity, and the write is retried.
import { createHash } from 'node:crypto';
import type { ICachePlugin, TokenCacheContext } from '@azure/msal-node';
import { accountsIn, mergeCaches, parseCacheJson } from '../cache-json.js';
import { isKeychainCacheError, KeychainCacheError } from '../errors.js';
import { createLogger, type LoggerOptions } from '../logger.js';
import type { BlobCipher } from './blob-cipher.js';
import type { PartitionStore } from './store.js';

export interface PartitionedCachePluginOptions {
  store: PartitionStore;
  /**
   * Whose cache this is: see `partitionKeys`. One plugin (and one msal client) per request. Leave it out on
   * the sign-in redirect, where the user is not known yet: the partition is then taken from the account the
   * sign-in wrote (`partitionKeys.forAccount`), as msal-node's IPartitionManager.extractKey would.
   */
  partitionKey?: string;
  /** AES-256-GCM per blob (createBlobCipher). Required unless allowPlaintext is true. */
  cipher?: BlobCipher;
  /** Store blobs unencrypted (only where the store itself is encrypted and private). Default false. */
  allowPlaintext?: boolean;
  /** Sliding expiry of the partition, renewed by every write. Default none. */
  ttlMs?: number;
  /** Compare-and-set attempts before giving up with STORE_FAILED. Default 20. */
  maxAttempts?: number;
  loggerOptions?: LoggerOptions;
}

/** Partition keys as msal-node's guidance defines them, prefixed so that kinds never collide. */
export const partitionKeys = {
  /** A signed-in user's cache: their `homeAccountId`. */
  forAccount: (account: { homeAccountId: string } | string) => `account:${typeof account === 'string' ? account : account.homeAccountId}`,
  /** App-only tokens (client credentials): `clientId.tenantId`. */
  forApp: (clientId: string, tenantId: string) => `app:${clientId}.${tenantId}`,
  /** On-behalf-of: a hash of the incoming assertion (never the assertion itself). */
  forOnBehalfOf: (assertion: string) => `obo:${createHash('sha256').update(assertion).digest('hex')}`,
};

export function createPartitionedCachePlugin(options: PartitionedCachePluginOptions): ICachePlugin & { readonly partitionKey: string | undefined } {
  const { store, cipher, ttlMs } = options;
  let partitionKey = options.partitionKey;
  if (!store || typeof store.get !== 'function' || typeof store.compareAndSet !== 'function') {
    throw new KeychainCacheError('INVALID_OPTION', 'store must be a PartitionStore (createFileStore, createRedisStore, createPostgresStore).');
  }
  if (partitionKey !== undefined && (typeof partitionKey !== 'string' || partitionKey === '')) {
    throw new KeychainCacheError('INVALID_OPTION', 'partitionKey must be a non-empty string: partitionKeys.forAccount(account) for a user, ' +
      'forApp(...) for app tokens; or leave it out on the sign-in redirect.');
  }
  if (!cipher && options.allowPlaintext !== true) {
    throw new KeychainCacheError('PLAINTEXT_NOT_ALLOWED', 'Token caches would be stored unencrypted: pass cipher: createBlobCipher({ keys, currentKeyId }), ' +
      'or allowPlaintext: true if the store is private and encrypted itself.');
  }
  const logger = createLogger(options.loggerOptions);
  const maxAttempts = options.maxAttempts ?? 20;
  const seal = (text: string, key: string) => (cipher ? cipher.seal(text, key) : Buffer.from(text, 'utf8'));

  // What this plugin read last: the text MSAL was given, the version to compare against, and whether the
  // blob was sealed with an old key (then it is rewritten on the next access).
  let baseText = '{}';
  let version: string | null = null;
  let stale = false;

  // The blob this plugin last decrypted, by partition and version: a request touches the cache several
  // times (accounts, then the token), and an unchanged version needs no second decryption.
  let opened: { key: string; version: string; text: string; stale: boolean } | undefined;

  const load = async (key: string): Promise<void> => {
    const stored = await store.get(key);
    if (stored && opened && opened.key === key && opened.version === stored.version) {
      ({ version, text: baseText, stale } = opened);
      return;
    }
    version = stored?.version ?? null;
    stale = false;
    baseText = '{}';
    if (!stored) return;
    try {
      const blob = cipher ? cipher.open(stored.value, key) : { text: stored.value.toString('utf8'), stale: false };
      // Checked by MSAL's own parse in apply(): one parse per request, not two.
      baseText = blob.text;
      stale = blob.stale;
      opened = { key, version: stored.version, text: blob.text, stale: blob.stale };
    } catch (error) {
      if (!isKeychainCacheError(error, 'DECRYPT_FAILED')) throw error;
      // Tampered, damaged, or a key that is gone: like corruption, the user signs in again; no crash.
      logger.warning(`DECRYPT_FAILED: ${error.message}`);
      stale = true;
    }
  };

  /** Hands MSAL the loaded cache; a blob that decrypted but is not a cache MSAL can read starts empty. */
  const apply = (context: TokenCacheContext): void => {
    try {
      context.tokenCache.deserialize(baseText);
    } catch (error) {
      logger.warning(`The cache of one partition could not be read by MSAL (${error instanceof Error ? error.name : 'error'}, ` +
        `${baseText.length} characters); it starts empty and is replaced on the next write.`);
      baseText = '{}';
      stale = true;
      context.tokenCache.deserialize(baseText);
    }
  };

  return {
    get partitionKey() { return partitionKey; },
    async beforeCacheAccess(context: TokenCacheContext) {
      if (partitionKey === undefined) {
        // Sign-in redirect: nobody's partition yet; the write below finds it.
        baseText = '{}';
        version = null;
        stale = false;
      } else {
        await load(partitionKey);
        // Sliding expiry: a partition in use does not expire between writes.
        if (ttlMs && version !== null) await store.touch?.(partitionKey, ttlMs);
      }
      apply(context);
    },
    async afterCacheAccess(context: TokenCacheContext) {
      if (!context.cacheHasChanged && !stale) return;
      let ours = context.tokenCache.serialize();
      if (partitionKey === undefined) {
        const homeAccountId = [...(accountsIn(ours)?.values() ?? [])][0]?.homeAccountId;
        if (homeAccountId === undefined) {
          throw new KeychainCacheError('INVALID_OPTION', 'No partitionKey was given and the cache holds no account to take it from ' +
            '(app-only tokens need partitionKeys.forApp(clientId, tenantId)).');
        }
        partitionKey = partitionKeys.forAccount(homeAccountId);
        const empty = baseText;
        await load(partitionKey);
        ours = mergeCaches(empty, ours, baseText);
      }
      const key = partitionKey;
      for (let attempt = 1; attempt <= maxAttempts; attempt++) {
        const written = await store.compareAndSet(key, seal(ours, key), version, ttlMs);
        if (written !== null) {
          version = written;
          baseText = ours;
          stale = false;
          context.tokenCache.deserialize(ours);
          return;
        }
        // Another instance wrote in between: merge our changes into theirs and try again.
        const mine = ours;
        const base = baseText;
        await load(key);
        ours = mergeCaches(base, mine, baseText);
        logger.verbose(`Cache write conflict in one partition (attempt ${attempt}); merged and retrying.`);
      }
      throw new KeychainCacheError('STORE_FAILED', `Gave up writing one partition's cache after ${maxAttempts} conflicting writes ` +
        'by other instances. Nothing was lost from the store; this request\'s new tokens were not saved.');
    },
  };
}
