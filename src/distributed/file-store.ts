// The embedded store: one file per partition in a directory, written with the core's atomic replace
// under a per-partition lockfile, so several processes of one machine can share it with no server.
import { createHash } from 'node:crypto';
import { constants as fsConstants, promises as fs, Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { KeychainCacheError, systemErrorCode, withTypedErrors } from '../errors.js';
import { acquireFileLock } from '../file-lock.js';
import { assertSafeDirectory, directoryMode, explainDirectoryFailure, fileMode, randomHex, readBytesIfExists, writeFileAtomic } from '../files.js';
import { checkAbsolutePath } from '../options.js';
import { checkOptions, defaultTombstoneTtlMs, got, optionalDuration } from './checks.js';
import type { PartitionStore, VersionedBlob } from './store.js';

export interface FileStoreOptions {
  /**
   * The directory, an absolute path (created 0700 with any missing parents). Each partition is a file named by the
   * SHA-256 of its key. Checked at creation: a relative path or a leading `~` is refused (INVALID_OPTION), and one
   * this user cannot enter and write in fails there (ACCESS_DENIED, naming the component that refuses).
   */
  directory: string;
  /** How long a sign-out's tombstone stays (at least 1000 ms): longer than any request. Default 24 hours. */
  tombstoneTtlMs?: number;
  /** The platform whose file rules apply. Default `process.platform`. Tests pass other values. */
  platform?: NodeJS.Platform;
}

const platforms = ['aix', 'android', 'darwin', 'freebsd', 'haiku', 'linux', 'openbsd', 'sunos', 'win32', 'cygwin', 'netbsd'];
const directoryExample = "'/var/lib/my-web-app/token-caches', or path.join(os.homedir(), 'token-caches')";

/** `directory` as given, or INVALID_OPTION: like cachePath, an absolute path Node takes as it is, never relative or `~`. */
function checkDirectory(value: unknown, platform: NodeJS.Platform): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new KeychainCacheError('INVALID_OPTION', 'createFileStore needs { directory }: the absolute path of a folder only this service ' +
      `account can read, e.g. ${directoryExample}; got ${got(value)}.`);
  }
  checkAbsolutePath(value, 'directory', platform, 'a store of its own', {
    home: `Use an absolute path, e.g. path.join(os.homedir(), ${JSON.stringify(value.replace(/^~[\\/]*/, '') || 'token-caches')}).`,
    absolute: 'Use an absolute path',
  });
  return value;
}

// What src/files.ts says for a cachePath, said for this store's option: its fix is another `directory`.
const inStoreTerms: [RegExp, string][] = [
  [/Use a cachePath inside a directory you own, or give it/g, 'Set directory to a folder you own, or give it'],
  [/Choose a cachePath whose folder is a real directory\./g, 'Set directory to a real directory (not a file or a symbolic link).'],
  [/or choose a cachePath in a directory only you can write\./g, 'or set directory to a folder only you can write.'],
  [/Point cachePath at a regular file in a directory only you can write\./g, 'Set directory to a real directory only you can write.'],
  [/Point cachePath at a regular file\./g, 'Partition files must be regular files: remove the link.'],
  [/[Cc]hoose a cachePath whose folders are directories, e\.g\. defaultCachePath\('my-app'\)\./g, 'Choose a directory whose parents are all directories.'],
  [/[Cc]hoose a cachePath on a writable disk, e\.g\. defaultCachePath\('my-app'\)\./g, 'Choose a directory on a writable disk.'],
  [/a cachePath in a directory you own, e\.g\. defaultCachePath\('my-app'\)\./g, `a directory you own, e.g. ${directoryExample}.`],
  [/choose a cachePath on a writable disk/g, 'choose a directory on a writable disk'],
  [/(choose|Choose) another cachePath/g, '$1 another directory'],
  [/defaultCachePath\('my-app'\)/g, directoryExample],
  [/\bcachePath\b/g, 'directory'],
];

/** The same error with its fix in this store's terms (`directory`, not cachePath); anything else as it is. */
function inDirectoryTerms(error: unknown): unknown {
  if (!(error instanceof KeychainCacheError) || !error.message.includes('cachePath')) return error;
  const message = inStoreTerms.reduce((text, [pattern, replacement]) => text.replace(pattern, replacement), error.message);
  return new KeychainCacheError(error.code, message, error.cause === undefined ? undefined : { cause: error.cause });
}

