// Cross-process mutual exclusion with a lockfile created exclusively (O_EXCL), the holder's pid on its
// first line, so msal-node-extensions processes (which write just the pid) and ours exclude each other.
//
// Lockfile lines: pid, host, nonce (unique per acquisition), boot id, PID namespace, process start time, and
// the holding thread (its id and start time: a worker thread can end while the process lives on).
// A pid alone does not identify a holder: worker threads and every copy of our code in a process share it,
// and containers on one volume are all pid 1. The last three lines are facts every copy of our code in every
// thread and process can check for itself, so no in-process registry has to agree on who holds what.
//
// Stale rule, in order:
//  - another host, another boot (same hostname on another machine, or before a reboot), another PID
//    namespace, or a lockfile that does not say its namespace (msal-node-extensions' pid-only lockfile, which
//    a container may have written): the holder's pid cannot be probed from here, so it is stale only when the
//    lockfile's mtime is older than staleAfterMs (our live holders touch it every staleAfterMs / 4);
//  - same namespace, pid dead (or a zombie): stale at once;
//  - same namespace, pid alive but started at another time than the holder recorded: the pid was reused,
//    stale at once;
//  - same process, but the thread that took it has exited (a worker thread terminated mid-write): stale at once;
//  - otherwise the holder is alive: stale only when untouched for staleAfterMs (it is stopped: SIGSTOP, a
//    debugger, a paused VM). A holder that wakes up after that proves it still holds the lock before it saves
//    (`stillHeld`), so it never writes over the newer writer.
// Breaking is serialized through `<lock>.break` and re-checks the lockfile's identity under it, so two
// waiters that both saw the same stale lock cannot delete each other's fresh lock.
import { type BigIntStats, constants as fsConstants, type FSWatcher, promises as fs, readFileSync, readlinkSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import { KeychainCacheError, systemErrorCode } from './errors.js';
import { describeFileError, fileMode, randomHex, renameWithRetry, sleep, unlinkWithRetry, withDirectoryRecreated } from './files.js';
import type { Logger } from './logger.js';

export interface LockOptions {
  /** Give up with LOCK_TIMEOUT after waiting this long for a live holder. Default 60000 ms. */
  timeoutMs?: number;
  /**
   * A lock whose holder cannot be probed (another host or PID namespace) or has stopped touching it is broken
   * after this age. Default 30000 ms, at least 1000 ms (live holders touch it every staleAfterMs / 4).
   */
  staleAfterMs?: number;
}

export const defaultLockOptions: Required<LockOptions> = { timeoutMs: 60_000, staleAfterMs: 30_000 };
/** Below this, a holder's heartbeat could miss the deadline on a loaded machine and a live lock be broken. */
export const minimumStaleAfterMs = 1_000;
const maximumMs = 2 ** 31 - 1;

/**
 * Releases the lock. Safe to call twice; never removes a lock that another process now holds; never throws
 * (a lockfile that cannot be removed yet is logged and retried in the background).
 */
export interface ReleaseLock {
  (): Promise<void>;
  /** True when the lockfile on disk is still this acquisition's (no one broke it while this holder was stopped). */
  stillHeld(): Promise<boolean>;
}

export interface LockHolder {
  pid: number | undefined;
  host: string | undefined;
  nonce: string | undefined;
  bootId: string | undefined;
  pidNamespace: string | undefined;
  startTime: string | undefined;
  /** `<thread id>:<thread start time>` of the thread that took the lock (Linux). */
  thread: string | undefined;
}

// Loaded when a lock is first taken or inspected: msal-node does not load node:os, and a CLI that only reads would
// pay ~0.3 ms of its start for it.
let hostName: string | undefined;
async function ourHost(): Promise<string> {
  return hostName ??= (await import('node:os')).hostname();
}
// A freshly created lockfile is empty until its creator writes the pid (msal-node-extensions opens,
// then writes); allow it this long before an empty or unreadable lockfile counts as abandoned.
const unreadableGraceMs = 2_000;
const inspectEveryMs = 10;

/** Checks lock options once; used by the plugin's option validation and by direct callers alike. */
export function resolveLockTiming(options: LockOptions = {}): Required<LockOptions> {
  const resolved = { ...defaultLockOptions };
  for (const key of ['timeoutMs', 'staleAfterMs'] as const) {
    const value = options[key];
    if (value === undefined) continue;
    // Node's timers hold at most 2^31 - 1 ms; a longer one fires at once (a heartbeat every millisecond).
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > maximumMs) {
      throw new KeychainCacheError('INVALID_OPTION', `lockOptions.${key} must be a whole number of milliseconds from 1 to ${maximumMs} ` +
        `(about 24 days); got ${String(value)}.`);
    }
    resolved[key] = value;
  }
  if (resolved.staleAfterMs < minimumStaleAfterMs) {
    throw new KeychainCacheError('INVALID_OPTION', `lockOptions.staleAfterMs must be at least ${minimumStaleAfterMs} ms ` +
      `(got ${resolved.staleAfterMs}): a live holder touches its lock every staleAfterMs / 4, and a shorter age lets a busy ` +
      'machine break a live holder\'s lock. Leave it unset for the default of 30000.');
  }
  return resolved;
}

