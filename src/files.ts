// Every file this package writes goes through here: atomic replace, 0600 files, 0700 directories we
// create, and refusal of symlinked, foreign-owned or group/other-writable cache paths.
import { accessSync, closeSync, constants as fsConstants, fstatSync, lstatSync, mkdirSync, promises as fs, openSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { KeychainCacheError, systemErrorCode } from './errors.js';

export const fileMode = 0o600;
export const directoryMode = 0o700;

// O_NOFOLLOW does not exist on Windows; there symlinks are refused by the lstat check alone.
const noFollow = fsConstants.O_NOFOLLOW ?? 0;
// A FIFO swapped in for a cache file would block a plain open until someone writes to it: open
// without blocking, then refuse anything that is not a regular file. No effect on regular files.
const noBlock = fsConstants.O_NONBLOCK ?? 0;

/**
 * The user whose files we accept: the effective uid (the one new files are created as); undefined on Windows,
 * where the profile's ACLs do this job.
 *
 * Root gets no exemption. A root process that trusts a directory another user owns is the classic confused
 * deputy: that user can swap the cache file or marker between our writes (feeding root tokens and accounts of
 * their choosing) or plant lockfiles and FIFOs that stall it. Root can still use any cache it owns; for a
 * shared volume owned by someone else the message says to chown it or run as its owner.
 */
function ownUid(): number | undefined {
  return process.geteuid?.();
}

let privateGroup: number | null | undefined;

/**
 * Our user private group, if we have one: our primary group, named like us, with no other member listed.
 * Debian, Ubuntu and Fedora give every user one and a umask of 002, so directories made by other tools
 * (msal-node-extensions, mkdir -p) are 0775: group-writable, yet by nobody but us. A group that is not
 * listed in /etc/group (LDAP, sssd) is not trusted, nor is a user not listed in /etc/passwd (our name is read there,
 * not through node:os, which msal-node does not load and an import would pay for). Read once per process.
 */
function ownPrivateGroup(): number | null {
  if (privateGroup !== undefined) return privateGroup;
  privateGroup = null;
  const gid = process.getegid?.();
  try {
    const uid = process.geteuid?.();
    const username = readFileSync('/etc/passwd').toString('utf8').split('\n').map((line) => line.split(':'))
      .find((fields) => /^\d+$/.test(fields[2] ?? '') && Number(fields[2]) === uid)?.[0];
    if (username === undefined) return privateGroup;
    for (const line of readFileSync('/etc/group').toString('utf8').split('\n')) {
      const [name, , id, members = ''] = line.split(':');
      if (id === undefined || Number(id) !== gid) continue;
      if (name === username && members.split(',').every((member) => member === '' || member === username)) privateGroup = gid;
      break;
    }
  } catch {
    // No /etc/group, or no name for our uid: no private group, group-writable directories are refused.
  }
  return privateGroup;
}

function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}

function assertOwned(path: string, stats: Stats, what: string): void {
  const uid = ownUid();
  if (uid === undefined || stats.uid === uid) return;
  throw new KeychainCacheError('UNSAFE_PATH',
    `Refusing to use ${what} ${path}: it belongs to user id ${stats.uid} (mode ${octal(stats.mode)}), not to you (user id ${uid}), ` +
    'so that user could replace or read what is stored there. Use a cachePath inside a directory you own, ' +
    `or give it to the user running this app (chown ${uid} ${JSON.stringify(path)}).`);
}

// The path checks (lstat, mkdir, access) are synchronous: on a local disk each is a few microseconds, where a trip
// through libuv's thread pool costs tens to hundreds (most of a CLI's start-up, issue 13); a network file system
// answers them from its attribute cache. Reading a file's content stays asynchronous (readBytesIfExists).

/**
 * A directory that holds a cache must be ours and writable only by us: whoever else can write in it can
 * rename our files away and put their own in their place. A sticky directory (like /tmp) is the exception
 * to "only by us": there nobody else may rename or delete what we created.
 */
