/** A stored blob and the version it must still have for a compare-and-set to succeed. */
export interface VersionedBlob {
  value: Buffer;
  version: string;
}

/**
 * Where a confidential client keeps one cache blob per partition (per user, per app tenant, per OBO
 * assertion). Every store gives the same small contract: get, compare-and-set on a version, delete, TTL.
 */
export interface PartitionStore {
  /** The blob, or null when there is none (or it expired). */
  get(partitionKey: string): Promise<VersionedBlob | null>;
  /**
   * Writes `value` only if the stored version is still `expectedVersion` (null: only if nothing is stored).
   * `ttlMs` (sliding) is renewed by every successful write. Returns the new version, or null on conflict.
   */
  compareAndSet(partitionKey: string, value: Buffer, expectedVersion: string | null, ttlMs?: number): Promise<string | null>;
  /** Removes the partition; false when there was none. */
  delete(partitionKey: string): Promise<boolean>;
  /** Renews a partition's expiry on a read (sliding TTL), where the store can do it cheaply. */
  touch?(partitionKey: string, ttlMs: number): Promise<void>;
}