export async function acquireFileLock(lockPath: string, options: LockOptions = {}, logger?: Logger): Promise<ReleaseLock> {
  const { timeoutMs, staleAfterMs } = resolveLockTiming(options);
  const started = Date.now();
  let delay = 1;
  let waiter: ReleaseWaiter | undefined;
  let verdict: Verdict | undefined;
  let inspectedAt = 0;
  try {
    for (;;) {
      const release = await tryCreate(lockPath, staleAfterMs, logger);
      if (release) return release;
      // Contended: from now on also wake up when the lockfile's directory changes (the holder deleting
      // it), so the lock changes hands in well under a millisecond instead of at the next poll.
      waiter ??= watchForRelease(lockPath);
      // Inspecting the holder (read the lockfile, stat, probe its pid) costs far more than a failed
      // create; with many waiters woken at each hand-off, do it at most every few milliseconds each.
      if (verdict === undefined || Date.now() - inspectedAt >= inspectEveryMs) {
        verdict = await inspectLock(lockPath, staleAfterMs);
        inspectedAt = Date.now();
        if (verdict.stale && await breakStaleLock(lockPath, verdict)) {
          logger?.warning(`Broke a stale cache lock (${verdict.reason}).`);
          verdict = undefined;
          continue;
        }
      }
      // Every path that did not take the lock comes through here: the deadline holds whatever the lockfile
      // looks like, and the wait below keeps a waiter from spinning on a lock it cannot break.
      const waited = Date.now() - started;
      if (waited >= timeoutMs) {
        const holder = verdict.holder;
        throw new KeychainCacheError('LOCK_TIMEOUT',
          `Timed out after ${waited} ms waiting for the cache lock ${lockPath}, held by ` +
          `${holder?.pid ? `process ${holder.pid}` : 'an unknown process'}${holder?.host ? ` on ${holder.host}` : ''}` +
          `${verdict.stale ? ` (${verdict.reason}; it could not be removed yet)` : ''}. ` +
          'If that process is stuck, end it; the lock is taken over as soon as it exits. ' +
          'Raise lockOptions.timeoutMs if it is legitimately slow.');
      }
      // Polling with exponential backoff and jitter stays as the fallback (file systems without change
      // notification, a missed event); the watcher usually ends the wait first.
      await waiter.wait(Math.min(delay, timeoutMs - waited) * (0.5 + Math.random()));
      delay = Math.min(delay * 2, 25);
    }
  } finally {
    waiter?.close();
  }
}

interface ReleaseWaiter {
  wait(ms: number): Promise<void>;
  close(): void;
}