function assertSafeDirectoryStats(directory: string, stats: Stats): void {
  if (!stats.isDirectory()) {
    throw new KeychainCacheError('UNSAFE_PATH', `${directory} is not a directory (symlinks are refused). ` +
      'Choose a cachePath whose folder is a real directory.');
  }
  if (ownUid() === undefined) return;
  assertOwned(directory, stats, 'the cache directory');
  const writableByOthers = (stats.mode & 0o002) !== 0 || ((stats.mode & 0o020) !== 0 && stats.gid !== ownPrivateGroup());
  const sticky = (stats.mode & 0o1000) !== 0;
  if (writableByOthers && !sticky) {
    throw new KeychainCacheError('UNSAFE_PATH',
      `Refusing to use the cache directory ${directory}: its mode is ${octal(stats.mode)} (group id ${stats.gid}), so other ` +
      'users can write in it and replace the cache with their own. Remove their write access ' +
      `(chmod go-w ${JSON.stringify(directory)}) ` +
      'or choose a cachePath in a directory only you can write.');
  }
}

/**
 * Checks a cache directory: a real directory (not a symlink), ours, and not writable by others unless sticky.
 * With `allowMissing`, a directory that does not exist passes (it is created again, 0700, at the next write).
 */
export async function assertSafeDirectory(directory: string, options: { allowMissing?: boolean } = {}): Promise<void> {
  let stats;
  try {
    stats = lstatSync(directory);
  } catch (error) {
    if (options.allowMissing && systemErrorCode(error) === 'ENOENT') return;
    throw describeFileError(error, 'inspect the cache directory', directory);
  }
  assertSafeDirectoryStats(directory, stats);
}

/**
 * Checks a path we are about to use: it must not be a symlink, and on POSIX it must belong to us (a
 * directory must also not be writable by others, see assertSafeDirectory). A missing path is fine.
 */
export async function assertSafePath(path: string): Promise<void> {
  let stats;
  try {
    stats = lstatSync(path);
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return;
    throw describeFileError(error, 'inspect', path);
  }
  if (stats.isSymbolicLink()) {
    throw new KeychainCacheError('UNSAFE_PATH',
      `Refusing to use ${path}: it is a symbolic link, which could send the token cache somewhere else. ` +
      'Point cachePath at a regular file in a directory only you can write.');
  }
  if (stats.isDirectory()) assertSafeDirectoryStats(path, stats);
  else assertOwned(path, stats, 'the file');
}

/**
 * Creates the directory (and missing parents) with mode 0700; an existing one is left as it is. Either way
 * it must then pass assertSafeDirectory.
 */
export async function ensureDirectory(directory: string): Promise<void> {
  await createDirectory(directory);
}

/** ensureDirectory, returning the first directory it created (the topmost), or undefined when all existed. */
export async function createDirectory(directory: string): Promise<string | undefined> {
  let created: string | undefined;
  try {
    created = mkdirSync(directory, { recursive: true, mode: directoryMode });
  } catch (error) {
    throw await diagnoseDirectory(directory) ?? describeFileError(error, 'create the cache directory', directory);
  }
  await assertSafeDirectory(directory);
  return created;
}

/**
 * Makes `cachePath` ready to be used, at creation, before anyone signs in: its directory exists (created 0700) and
 * is safe, this user can enter it and write in it (a directory that can be read but not written would lose every
 * sign-in at the first save, after the user finished signing in), and `cachePath` itself is not a directory, a
 * symlink or another user's file. Every backend calls it: the file backends keep the cache there, the keyring ones
 * their change marker.
 */
