// Every file this package writes goes through here: atomic replace, 0600 files, 0700 directories we
// create, and refusal of symlinked or foreign-owned cache paths.
import { constants as fsConstants, promises as fs, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { KeychainCacheError, systemErrorCode } from './errors.js';

export const fileMode = 0o600;
export const directoryMode = 0o700;

// O_NOFOLLOW does not exist on Windows; there symlinks are refused by the lstat check alone.
const noFollow = fsConstants.O_NOFOLLOW ?? 0;

/**
 * Checks a path we are about to use: it must not be a symlink, and on POSIX it must belong to us.
 * A missing path is fine.
 */
export async function assertSafePath(path: string): Promise<void> {
  let stats;
  try {
    stats = await fs.lstat(path);
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return;
    throw error;
  }
  if (stats.isSymbolicLink()) {
    throw new KeychainCacheError('UNSAFE_PATH',
      `Refusing to use ${path}: it is a symbolic link, which could send the token cache somewhere else. ` +
      'Point cachePath at a regular file in a directory only you can write.');
  }
  const uid = process.getuid?.();
  if (uid !== undefined && uid !== 0 && stats.uid !== uid) {
    throw new KeychainCacheError('UNSAFE_PATH',
      `Refusing to use ${path}: it belongs to user id ${stats.uid}, not to you (${uid}). ` +
      'Use a cachePath inside your own home directory.');
  }
}

/** Creates the directory (and missing parents) with mode 0700; an existing directory is left as it is. */
export async function ensureDirectory(directory: string): Promise<void> {
  try {
    await fs.mkdir(directory, { recursive: true, mode: directoryMode });
  } catch (error) {
    throw describeFileError(error, 'create the cache directory', directory);
  }
  const stats = await fs.lstat(directory);
  if (!stats.isDirectory()) {
    throw new KeychainCacheError('UNSAFE_PATH', `${directory} is not a directory (symlinks are refused). ` +
      'Choose a cachePath whose folder is a real directory.');
  }
}

/** Reads a whole file as UTF-8 without following a symlink; `null` when it does not exist. */
export async function readFileIfExists(path: string): Promise<string | null> {
  const bytes = await readBytesIfExists(path);
  return bytes === null ? null : bytes.toString('utf8');
}

/** Reads a whole file without following a symlink; `null` when it does not exist. */
export async function readBytesIfExists(path: string): Promise<Buffer | null> {
  let handle;
  try {
    handle = await fs.open(path, fsConstants.O_RDONLY | noFollow);
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return null;
    throw describeFileError(error, 'read', path);
  }
  try {
    return await handle.readFile();
  } catch (error) {
    throw describeFileError(error, 'read', path);
  } finally {
    await handle.close();
  }
}

/** A short identity of the file's current version: changes whenever it is replaced or written. */
export async function fileStamp(path: string): Promise<string> {
  try {
    // Synchronous on purpose: this runs on every silent token call, and a local stat (a few microseconds)
    // is far cheaper than a trip through libuv's thread pool (tens of microseconds).
    // Millisecond floats keep sub-microsecond precision; the bigint variant costs half again as much.
    const stats = statSync(path);
    return `${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return 'absent';
    throw describeFileError(error, 'inspect', path);
  }
}

let tempCounter = 0;
const queues = new Map<string, Promise<unknown>>();

export interface AtomicWriteOptions {
  /** Windows cannot rename over a file another process has open; retry briefly there. */
  platform?: NodeJS.Platform;
  /** fsync before the rename (default true). Off only for change markers, whose bytes carry no data. */
  durable?: boolean;
}

/**
 * Replaces `path` with `data` so that a reader sees the old or the new file, never a torn one, even if
 * the process dies mid-write: temp file in the same directory, fsync, rename. Writes to one path from
 * this process run in order.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const previous = queues.get(path) ?? Promise.resolve();
  const next = previous.catch(() => undefined).then(() => writeNow(path, data, options));
  queues.set(path, next);
  void next.finally(() => { if (queues.get(path) === next) queues.delete(path); }).catch(() => undefined);
  return next;
}

async function writeNow(path: string, data: string | Uint8Array, options: AtomicWriteOptions): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${++tempCounter}.tmp`);
  let renamed = false;
  try {
    const handle = await fs.open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | noFollow, fileMode);
    try {
      await handle.writeFile(data);
      if (options.durable !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    await renameWithRetry(temp, path, options.platform ?? process.platform);
    renamed = true;
  } catch (error) {
    const code = systemErrorCode(error);
    if ((options.platform ?? process.platform) === 'win32' && code && windowsBusyCodes.has(code)) {
      throw new KeychainCacheError('STORE_FAILED', `Could not replace ${path}: Windows kept it in use by another ` +
        `program for ${windowsRetryMs / 1000} s (${code}), e.g. an antivirus scan, a backup tool or a process reading ` +
        'it in a loop. The previous cache is intact; try again, or exclude the folder from real-time scanning.', { cause: error });
    }
    throw describeFileError(error, 'write', path);
  } finally {
    if (!renamed) await fs.unlink(temp).catch(() => undefined);
  }
}

const windowsBusyCodes = new Set(['EPERM', 'EBUSY', 'EACCES']);

// How long a Windows rename or delete keeps retrying while another program has the file open.
const windowsRetryMs = 3_000;

/**
 * Runs a file operation, retrying with short jittered waits for up to 3 s while Windows reports the file
 * busy: it refuses to replace (MoveFileEx) or delete a file another process has open, even with
 * FILE_SHARE_DELETE (readers, antivirus, indexers), so a gap between two opens has to be found.
 */
async function retryWhileBusy<T>(platform: NodeJS.Platform, run: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + windowsRetryMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      const code = systemErrorCode(error);
      if (platform !== 'win32' || !code || !windowsBusyCodes.has(code) || Date.now() >= deadline) throw error;
      await sleep(Math.min(2 ** attempt, 50) * (0.5 + Math.random()));
    }
  }
}

