// The embedded store: one file per partition in a directory, written with the core's atomic replace
// under a per-partition lockfile, so several processes of one machine can share it with no server.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { KeychainCacheError, withTypedErrors } from '../errors.js';
import { acquireFileLock } from '../file-lock.js';
import { assertSafePath, ensureDirectory, randomHex, readBytesIfExists, writeFileAtomic } from '../files.js';
import { defaultTombstoneTtlMs, optionalDuration } from './checks.js';
import type { PartitionStore, VersionedBlob } from './store.js';

export interface FileStoreOptions {
  /** The directory (created 0700). Each partition is a file named by the SHA-256 of its key. */
  directory: string;
  /** How long a sign-out's tombstone stays (at least 1000 ms): longer than any request. Default 24 hours. */
  tombstoneTtlMs?: number;
  platform?: NodeJS.Platform;
}

// File: one JSON header line {"v": version, "exp": expiry ms or 0}, then the blob's bytes.
function parse(bytes: Buffer): { version: string; expires: number; value: Buffer } | undefined {
  const newline = bytes.indexOf(0x0a);
  if (newline < 0) return undefined;
  try {
    const header = JSON.parse(bytes.subarray(0, newline).toString('utf8')) as { v?: unknown; exp?: unknown };
    if (typeof header.v !== 'string' || typeof header.exp !== 'number') return undefined;
    return { version: header.v, expires: header.exp, value: bytes.subarray(newline + 1) };
  } catch {
    return undefined;
  }
}

export async function createFileStore(options: FileStoreOptions): Promise<PartitionStore & { pathFor(partitionKey: string): string }> {
  if (typeof options?.directory !== 'string' || options.directory === '') {
    throw new KeychainCacheError('INVALID_OPTION', 'createFileStore needs { directory }: a folder only this service account can read.');
  }
  const { directory } = options;
  const tombstoneTtlMs = optionalDuration(options.tombstoneTtlMs, 'tombstoneTtlMs', 1000,
    'It must outlast any request that reads a partition.') ?? defaultTombstoneTtlMs;
  const platform = options.platform ?? process.platform;
  await ensureDirectory(directory);
  await assertSafePath(directory);
  const pathFor = (partitionKey: string) => {
    if (typeof partitionKey !== 'string' || partitionKey === '') {
      throw new KeychainCacheError('INVALID_OPTION', `A partition key is a non-empty string (partitionKeys.forAccount(...)); got ${typeof partitionKey}.`);
    }
    return join(directory, `${createHash('sha256').update(partitionKey).digest('hex')}.bin`);
  };

  const read = async (path: string): Promise<VersionedBlob | null> => {
    const bytes = await readBytesIfExists(path);
    if (bytes === null) return null;
    const parsed = parse(bytes);
    // An unparseable file is handed on as a blob the cipher will refuse: treated as corruption upstream (an
    // empty one is nothing: an empty value means a tombstone).
    if (!parsed) return bytes.length === 0 ? null : { value: bytes, version: `unparsed-${bytes.length}` };
    if (parsed.expires !== 0 && parsed.expires <= Date.now()) return null;
    return { value: parsed.value, version: parsed.version };
  };

  const put = async (path: string, value: Buffer, ttlMs: number | undefined): Promise<string> => {
    const version = randomHex(12);
    const header = Buffer.from(`${JSON.stringify({ v: version, exp: ttlMs ? Date.now() + ttlMs : 0 })}\n`, 'utf8');
    await writeFileAtomic(path, Buffer.concat([header, value]), { platform });
    return version;
  };

  /** Runs `change` on one partition's file while holding that partition's lockfile. */
  const underLock = async <T>(path: string, change: (path: string) => Promise<T>): Promise<T> => {
    const release = await acquireFileLock(`${path}.lockfile`, { timeoutMs: 10_000 });
    try {
      return await change(path);
    } finally {
      await release();
    }
  };

  return withTypedErrors({
    pathFor,
    get: (partitionKey) => read(pathFor(partitionKey)),
    compareAndSet: (partitionKey, value, expectedVersion, ttlMs) => underLock(pathFor(partitionKey), async (path) => {
      const current = await read(path);
      if ((current?.version ?? null) !== expectedVersion) return null;
      return put(path, value, ttlMs);
    }),
    delete: (partitionKey) => underLock(pathFor(partitionKey), async (path) => {
      const current = await read(path);
      await put(path, Buffer.alloc(0), tombstoneTtlMs);
      return current !== null && current.value.length > 0;
    }),
  }, 'The file store');
}