export async function prepareCacheLocation(cachePath: string): Promise<void> {
  await assertNotDirectory(cachePath);
  const directory = dirname(cachePath);
  // Twice at most: another process's failed creation may remove a directory it made between our mkdir and the
  // checks (it removes only what it made, and only while empty); made again, it is ours to use.
  for (let attempt = 1; ; attempt += 1) {
    try {
      await ensureDirectory(directory);
      // access(2), one syscall: rights as the kernel decides them (mode, ACLs, read-only mounts, immutable
      // attributes), not as the mode bits suggest. Not on Windows, where a directory's read-only attribute means
      // nothing to writes in it.
      if (ownUid() !== undefined) accessSync(directory, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK);
      await assertSafePath(cachePath);
      return;
    } catch (error) {
      const vanished = systemErrorCode(error) === 'ENOENT' || systemErrorCode((error as { cause?: unknown } | null)?.cause) === 'ENOENT';
      if (vanished && attempt < 2) continue;
      throw error instanceof KeychainCacheError ? error
        : await diagnoseDirectory(directory) ?? describeFileError(error, 'write in the cache directory', directory);
    }
  }
}

/**
 * Why a directory could not be created or used, typed as prepareCacheLocation reports it: the diagnosis of the
 * path when it finds the culprit, else the system error's own code.
 */
export async function explainDirectoryFailure(directory: string, error: unknown, action: string): Promise<KeychainCacheError> {
  const described = await diagnoseDirectory(directory) ?? describeFileError(error, action, directory);
  return described instanceof KeychainCacheError ? described : new KeychainCacheError('STORE_FAILED', described.message, { cause: error });
}

/** INVALID_OPTION when `cachePath` is an existing directory: cachePath names the cache file, not its folder. */
export async function assertNotDirectory(cachePath: string): Promise<void> {
  let stats: Stats | undefined;
  try {
    stats = lstatSync(cachePath, { throwIfNoEntry: false });
  } catch {
    // Another error (EACCES above it) is reported by the checks of the directory that follow.
  }
  if (stats?.isDirectory()) {
    throw new KeychainCacheError('INVALID_OPTION', `cachePath ${cachePath} is a directory; cachePath names the cache file ` +
      `itself. Use a file inside it (join(${JSON.stringify(cachePath)}, 'msal-cache.json')) or defaultCachePath('my-app').`);
  }
}

/**
 * Why `directory` cannot be created or used, found by walking down from the root: a path component that is a file
 * (INVALID_OPTION: the cachePath cannot exist), one this user may not enter, or the last existing one, in which the
 * missing rest cannot be created (ACCESS_DENIED, naming that component, its mode and owner, and the fix), or a
 * read-only file system (STORE_FAILED). Undefined when the walk finds nothing wrong.
 */