/**
 * Creates `directory` and its missing parents (0700), one at a time, so that exactly what this call made is known;
 * a parent another process makes meanwhile (EEXIST) is theirs.
 */
async function makeDirectories(directory: string, made: string[]): Promise<void> {
  const missing: string[] = [];
  for (let current = directory; ; current = dirname(current)) {
    const found = await fs.lstat(current).then((stats) => stats, (error: unknown) => error);
    if (found instanceof Stats) {
      // A file where the directory should be: INVALID_OPTION, named (a symlink is refused as unsafe, next).
      if (current === directory && !found.isDirectory() && !found.isSymbolicLink()) {
        throw await explainDirectoryFailure(directory, Object.assign(new Error('not a directory'), { code: 'ENOTDIR' }), 'use the store directory');
      }
      break;
    }
    // A component that is a file (ENOTDIR) or cannot be entered (EACCES): named, with the fix.
    if (systemErrorCode(found) !== 'ENOENT') throw await explainDirectoryFailure(directory, found, 'inspect the store directory');
    missing.unshift(current);
    if (dirname(current) === current) break;
  }
  for (const path of missing) {
    try {
      await fs.mkdir(path, { mode: directoryMode });
      made.unshift(path);
    } catch (error) {
      if (systemErrorCode(error) !== 'EEXIST') throw await explainDirectoryFailure(directory, error, 'create the store directory');
    }
  }
}

/**
 * That this user can enter `directory` and write in it: access(2) as the kernel decides it (POSIX), then a probe
 * file made and removed (what a lock and a partition write need, on every OS, read-only mounts and ACLs included).
 */
async function probeWritable(directory: string): Promise<void> {
  const probe = join(directory, `.probe-${randomHex(8)}`);
  try {
    if (process.geteuid) await fs.access(directory, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK);
    const handle = await fs.open(probe, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, fileMode);
    await handle.close();
    await fs.unlink(probe);
  } catch (error) {
    await fs.unlink(probe).catch(() => undefined);
    throw await explainDirectoryFailure(directory, error, 'write in the store directory');
  }
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
  checkOptions(options, 'createFileStore', ['directory', 'tombstoneTtlMs', 'platform'],
    `{ directory }: the absolute path of a folder only this service account can read, e.g. ${directoryExample}`);
  if (options.platform !== undefined && !platforms.includes(options.platform)) {
    throw new KeychainCacheError('INVALID_OPTION', `platform must be one of ${platforms.join(', ')} (process.platform), or left out; got ${got(options.platform)}.`);
  }
  const platform = options.platform ?? process.platform;
  const directory = checkDirectory(options.directory, platform);
  const tombstoneTtlMs = optionalDuration(options.tombstoneTtlMs, 'tombstoneTtlMs', 1000,
    'It must outlast any request that reads a partition.') ?? defaultTombstoneTtlMs;
  // Checked now, not at the first sign-in: made if missing, ours and safe, and writable by this user. A creation that
  // fails removes the directories it made (only those, deepest first, and only while empty).
  const made: string[] = [];
  try {
    await makeDirectories(directory, made);
    await assertSafeDirectory(directory);
    await probeWritable(directory);
  } catch (error) {
    for (const path of made) if (!await fs.rmdir(path).then(() => true, () => false)) break;
    throw inDirectoryTerms(error);
  }
  const pathFor = (partitionKey: string) => {
    if (typeof partitionKey !== 'string' || partitionKey === '') {
      throw new KeychainCacheError('INVALID_OPTION', `A partition key is a non-empty string (partitionKeys.forAccount(...)); got ${got(partitionKey)}.`);
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

  // The file layer's errors name cachePath; here the fix is in terms of `directory`.
  const translated = <T>(run: () => Promise<T>): Promise<T> => run().catch((error: unknown) => { throw inDirectoryTerms(error); });

  return withTypedErrors({
    pathFor,
    get: (partitionKey) => translated(() => read(pathFor(partitionKey))),
    compareAndSet: (partitionKey, value, expectedVersion, ttlMs) => translated(() => underLock(pathFor(partitionKey), async (path) => {
      const current = await read(path);
      if ((current?.version ?? null) !== expectedVersion) return null;
      return put(path, value, ttlMs);
    })),
    delete: (partitionKey) => translated(() => underLock(pathFor(partitionKey), async (path) => {
      const current = await read(path);
      await put(path, Buffer.alloc(0), tombstoneTtlMs);
      return current !== null && current.value.length > 0;
    })),
  }, 'The file store');
}