export function renameWithRetry(from: string, to: string, platform: NodeJS.Platform): Promise<void> {
  return retryWhileBusy(platform, () => fs.rename(from, to));
}

/** Deletes a file, retrying while Windows reports it busy; false when it was already gone. */
export async function unlinkWithRetry(path: string, platform: NodeJS.Platform = process.platform): Promise<boolean> {
  try {
    await retryWhileBusy(platform, () => fs.unlink(path));
    return true;
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

/** `<name>.corrupt-<time>`: how a moved-aside copy of unreadable cache bytes is named, for files and keyring items alike. */
export function corruptName(name: string): string {
  return `${name}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
}

/**
 * `bytes` random bytes as hex. Web Crypto's global is used instead of importing node:crypto, which costs
 * ~3.5 ms at import time: CLIs pay for every import, and most runs never write.
 */
export function randomHex(bytes: number): string {
  const buffer = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(buffer);
  return Buffer.from(buffer).toString('hex');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Turns a file-system error into a typed error that names the path and the fix. */
export function describeFileError(error: unknown, action: string, path: string): Error {
  if (error instanceof KeychainCacheError) return error;
  const code = systemErrorCode(error);
  if (code === 'EACCES' || code === 'EPERM') {
    return new KeychainCacheError('ACCESS_DENIED',
      `Could not ${action} ${path}: permission denied (${code}). Make sure the file and its directory belong to ` +
      'the user running this process and are writable by it, or choose another cachePath.', { cause: error });
  }
  if (code === 'ELOOP') {
    return new KeychainCacheError('UNSAFE_PATH',
      `Could not ${action} ${path}: it is a symbolic link, which is refused. Point cachePath at a regular file.`,
      { cause: error });
  }
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS') {
    return new KeychainCacheError('STORE_FAILED',
      `Could not ${action} ${path}: ${code === 'EROFS' ? 'the file system is read-only' : 'the disk is full'} (${code}). ` +
      'Free space or choose a cachePath on a writable disk.', { cause: error });
  }
  return new KeychainCacheError('STORE_FAILED', `Could not ${action} ${path} (${code ?? 'unknown error'}).`, { cause: error });
}