function watchForRelease(lockPath: string): ReleaseWaiter {
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  const name = basename(lockPath);
  try {
    // 'rename' is a create or a delete; a 'change' (the holder's heartbeat) frees nothing.
    watcher = watch(dirname(lockPath), { persistent: false }, (event, changed) => {
      if (event === 'rename' && (changed === null || changed === name)) wake?.();
    });
    watcher.on('error', () => { watcher?.close(); watcher = undefined; });
  } catch {
    watcher = undefined; // no change notification here: polling alone
  }
  return {
    wait: (ms) => new Promise<void>((resolve) => {
      const done = () => { clearTimeout(timer); wake = undefined; resolve(); };
      const timer = setTimeout(done, ms);
      wake = done;
    }),
    close: () => { watcher?.close(); watcher = undefined; wake?.(); },
  };
}

/** This process's identity, read once per copy of our code: every copy in every thread reads the same facts. */
// Module state is per copy of our code, and every worker thread loads its own copies: so `thread` is this
// thread's, while the rest is the same in every copy and thread of the process.
interface ProcessIdentity {
  bootId: string | undefined;
  pidNamespace: string | undefined;
  startTime: string | undefined;
  thread: string | undefined;
  /**
   * /proc numbers processes as this process sees them. Not so in a PID namespace that kept its parent's /proc
   * (`unshare --pid` without `--mount-proc`): there /proc/<pid> is another process, and no probe through it
   * can be trusted.
   */
  procIsOurs: boolean;
}
let ourIdentity: ProcessIdentity | undefined;

function identity(): ProcessIdentity {
  if (ourIdentity) return ourIdentity;
  const procIsOurs = readLink('/proc/self') === String(process.pid);
  // `<pid>/task/<tid>`: the calling thread (this runs on the JavaScript thread of this isolate).
  const tid = procIsOurs ? readLink('/proc/thread-self')?.split('/').at(-1) : undefined;
  const threadStart = tid === undefined ? undefined : processStartTime(`self/task/${tid}`);
  ourIdentity = {
    bootId: readProc('/proc/sys/kernel/random/boot_id'),
    pidNamespace: readLink('/proc/self/ns/pid'),
    // Recorded only where others in this namespace can check them through /proc.
    startTime: procIsOurs ? processStartTime('self') : undefined,
    thread: tid && threadStart ? `${tid}:${threadStart}` : undefined,
    procIsOurs,
  };
  return ourIdentity;
}

function readLink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

function readProc(path: string): string | undefined {
  try {
    // Bytes, then text: Node 20's utf8 fast path aborts the process when close() fails, where this throws.
    return readFileSync(path).toString('utf8').trim() || undefined;
  } catch {
    return undefined; // not Linux, or /proc not mounted: the pid probe and the age rule remain
  }
}

/** Field 22 of /proc/<pid>/stat: when the process (or thread) started, in clock ticks since boot. Undefined off Linux. */
function processStartTime(pid: number | string): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses: count fields after its closing ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

