/** A stored blob and the version it must still have for a compare-and-set to succeed. */
export interface VersionedBlob {
  /** The blob; empty for a tombstone (a partition signed out: see `delete`). */
  value: Buffer;
  version: string;
}

/**
 * Where a confidential client keeps one cache blob per partition (per user, per app tenant, per OBO
 * assertion). Every store gives the same small contract: get, compare-and-set on a version, a versioned
 * delete, TTL. A store of your own must keep it exactly: the plugin's guarantees rest on it.
 */
export interface PartitionStore {
  /** The blob (empty for a tombstone), or null when there is none (or it expired). */
  get(partitionKey: string): Promise<VersionedBlob | null>;
  /**
   * Just the version `get` would return now (null when nothing is stored), where that costs less than the blob:
   * the plugin then reuses what it decrypted before. Optional.
   */
  version?(partitionKey: string): Promise<string | null>;
  /**
   * Writes `value` only if the stored version is still `expectedVersion` (null: only if nothing is stored; a
   * tombstone has a version like any blob). `ttlMs` (sliding) is renewed by every successful write. Returns the
   * new version, or null on conflict.
   */
  compareAndSet(partitionKey: string, value: Buffer, expectedVersion: string | null, ttlMs?: number): Promise<string | null>;
  /**
   * Signs the partition out: replaces whatever is stored with a tombstone (an empty value under a new version)
   * that expires after the store's tombstoneTtlMs, so a write that read the partition before cannot bring it
   * back. True when a live blob was there.
   */
  delete(partitionKey: string): Promise<boolean>;
  /** Renews a partition's expiry on a read (sliding TTL), where the store can do it cheaply. */
  touch?(partitionKey: string, ttlMs: number): Promise<void>;
}
