// Cross-process mutual exclusion with a lockfile created exclusively (O_EXCL), the holder's pid on its
// first line, so msal-node-extensions processes (which write just the pid) and ours exclude each other.
//
// Stale rule, in order:
//  - the holder wrote our format with this very pid, but is not one of our live acquisitions (pid reused,
//    e.g. pid 1 in a restarted container): stale;
//  - the holder is on this host and its pid is dead (or a zombie): stale at once;
//  - otherwise (alive, or on another host, or unreadable): stale only when the lockfile's mtime is older
//    than staleAfterMs. Our live holders touch the file every staleAfterMs / 4, so they are never broken.
// Breaking is serialized through `<lock>.break` and re-checks the lockfile's identity under it, so two
// waiters that both saw the same stale lock cannot delete each other's fresh lock.
import { type BigIntStats, constants as fsConstants, type FSWatcher, promises as fs, readFileSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import { hostname } from 'node:os';
import { KeychainCacheError, systemErrorCode } from './errors.js';
import { fileMode, randomHex, sleep, unlinkWithRetry } from './files.js';
import type { Logger } from './logger.js';

export interface LockOptions {
  /** Give up with LOCK_TIMEOUT after waiting this long for a live holder. Default 60000 ms. */
  timeoutMs?: number;
  /** A lock whose holder cannot be checked (another host, pid reused) is broken after this age. Default 30000 ms. */
  staleAfterMs?: number;
}

export const defaultLockOptions: Required<LockOptions> = { timeoutMs: 60_000, staleAfterMs: 30_000 };

/** Releases the lock. Safe to call twice; never removes a lock that another process now holds. */
export type ReleaseLock = () => Promise<void>;

export interface LockHolder {
  pid: number | undefined;
  host: string | undefined;
  nonce: string | undefined;
}

const ourHost = hostname();
const liveNonces = new Set<string>();
// A freshly created lockfile is empty until its creator writes the pid (msal-node-extensions opens,
// then writes); allow it this long before an empty or unreadable lockfile counts as abandoned.
const unreadableGraceMs = 2_000;
const inspectEveryMs = 10;

export async function acquireFileLock(lockPath: string, options: LockOptions = {}, logger?: Logger): Promise<ReleaseLock> {
  const { timeoutMs, staleAfterMs } = { ...defaultLockOptions, ...options };
  const started = Date.now();
  let delay = 1;
  let waiter: ReleaseWaiter | undefined;
  let verdict: Awaited<ReturnType<typeof inspectLock>> | undefined;
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
        if (verdict.stale) {
          if (await breakStaleLock(lockPath, verdict.identity)) {
            logger?.warning(`Broke a stale cache lock (${verdict.reason}).`);
          }
          verdict = undefined;
          continue;
        }
      }
      const waited = Date.now() - started;
      if (waited >= timeoutMs) {
        const holder = verdict.holder;
        throw new KeychainCacheError('LOCK_TIMEOUT',
          `Timed out after ${waited} ms waiting for the cache lock ${lockPath}, held by ` +
          `${holder?.pid ? `process ${holder.pid}` : 'an unknown process'}${holder?.host ? ` on ${holder.host}` : ''}. ` +
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

async function tryCreate(lockPath: string, staleAfterMs: number, logger?: Logger): Promise<ReleaseLock | undefined> {
  const nonce = randomHex(12);
  let handle;
  try {
    handle = await fs.open(lockPath,
      fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | (fsConstants.O_NOFOLLOW ?? 0), fileMode);
  } catch (error) {
    const code = systemErrorCode(error);
    // EPERM: Windows reports a lockfile that is being deleted this way.
    if (code === 'EEXIST' || code === 'EPERM') return undefined;
    if (code === 'EACCES') {
      throw new KeychainCacheError('ACCESS_DENIED',
        `Could not create the cache lock ${lockPath}: permission denied. Make the directory writable for this user.`,
        { cause: error });
    }
    throw new KeychainCacheError('STORE_FAILED', `Could not create the cache lock ${lockPath} (${code}).`, { cause: error });
  }
  liveNonces.add(nonce);
  try {
    await handle.writeFile(`${process.pid}\n${ourHost}\n${nonce}\n`);
  } finally {
    await handle.close();
  }
  // Keep the mtime fresh so nobody takes an old-looking lock from a live holder.
  const heartbeat = setInterval(() => {
    const now = new Date();
    fs.utimes(lockPath, now, now).catch(() => undefined);
  }, Math.max(50, Math.floor(staleAfterMs / 4)));
  heartbeat.unref();

  let released = false;
  return async () => {
    if (released) return;
    released = true;
    clearInterval(heartbeat);
    try {
      const holder = await readHolder(lockPath);
      if (holder?.nonce !== nonce) {
        logger?.warning(`The cache lock ${lockPath} was taken from this process before release; leaving the new holder's lock alone.`);
        return;
      }
      await unlinkWithRetry(lockPath);
    } finally {
      // Only now: while the file still exists, another acquisition in this process must see it as live.
      // Forgetting the nonce first let a waiter here call our lockfile stale ("our pid, unknown nonce"),
      // break it and take its own, which our unlink then deleted: two writers at once.
      liveNonces.delete(nonce);
    }
  };
}

async function readHolder(lockPath: string): Promise<LockHolder | undefined> {
  let text;
  try {
    text = await fs.readFile(lockPath, 'utf8');
  } catch {
    return undefined;
  }
  return parseHolder(text);
}

export function parseHolder(text: string): LockHolder | undefined {
  const [pidLine, hostLine, nonceLine] = text.split(/\r?\n/);
  const pid = Number.parseInt(pidLine?.trim() ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, host: hostLine?.trim() || undefined, nonce: nonceLine?.trim() || undefined };
}

interface Verdict {
  stale: boolean;
  reason: string;
  holder: LockHolder | undefined;
  identity: string;
}

async function inspectLock(lockPath: string, staleAfterMs: number): Promise<Verdict> {
  let stats;
  let text;
  try {
    stats = await fs.stat(lockPath, { bigint: true });
    text = await fs.readFile(lockPath, 'utf8');
  } catch {
    // Gone between our create and our look: not stale, just try again.
    return { stale: false, reason: 'released', holder: undefined, identity: '' };
  }
  const identity = lockIdentity(stats, text);
  const ageMs = Date.now() - Number(stats.mtimeMs);
  const holder = parseHolder(text);
  if (!holder) {
    const stale = ageMs > unreadableGraceMs;
    return { stale, reason: `unreadable lockfile, ${Math.round(ageMs)} ms old`, holder, identity };
  }
  const sameHost = holder.host === undefined || holder.host === ourHost;
  if (sameHost && holder.pid === process.pid && holder.nonce && !liveNonces.has(holder.nonce)) {
    return { stale: true, reason: `left by an earlier process with our pid ${holder.pid}`, holder, identity };
  }
  if (sameHost && !isProcessAlive(holder.pid!)) {
    return { stale: true, reason: `holder process ${holder.pid} is no longer running`, holder, identity };
  }
  if (ageMs > staleAfterMs) {
    return { stale: true, reason: `held by process ${holder.pid}${sameHost ? '' : ` on ${holder.host}`}, untouched for ${Math.round(ageMs)} ms`, holder, identity };
  }
  return { stale: false, reason: 'held', holder, identity };
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return systemErrorCode(error) === 'EPERM';
  }
  // A killed child that its parent has not reaped yet is a zombie: it holds nothing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

function lockIdentity(stats: BigIntStats, text: string): string {
  return `${stats.ino}:${stats.birthtimeNs}:${stats.mtimeNs}:${text}`;
}

async function breakStaleLock(lockPath: string, identity: string): Promise<boolean> {
  const breakPath = `${lockPath}.break`;
  let handle;
  try {
    handle = await fs.open(breakPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, fileMode);
  } catch (error) {
    if (systemErrorCode(error) !== 'EEXIST') return false;
    // A breaker holds it for microseconds; an old one means the breaker died mid-break.
    const stats = await fs.stat(breakPath).catch(() => undefined);
    if (stats && Date.now() - stats.mtimeMs > unreadableGraceMs) await fs.unlink(breakPath).catch(() => undefined);
    await sleep(1);
    return false;
  }
  try {
    await handle.close();
    // Re-check under the break lock: the stale lock may already have been replaced by a live one.
    const stats = await fs.stat(lockPath, { bigint: true }).catch(() => undefined);
    const text = await fs.readFile(lockPath, 'utf8').catch(() => undefined);
    if (!stats || text === undefined || lockIdentity(stats, text) !== identity) return false;
    await unlinkWithRetry(lockPath).catch(() => undefined);
    return true;
  } finally {
    await fs.unlink(breakPath).catch(() => undefined);
  }
}
