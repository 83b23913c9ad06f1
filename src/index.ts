export { createCachePlugin, KeychainCachePlugin } from './cache-plugin.js';
export { createPersistence, type BackendAttempt } from './create-persistence.js';
export { KeychainCacheError, isKeychainCacheError, errorCodes, type ErrorCode } from './errors.js';
export type { LockOptions } from './file-lock.js';
export type { CachePluginOptions, PersistenceOptions } from './options.js';
export type { BackendKind, Persistence } from './persistence/types.js';
export type { LoggerOptions } from './logger.js';