async function tryCreate(lockPath: string, staleAfterMs: number, logger?: Logger): Promise<ReleaseLock | undefined> {
  const nonce = randomHex(12);
  const me = identity();
  let handle;
  try {
    // A cache directory deleted while the app runs is created again.
    handle = await withDirectoryRecreated(lockPath, () => fs.open(lockPath,
      fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | (fsConstants.O_NOFOLLOW ?? 0), fileMode));
  } catch (error) {
    const code = systemErrorCode(error);
    // EPERM: Windows reports a lockfile that is being deleted this way.
    if (code === 'EEXIST' || (code === 'EPERM' && process.platform === 'win32')) return undefined;
    throw describeFileError(error, 'create the cache lock', lockPath);
  }
  try {
    await handle.writeFile(`${process.pid}\n${await ourHost()}\n${nonce}\n${me.bootId ?? ''}\n${me.pidNamespace ?? ''}\n${me.startTime ?? ''}\n${me.thread ?? ''}\n`);
    await handle.close();
  } catch (error) {
    // A lockfile without its owner would block everyone for the unreadable grace: remove it.
    await handle.close().catch(() => undefined);
    await fs.unlink(lockPath).catch(() => undefined);
    throw describeFileError(error, 'write the cache lock', lockPath);
  }
  const ours = async (): Promise<boolean | undefined> => {
    let text;
    try {
      text = await fs.readFile(lockPath, 'utf8');
    } catch (error) {
      // Gone: someone broke it. Any other error says nothing about who holds it.
      return systemErrorCode(error) === 'ENOENT' ? false : undefined;
    }
    return parseHolder(text)?.nonce === nonce;
  };
  // Keep the mtime fresh so nobody takes an old-looking lock from a live holder; only while it is ours, so a
  // holder that lost its lock never keeps another holder's (maybe abandoned) lockfile looking alive.
  const heartbeat = setInterval(() => {
    void ours().then((held) => {
      if (held !== true) return;
      const now = new Date();
      return fs.utimes(lockPath, now, now);
    }).catch(() => undefined);
  }, Math.floor(staleAfterMs / 4));
  heartbeat.unref();

  const stillHeld = async (): Promise<boolean> => {
    // A transient read error (EMFILE, EIO) is not proof either way: ask again before answering.
    for (let attempt = 0; attempt < 5; attempt++) {
      const held = await ours();
      if (held !== undefined) return held;
      await sleep(2 ** attempt);
    }
    return false;
  };

  // One try at removing the lockfile: true when nothing is left to do (removed, or no longer ours).
  let warnedUnlink = false;
  const removeIfOurs = async (): Promise<boolean> => {
    const held = await ours();
    if (held === false) {
      logger?.warning(`The cache lock ${lockPath} was taken from this process before release (another process judged ` +
        "it stale: this one was stopped for longer than staleAfterMs, or a breaker's check raced it); leaving the new holder's lock alone.");
      return true;
    }
    if (held === undefined) return false; // could not tell: ask again
    try {
      await unlinkWithRetry(lockPath);
      return true;
    } catch (error) {
      if (!warnedUnlink) {
        warnedUnlink = true;
        logger?.warning(`Could not remove the cache lock ${lockPath} (${systemErrorCode(error) ?? 'error'}); retrying. ` +
          'The save itself succeeded.');
      }
      return false;
    }
  };

  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    clearInterval(heartbeat);
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await removeIfOurs()) return;
      await sleep(2 ** attempt);
    }
    // Retried off the caller's path from here: the save is done, the caller need not wait. The heartbeat has
    // stopped, so after staleAfterMs other processes take the lock over by age anyway.
    const deadline = Date.now() + staleAfterMs;
    void (async () => {
      for (let attempt = 3; Date.now() < deadline; attempt++) {
        if (await removeIfOurs()) return;
        await sleep(Math.min(2 ** attempt, 1000));
      }
      logger?.warning(`Gave up removing the cache lock ${lockPath}; other processes take it over after staleAfterMs.`);
    })();
  };
  return Object.assign(release, { stillHeld });
}