async function diagnoseDirectory(directory: string): Promise<KeychainCacheError | undefined> {
  const uid = ownUid();
  // The root ('/', 'C:\\') first, then each component below it.
  const root = directory.match(/^([a-zA-Z]:)?[\\/]*/)?.[0] ?? '';
  const components = directory.slice(root.length).split(/[\\/]+/).filter(Boolean);
  let current = root;
  let parent: { path: string; stats: Stats } | undefined;
  const ownerBits: Record<string, number> = { 'u+x': 0o100, 'u+wx': 0o300, 'u+rwx': 0o700 };
  const denied = async (path: string, stats: Stats, right: string, chmod: string) => {
    const needed = fsConstants.X_OK | (chmod.includes('w') ? fsConstants.W_OK : 0) | (chmod.includes('r') ? fsConstants.R_OK : 0);
    const errno = await fs.access(path, needed).then(() => undefined, (error: unknown) => systemErrorCode(error));
    // chmod helps only the owner, and only when the mode is what refuses; otherwise the kernel refused for another
    // reason (an immutable attribute, a security module, an ACL, a read-only mount).
    const chmodHelps = stats.uid === uid && (stats.mode & ownerBits[chmod]!) !== ownerBits[chmod];
    const fix = chmodHelps ? `Run chmod ${chmod} ${JSON.stringify(path)}, or choose`
      : stats.uid === uid ? 'Its mode allows it, so something else refuses (an immutable attribute: lsattr; a security module; ' +
        'an ACL: getfacl; a read-only mount). Remove that, or choose' : 'Choose';
    return new KeychainCacheError('ACCESS_DENIED',
      `The cache directory ${directory} cannot be used: ${path} (mode ${octal(stats.mode)}, owner user id ${stats.uid}) does not let ` +
      `this user${uid === undefined ? '' : ` (user id ${uid})`} ${right}${errno ? ` (${errno})` : ''}. ${fix} ` +
      "a cachePath in a directory you own, e.g. defaultCachePath('my-app').");
  };
  for (let index = 0; index <= components.length; index += 1) {
    if (index > 0) current = join(current, components[index - 1]!);
    if (current === '') continue;
    let stats: Stats;
    try {
      stats = await fs.stat(current);
    } catch (error) {
      const code = systemErrorCode(error);
      if (code === 'ENOTDIR') break; // reported below, at the component that is a file
      if (code !== 'ENOENT') return undefined;
      if (parent && uid !== undefined && await fs.access(parent.path, fsConstants.W_OK | fsConstants.X_OK).then(() => false, () => true)) {
        return readOnlyOr(parent.path, await denied(parent.path, parent.stats, `create ${current} in it`, 'u+wx'));
      }
      return undefined;
    }
    if (!stats.isDirectory()) {
      return new KeychainCacheError('INVALID_OPTION', `The cache directory ${directory} cannot exist: ${current} is a file, not a ` +
        "directory. Choose a cachePath whose folders are directories, e.g. defaultCachePath('my-app').");
    }
    if (uid !== undefined && await fs.access(current, fsConstants.X_OK).then(() => false, () => true)) {
      return denied(current, stats, 'enter it', 'u+x');
    }
    parent = { path: current, stats };
  }
  if (parent && uid !== undefined && parent.path === directory &&
    await fs.access(directory, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK).then(() => false, () => true)) {
    return readOnlyOr(directory, await denied(directory, parent.stats, 'read and write files in it: the cache could never be saved', 'u+rwx'));
  }
  return undefined;
}

/** STORE_FAILED when `path` is on a read-only file system (where no chmod helps), else `otherwise`. */
async function readOnlyOr(path: string, otherwise: KeychainCacheError): Promise<KeychainCacheError> {
  const probe = await fs.access(path, fsConstants.W_OK).then(() => undefined, (error: unknown) => systemErrorCode(error));
  if (probe !== 'EROFS') return otherwise;
  return new KeychainCacheError('STORE_FAILED', `The cache directory ${path} is on a read-only file system (EROFS). ` +
    "Choose a cachePath on a writable disk, e.g. defaultCachePath('my-app').");
}

/**
 * Runs `create`, which makes something at `path` (a temp file, a lockfile). When it fails with ENOENT because
 * the directory was deleted while the app ran (a user cleaning ~/.cache, a tmp reaper), the directory is
 * created again (0700, checked) and `create` runs once more.
 */
export async function withDirectoryRecreated<T>(path: string, create: () => Promise<T>): Promise<T> {
  try {
    return await create();
  } catch (error) {
    if (systemErrorCode(error) !== 'ENOENT') throw error;
    await ensureDirectory(dirname(path));
    return create();
  }
}

/** Reads a whole file as UTF-8 without following a symlink; `null` when it does not exist. */
export async function readFileIfExists(path: string): Promise<string | null> {
  const bytes = await readBytesIfExists(path);
  return bytes === null ? null : bytes.toString('utf8');
}

/**
 * Reads a whole file without following a symlink; `null` when it does not exist. Checked at every load, not
 * only when the store was created: the directory must still be safe, and the handle actually opened must be
 * a regular file we own, so a file swapped in after creation is refused before a byte of it is read. Its mode
 * is not checked: msal-node-extensions' files may be 0644 and must stay readable (our writes are 0600).
 */
