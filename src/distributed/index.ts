// msal-keychain-cache/distributed: caches for confidential clients (web apps, APIs, daemons), one
// encrypted blob per partition. A separate entry point so desktop apps and CLIs never load it.
export { BlobUnreadableError, createBlobCipher, type BlobCipher, type BlobCipherOptions, type OpenedBlob, type UnreadableReason } from './blob-cipher.js';
export { createFileStore, type FileStoreOptions } from './file-store.js';
export { keyFromPersistence, type KeyFromPersistenceOptions } from './os-key.js';
export { createPostgresStore, type PostgresStore, type PostgresStoreOptions, type SqlQueryable } from './postgres-store.js';
export { createRedisStore, type RedisClientLike, type RedisCommandClient, type RedisStoreOptions } from './redis-store.js';
export { createSessionStore, type SessionLike, type SessionStoreOptions } from './session-store.js';
export { createPartitionedCachePlugin, partitionKeys, type PartitionedCachePluginOptions } from './partitioned-plugin.js';
export { mergeCaches } from '../cache-json.js';
export type { PartitionStore, VersionedBlob } from './store.js';