export function parseHolder(text: string): LockHolder | undefined {
  const [pidLine, hostLine, nonceLine, bootLine, namespaceLine, startLine, threadLine] = text.split(/\r?\n/);
  const pid = Number.parseInt(pidLine?.trim() ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const field = (line: string | undefined) => line?.trim() || undefined;
  return {
    pid, host: field(hostLine), nonce: field(nonceLine),
    bootId: field(bootLine), pidNamespace: field(namespaceLine), startTime: field(startLine), thread: field(threadLine),
  };
}

interface Verdict {
  stale: boolean;
  reason: string;
  holder: LockHolder | undefined;
  identity: string;
}

async function inspectLock(lockPath: string, staleAfterMs: number): Promise<Verdict> {
  let stats;
  try {
    stats = await fs.stat(lockPath, { bigint: true });
  } catch {
    // Gone between our create and our look: not stale, just try again.
    return { stale: false, reason: 'released', holder: undefined, identity: '' };
  }
  // A lockfile we may not read (another user's 0600 file) still has an age.
  const text = await fs.readFile(lockPath, 'utf8').catch(() => '');
  const lockIdentity = identityOf(stats, text);
  const ageMs = Date.now() - Number(stats.mtimeMs);
  const holder = parseHolder(text);
  if (!holder) {
    const stale = ageMs > unreadableGraceMs;
    return { stale, reason: `unreadable lockfile, ${Math.round(ageMs)} ms old`, holder, identity: lockIdentity };
  }
  const byAge = (where: string): Verdict => ({
    stale: ageMs > staleAfterMs,
    reason: `held by process ${holder.pid}${where}, untouched for ${Math.round(ageMs)} ms`,
    holder, identity: lockIdentity,
  });
  const me = identity();
  if (holder.host !== undefined && holder.host !== await ourHost()) return byAge(` on ${holder.host}`);
  if (holder.bootId && me.bootId && holder.bootId !== me.bootId) return byAge(' on another machine or before a reboot');
  // A lockfile that does not say which PID namespace wrote it (msal-node-extensions writes the pid alone; so
  // did our own first version) may come from a container whose pids mean nothing here: a pid that is dead, or
  // another process, in our namespace proves nothing, so only its age counts.
  // (Where we have no PID namespace of our own, macOS and Windows, there are none to confuse.)
  if (me.pidNamespace && !holder.pidNamespace) return byAge(' (a lockfile that does not say which PID namespace wrote it)');
  if (me.pidNamespace && holder.pidNamespace !== me.pidNamespace) return byAge(` in another PID namespace (${holder.pidNamespace})`);
  if (!isProcessAlive(holder.pid!)) {
    return { stale: true, reason: `holder process ${holder.pid} is no longer running`, holder, identity: lockIdentity };
  }
  if (holder.startTime && me.procIsOurs) {
    const startTime = holder.pid === process.pid ? me.startTime : processStartTime(holder.pid!);
    if (startTime !== undefined && startTime !== holder.startTime) {
      return { stale: true, reason: `process ${holder.pid} that held it has exited and its pid was reused`, holder, identity: lockIdentity };
    }
    const [tid, threadStart] = holder.thread?.split(':') ?? [];
    if (startTime !== undefined && tid && processStartTime(`${holder.pid}/task/${tid}`) !== threadStart) {
      return { stale: true, reason: `the thread of process ${holder.pid} that held it has ended`, holder, identity: lockIdentity };
    }
  }
  return byAge('');
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return systemErrorCode(error) === 'EPERM';
  }
  // A killed child that its parent has not reaped yet is a zombie: it holds nothing. (Only where /proc is ours.)
  const stat = identity().procIsOurs ? readProc(`/proc/${pid}/stat`) : undefined;
  return stat === undefined || stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

function identityOf(stats: BigIntStats, text: string): string {
  return `${stats.ino}:${stats.birthtimeNs}:${stats.mtimeNs}:${text}`;
}

/**
 * True when this call removed the stale lock; false when someone else is breaking it or it changed meanwhile.
 *
 * A breaker can be stopped anywhere (SIGSTOP, a debugger) while others go on, so nothing it checked stays true:
 * - `<lock>.break` holds the breaker's nonce; it acts only while the file still holds it (another breaker may
 *   have judged an old `.break` abandoned and taken over);
 * - it checks the lockfile is still the one it judged, then renames whatever is there aside (atomic) and checks
 *   what it moved: only the stale lock it judged is deleted; a live lock moved by mistake (the breaker was stopped
 *   between its check and the rename) is linked back at once (link fails rather than overwrite a lock created
 *   meanwhile). That gap, microseconds, is what a stop can still hit; a holder whose lock went is told at its
 *   fence (stillHeld) and re-merges instead of saving over the newer holder.
 */
async function breakStaleLock(lockPath: string, verdict: Verdict): Promise<boolean> {
  const breakPath = `${lockPath}.break`;
  const breakNonce = randomHex(8);
  try {
    await fs.writeFile(breakPath, breakNonce, { flag: 'wx', mode: fileMode });
  } catch (error) {
    if (systemErrorCode(error) !== 'EEXIST') throw cannotBreak(lockPath, verdict, error);
    // A breaker holds it for microseconds; an old one means the breaker died (or stopped) mid-break.
    const stats = await fs.stat(breakPath).catch(() => undefined);
    if (stats && Date.now() - stats.mtimeMs > unreadableGraceMs) await fs.unlink(breakPath).catch(() => undefined);
    return false;
  }
  // Whose `.break` is there now: a failing read (EIO, EMFILE) is asked again, then left undecided.
  const breakOwner = async (): Promise<'ours' | 'theirs' | 'unknown'> => {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        return (await fs.readFile(breakPath, 'utf8')) === breakNonce ? 'ours' : 'theirs';
      } catch (error) {
        if (systemErrorCode(error) === 'ENOENT') return 'theirs';
        await sleep(2 ** attempt);
      }
    }
    return 'unknown';
  };
  try {
    if (await breakOwner() !== 'ours') return false;
    // Still the lock we judged? (Cheap, and it keeps a breaker that was stopped before this point from moving a
    // live lock aside at all.)
    const current = await fs.stat(lockPath, { bigint: true }).catch(() => undefined);
    if (!current || identityOf(current, await fs.readFile(lockPath, 'utf8').catch(() => '')) !== verdict.identity) return false;
    const aside = `${lockPath}.stale-${randomHex(8)}`;
    try {
      await renameWithRetry(lockPath, aside, process.platform);
    } catch (error) {
      if (systemErrorCode(error) === 'ENOENT') return false;
      // Windows: the file is busy for a moment (being deleted, scanned); wait like for a live holder.
      if (process.platform === 'win32' && systemErrorCode(error) === 'EPERM') return false;
      throw cannotBreak(lockPath, verdict, error);
    }
    const stats = await fs.stat(aside, { bigint: true }).catch(() => undefined);
    const text = await fs.readFile(aside, 'utf8').catch(() => '');
    if (stats && identityOf(stats, text) === verdict.identity) {
      await unlinkWithRetry(aside).catch(() => undefined);
      return true;
    }
    // Not the lock we judged: it was replaced by a live one meanwhile. Put it back, unless a newer one is there.
    await fs.link(aside, lockPath).catch(() => undefined);
    await unlinkWithRetry(aside).catch(() => undefined);
    return false;
  } finally {
    // Our own `.break` (or one we cannot read: removing another breaker's costs it only a retry, since the lockfile
    // is checked after it is moved aside), retried: one left behind makes the next breaker wait out its grace.
    for (let attempt = 0; attempt < 3 && await breakOwner() !== 'theirs'; attempt++) {
      if (await fs.unlink(breakPath).then(() => true, (error: unknown) => systemErrorCode(error) === 'ENOENT')) break;
      await sleep(2 ** attempt);
    }
  }
}

/** A stale lock we are not allowed to remove: waiting cannot help, so say whose file it is and what to do. */
function cannotBreak(lockPath: string, verdict: Verdict, error: unknown): KeychainCacheError {
  const code = systemErrorCode(error);
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new KeychainCacheError('ACCESS_DENIED',
      `The cache lock ${lockPath} is stale (${verdict.reason}) but this user may not remove it (${code}): the ` +
      'directory is read-only for this user, or the lockfile belongs to another user in a sticky directory. Delete ' +
      `${lockPath} as its owner or as root, and keep the cache in a directory only this user writes.`, { cause: error });
  }
  return describeFileError(error, 'remove the stale cache lock', lockPath) as KeychainCacheError;
}