export async function readBytesIfExists(path: string): Promise<Buffer | null> {
  const directory = dirname(path);
  let directoryStats;
  try {
    directoryStats = lstatSync(directory);
  } catch (error) {
    // A deleted cache directory holds no cache; the next write creates it again.
    if (systemErrorCode(error) === 'ENOENT') return null;
    throw describeFileError(error, 'inspect the cache directory', directory);
  }
  assertSafeDirectoryStats(directory, directoryStats);
  // Asynchronous, unlike the checks: it runs at every reload and every file-store request, and an open or read on a
  // network file system (NFS, SMB) can take the server's time, which must not stop the event loop.
  let handle;
  try {
    handle = await fs.open(path, fsConstants.O_RDONLY | noFollow | noBlock);
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return null;
    throw describeFileError(error, 'read', path);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      throw new KeychainCacheError('UNSAFE_PATH', `Refusing to read ${path}: it is not a regular file. ` +
        'Remove it (the cache is written again at the next sign-in) or choose another cachePath.');
    }
    assertOwned(path, stats, 'the cache file');
    return await handle.readFile();
  } catch (error) {
    throw describeFileError(error, 'read', path);
  } finally {
    // The bytes are read; a failing close (EIO) changes nothing about them.
    await handle.close().catch(() => undefined);
  }
}

/** The fields of a stat that make up a change token: equal fields, equal token (and the same string is reused). */
function sameStat(a: Stats, b: Stats): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

// The last stat and token of each path fileStamp looked at, so that an unchanged file costs the stat and no
// formatting of four floats (bounded: the oldest paths are forgotten first).
const lastStamps = new Map<string, { stats: Stats; token: string }>();

/**
 * A short identity of the file's current version: changes whenever it is replaced or written. Our writes
 * give every version a later mtime than the one it replaces (see stampNewVersion), so this cannot repeat
 * even when the file system reuses the inode within one timestamp tick and the size stays the same.
 *
 * One stat of the path on every call (the cache plugin asks at most once per turn of the event loop). Not an
 * fstat of a descriptor kept open, though that costs less: a descriptor keeps the file system busy (an unmount
 * fails) and cannot see a directory above the file renamed away and replaced, while the path can.
 */
