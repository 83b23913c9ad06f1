export { createCachePlugin, KeychainCachePlugin, type CacheChange, type CacheChangeListener } from './cache-plugin.js';
export type { CachedAccount } from './cache-json.js';
export { createPersistence, type BackendAttempt } from './create-persistence.js';
export { KeychainCacheError, isKeychainCacheError, errorCodes, type ErrorCode } from './errors.js';
export type { LockOptions } from './file-lock.js';
export { defaultCachePath, type CachePluginOptions, type PersistenceOptions } from './options.js';
export type { BackendKind, DataProtectionScope, Persistence, SafeStorageLike, SaveOptions } from './persistence/types.js';
export type { LoggerOptions } from './logger.js';