export async function fileStamp(path: string): Promise<string> {
  let stats: Stats | undefined;
  try {
    // Synchronous on purpose: a local stat (a few microseconds) is far cheaper than a trip through libuv's thread
    // pool (tens of microseconds). Millisecond floats keep sub-microsecond precision; the bigint variant costs half
    // again as much. No exception for a missing file: building one costs more than the stat.
    stats = statSync(path, { throwIfNoEntry: false });
  } catch (error) {
    throw describeFileError(error, 'inspect', path);
  }
  if (stats === undefined) return 'absent';
  const last = lastStamps.get(path);
  if (last !== undefined && sameStat(stats, last.stats)) return last.token;
  const token = `${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
  if (last === undefined && lastStamps.size >= 256) lastStamps.delete(lastStamps.keys().next().value!);
  lastStamps.set(path, { stats, token });
  return token;
}

// Markers hold `{"version":"<32 hex>"}` and, from a Secret Service, the item's object path (~150 bytes with
// KeePassXC's); anything longer is cut here (the stat still covers it).
const markerReadBytes = 512;
const markerBuffer = Buffer.alloc(markerReadBytes);

// Longer than one timestamp tick: a file system whose times carry fractions of a second stamps to the kernel's
// coarse clock (a few ms); one with whole seconds (FAT 2 s, HFS+ and ext3 1 s) gets the coarsest tick and more.
const fineSettleMs = 100;
const coarseSettleMs = 3_000;

/**
 * A stamp function for a small marker file: its stat plus its content, a fresh random version on every save.
 * The marker keeps its size, and another process's saves need not go through our mtime stamping
 * (msal-node-extensions writes markers too), so the content is what makes the token exact.
 *
 * It runs on every silent token call, so the content is read only when the stat could hide a change: a marker
 * replaced (or rewritten) after our last read gets a ctime at or after that read (less one tick of the kernel's
 * coarse clock), which no one can set back; so once the ctime we saw is older than our last read by more than a
 * timestamp tick, an equal stat is the same version and the content read is skipped (one lstat, as for the file
 * backends; the read costs ~30 us of a silent call). Synchronous, like fileStamp. `onRead` gets each content read.
 */
export function markerStamper(path: string, onRead?: (content: string) => void): () => string {
  let lastStats: Stats | undefined;
  let lastToken = '';
  let lastReadAt = 0;
  return () => {
    let stats: Stats | undefined;
    try {
      stats = lstatSync(path, { throwIfNoEntry: false });
    } catch (error) {
      lastStats = undefined;
      throw describeFileError(error, 'inspect', path);
    }
    if (stats === undefined) {
      lastStats = undefined;
      onRead?.('');
      return 'absent';
    }
    const settleMs = stats.ctimeMs % 1000 === 0 ? coarseSettleMs : fineSettleMs;
    if (lastStats !== undefined && sameStat(stats, lastStats) && stats.ctimeMs < lastReadAt - settleMs) return lastToken;
    const readAt = Date.now();
    let fd;
    try {
      fd = openSync(path, fsConstants.O_RDONLY | noFollow | noBlock);
    } catch (error) {
      lastStats = undefined;
      if (systemErrorCode(error) === 'ENOENT') {
        onRead?.('');
        return 'absent';
      }
      throw describeFileError(error, 'inspect', path);
    }
    try {
      // What was opened, not what was looked at: it may have been replaced in between.
      const opened = fstatSync(fd);
      if (!opened.isFile()) {
        throw new KeychainCacheError('UNSAFE_PATH', `Refusing to read the change marker ${path}: it is not a regular file. ` +
          'Remove it (it is written again at the next save) or choose another cachePath.');
      }
      const length = readSync(fd, markerBuffer, 0, markerReadBytes, 0);
      const content = markerBuffer.toString('latin1', 0, length);
      lastStats = opened;
      lastToken = `${opened.ino}:${opened.size}:${opened.mtimeMs}:${opened.ctimeMs}:${content}`;
      onRead?.(content);
      lastReadAt = readAt;
      return lastToken;
    } catch (error) {
      lastStats = undefined;
      throw describeFileError(error, 'read', path);
    } finally {
      try {
        closeSync(fd);
      } catch {
        // Read already; a failing close (EIO) changes nothing about what was read.
      }
    }
  };
}

const queues = new Map<string, Promise<unknown>>();

export interface AtomicWriteOptions {
  /** Windows cannot rename over a file another process has open; retry briefly there. */
  platform?: NodeJS.Platform;
  /** fsync before the rename (default true). Off only for change markers, whose bytes carry no data. */
  durable?: boolean;
  /**
   * Runs after the new version is written and synced, right before the rename that publishes it; if it throws,
   * nothing is replaced and its error is thrown as it is. The cache plugin's lock fence goes here, so a holder
   * whose lock was broken while it was stopped learns it with only the rename left to do.
   */
  beforeRename?: () => Promise<void>;
}

/**
 * Replaces `path` with `data` so that a reader sees the old or the new file, never a torn one, even if
 * the process dies mid-write: temp file in the same directory, fsync, rename. Writes to one path from
 * this process run in order. A cache directory deleted meanwhile is created again.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const previous = queues.get(path) ?? Promise.resolve();
  const next = previous.catch(() => undefined).then(() => writeNow(path, data, options));
  queues.set(path, next);
  void next.finally(() => { if (queues.get(path) === next) queues.delete(path); }).catch(() => undefined);
  return next;
}

async function writeNow(path: string, data: string | Uint8Array, options: AtomicWriteOptions): Promise<void> {
  const platform = options.platform ?? process.platform;
  let temp: string | undefined;
  let renamed = false;
  try {
    const created = await withDirectoryRecreated(path, () => createTemp(path));
    temp = created.temp;
    try {
      await created.handle.writeFile(data);
      await stampNewVersion(created.handle, path);
      if (options.durable !== false) await created.handle.sync();
    } finally {
      await created.handle.close();
    }
    await options.beforeRename?.();
    await renameWithRetry(temp, path, platform);
    renamed = true;
  } catch (error) {
    const code = systemErrorCode(error);
    if (platform === 'win32' && code && windowsBusyCodes.has(code)) {
      throw new KeychainCacheError('STORE_FAILED', `Could not replace ${path}: Windows kept it in use by another ` +
        `program for ${windowsRetryMs / 1000} s (${code}), e.g. an antivirus scan, a backup tool or a process reading ` +
        'it in a loop. The previous cache is intact; try again, or exclude the folder from real-time scanning.', { cause: error });
    }
    throw describeFileError(error, 'write', path);
  } finally {
    // Only a temp file we created ourselves: a name that collided belongs to someone else.
    if (temp !== undefined && !renamed) await fs.unlink(temp).catch(() => undefined);
  }
}

/**
 * Creates `.<name>.<random>.tmp` next to `path` (exclusive, no symlink, 0600). Random, not pid + counter:
 * several copies of this code share one pid (worker threads, the ESM and CJS builds, two installed
 * versions) and containers on one volume are all pid 1, so a counter repeats; a collision is retried.
 */
async function createTemp(path: string): Promise<{ temp: string; handle: fs.FileHandle }> {
  const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | noFollow;
  for (let attempt = 1; ; attempt++) {
    const temp = join(dirname(path), `.${basename(path)}.${randomHex(8)}.tmp`);
    try {
      return { temp, handle: await fs.open(temp, flags, fileMode) };
    } catch (error) {
      if (systemErrorCode(error) !== 'EEXIST' || attempt >= 5) throw error;
    }
  }
}

// The last mtime this process gave each path, shared by every copy of this module in the process (the ESM and
// CJS builds, two installed versions): after a delete there is no file left to read it from.
interface StampRegistry { lastMtimeMs: Map<string, number> }
const stampRegistryKey = Symbol.for('msal-keychain-cache.files.stamps.v1');
const stampRegistry: StampRegistry = ((globalThis as Record<symbol, StampRegistry | undefined>)[stampRegistryKey] ??= { lastMtimeMs: new Map() });

// From fine (ext4, APFS, NTFS: ns or 100 ns) to coarse (exFAT 10 ms, ext3 and HFS+ 1 s, FAT 2 s).
const mtimeStepsMs = [0.002, 0.1, 10, 1000, 2000];

/**
 * Gives the new version (still the temp file) an mtime later than the one of the file it replaces, read back
 * to be sure the file system kept it. The change token includes the mtime, so it moves on every save even
 * when the inode is reused within one timestamp tick and the size is the same. Close to the wall clock
 * (msal-node-extensions reloads when the mtime is newer than its last sync), never behind the previous one.
 */
async function stampNewVersion(handle: fs.FileHandle, path: string): Promise<void> {
  let previous = stampRegistry.lastMtimeMs.get(path) ?? -Infinity;
  // Best effort: a file system that refuses to set times (some network mounts) still gets the save, with the
  // token as exact as its own timestamps are.
  try {
    previous = Math.max(previous, (await fs.stat(path)).mtimeMs);
  } catch {
    // Absent (the first save, or after a delete): the registry remembers what this process last wrote.
  }
  // The wall clock (msal-node-extensions compares the mtime with its own Date.now()), with a sub-millisecond
  // part from the monotonic clock so that two versions within one millisecond differ too.
  const now = Date.now() + (performance.now() % 1);
  let stored = previous;
  try {
    for (const step of mtimeStepsMs) {
      const target = Math.max(now, previous + step) / 1000;
      await handle.utimes(target, target);
      stored = (await handle.stat()).mtimeMs;
      if (stored > previous) break;
    }
  } catch {
    return;
  }
  const seen = stampRegistry.lastMtimeMs;
  seen.delete(path);
  seen.set(path, stored);
  // Bounded: verify probes use a fresh name each time. The oldest entries go first.
  if (seen.size > 256) seen.delete(seen.keys().next().value!);
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
