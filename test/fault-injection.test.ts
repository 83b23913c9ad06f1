// OS-level fault injection of the save, lock and release paths (issue 10): a real writer process (built
// package, real msal-node) signs in users while strace makes one syscall fail. Every syscall the writer
// makes on the cache's files is failed in turn, at each of its calls, with each meaningful errno.
//
// How the faults are aimed:
//  - strace attaches (-p, all threads) only after the writer has started and created its plugin, so node's
//    start-up is never hit;
//  - strace counts calls per syscall and per thread; the writer runs with one libuv pool thread so the
//    count is the same from run to run. A discovery run (trace only, every file) counts the calls first;
//    then `when=<n>` fails the n-th one, for every n whose call touches the cache's files (cache or marker,
//    lockfile, `.break`, temp files, the directory, the /proc files the lock reads to identify a holder);
//  - a failed write or read of libuv's own eventfd makes libuv abort(), which says nothing about us. So reads
//    are aimed with -P at the cache's fixed-name files (temp files have random names and are never read),
//    and writes both with -P and on every file at call numbers where no thread writes an eventfd. A run
//    whose fault still lands on an eventfd is reported and not counted.
// strace attaches to a process that is not its child: that needs root or CAP_SYS_PTRACE (CI runs as root),
// or kernel.yama.ptrace_scope = 0.
// After each case: the writer ended with every sign-in either done or failed with a KeychainCacheError
// (no crash, no hang), no lockfile or temp file is left, and a fresh process loads every sign-in the
// writer reported done.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deadPid, forChild, isLinux, repoRoot, runFixture, startFixture, storeOptions } from './helpers.js';
import type { BackendKind } from '../src/persistence/types.js';
import type { CachePluginOptions } from '../src/index.js';

const users = ['ada', 'grace'];
// Per syscall, the errnos a real system can return for it on a local file system.
const errnosBySyscall: Record<string, string[]> = {
  openat: ['EACCES', 'EPERM', 'ENOSPC', 'EMFILE', 'EIO'],
  write: ['ENOSPC', 'EIO'],
  fsync: ['EIO', 'ENOSPC'],
  fdatasync: ['EIO', 'ENOSPC'],
  close: ['EIO'],
  rename: ['EACCES', 'EPERM', 'ENOSPC', 'EIO'],
  renameat2: ['EACCES', 'EPERM', 'ENOSPC', 'EIO'],
  unlink: ['EACCES', 'EPERM', 'EIO'],
  unlinkat: ['EACCES', 'EPERM', 'EIO'],
  read: ['EIO'],
  pread64: ['EIO'],
  statx: ['EIO', 'EACCES'],
  newfstatat: ['EIO', 'EACCES'],
  fstat: ['EIO'],
  utimensat: ['EPERM', 'EACCES'],
  mkdir: ['ENOSPC', 'EACCES'],
};
const syscalls = Object.keys(errnosBySyscall);
// One run's bound: a hang is a failure, not a slow pass. Far above a normal run (about a second).
const runTimeoutMs = 45_000;
const parallelRuns = 2;

interface Case {
  id: string;
  backend: BackendKind;
  syscall: string;
  errno: string;
  when: number;
  /** The file the n-th call touched in the discovery run. */
  target: string;
  /** Counted and injected only on the -P files. */
  onlyOurPaths: boolean;
}

interface Outcome {
  testCase: Case;
  fired: string[];
  done: string[];
  failedCodes: string[];
  problems: string[];
  /** The fault landed on node's own descriptors (libuv's eventfd; or libuv aborted): not a point of our paths, not counted. */
  misaimed: boolean;
  options: CachePluginOptions;
}

// Read faults are aimed with strace -P at these files: the main thread reads libuv's eventfd after every
// completed operation, and a failed read there makes libuv abort(), which says nothing about our code.
// Temp files cannot be listed (random names) and are never read. Other syscalls are counted on every file
// and only call numbers that touch the cache's files (and never an eventfd) are failed.
const pathModeSyscalls = new Set(['read', 'pread64']);
// Writes are failed both ways: on every file (reaches the temp files, but only at call numbers where no
// thread writes an eventfd) and with -P (every write of the lockfile).
const bothModeSyscalls = new Set(['write']);
const ourTargets = new Set(['directory', 'cache', 'lockfile', 'break', 'temp', 'proc']);

function tracedPaths(cachePath: string, pid: number): string[] {
  // The lock code reads these to identify a holder (boot id, PID namespace, process start time).
  const identity = ['/proc/sys/kernel/random/boot_id', '/proc/self/stat', `/proc/${pid}/stat`];
  return [dirname(cachePath), cachePath, `${cachePath}.lockfile`, `${cachePath}.lockfile.break`, ...identity];
}

/** What a traced call touched, with run-specific parts (pid, random names, directory) taken out. */
function describeTarget(line: string, cachePath: string): string {
  const name = basename(cachePath);
  const directory = dirname(cachePath);
  const at = line.indexOf(directory);
  if (at >= 0) {
    const file = line.slice(at + directory.length).replace(/^\//, '').split(/["<>,)]/)[0] ?? '';
    if (file === '') return 'directory';
    if (file === name) return 'cache';
    if (file === `${name}.lockfile`) return 'lockfile';
    if (file === `${name}.lockfile.break`) return 'break';
    if (file.endsWith('.tmp')) return 'temp';
    return file.replace(/[0-9a-f]{6,}|\d+/g, 'N');
  }
  if (line.includes('eventfd')) return 'eventfd';
  if (line.includes('/proc/')) return 'proc';
  if (/socket:|pipe:/.test(line)) return 'stdio';
  return 'other';
}

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntilTraced(pid: number, tracer: number): Promise<void> {
  for (let attempt = 0; attempt < 2000; attempt++) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return; // exited: the run reports what happened
    }
    const traced = tasks.every((task) => {
      try {
        return new RegExp(`TracerPid:\\s+${tracer}\\b`).test(readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8'));
      } catch {
        return true; // thread gone
      }
    });
    if (traced) return;
    await sleep(5);
  }
  throw new Error(`strace ${tracer} did not attach to ${pid}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface WriterRun {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  hung: boolean;
  trace: string;
  pid: number;
}

/** Runs the writer under strace with the given strace arguments (besides -p and the path set). */
async function runWriter(options: CachePluginOptions, straceArgs: string[], onlyOurPaths: boolean): Promise<WriterRun> {
  const writer = startFixture('fault-writer', { options: forChild(options), users },
    { env: { ...process.env, UV_THREADPOOL_SIZE: '1' } });
  const ready = await writer.waitFor('READY ');
  const pid = Number(ready.split(' ')[1]);
  const log = join(dirname(options.cachePath!), '..', 'strace.log');
  const paths = onlyOurPaths ? tracedPaths(options.cachePath!, pid).flatMap((path) => ['-P', path]) : [];
  const strace = spawn('strace', ['-f', '-qq', '-y', '-o', log, ...straceArgs, ...paths, '-p', String(pid)],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let straceErrors = '';
  strace.stderr.setEncoding('utf8').on('data', (chunk: string) => { straceErrors += chunk; });
  const straceDone = new Promise((resolve) => strace.on('close', resolve));
  await waitUntilTraced(pid, strace.pid!);
  writer.child.stdin.write('go\n');
  let hung = false;
  const timer = setTimeout(() => { hung = true; writer.child.kill('SIGKILL'); }, runTimeoutMs);
  const result = await writer.done;
  clearTimeout(timer);
  await straceDone;
  // strace notes on stderr that /proc/self resolves to the pid, and warns when a thread it attaches to is
  // mid-syscall (`ptrace_syscall_info.op`); anything else is strace failing.
  const benign = /Requested path .* resolved into|ptrace_syscall_info\.op/;
  const straceFailure = straceErrors.split('\n').filter((l) => l.trim() && !benign.test(l));
  if (straceFailure.length > 0) throw new Error(`strace failed: ${straceFailure.join(' | ')}`);
  const trace = existsSync(log) ? readFileSync(log, 'utf8') : '';
  return { ...result, hung, trace, pid };
}

/**
 * From an undisturbed run traced on every file: per syscall, the call numbers worth failing and what the
 * n-th call touched in each thread (strace counts per thread). Path-mode syscalls count only calls on the
 * -P files, as strace will when injecting.
 */
function injectionPoints(trace: string, cachePath: string, onlyOurPaths: boolean): Map<string, string[]> {
  const sequences = new Map<string, string[]>();
  const pathTargets = new Set(['directory', 'cache', 'lockfile', 'break', 'proc']);
  for (const line of trace.split('\n')) {
    const [, thread, syscall] = /^(\d+) +(\w+)\(/.exec(line) ?? [];
    if (!thread || !syscall || !syscalls.includes(syscall)) continue;
    const target = describeTarget(line, cachePath);
    if (onlyOurPaths && !pathTargets.has(target)) continue;
    const key = `${syscall} ${thread}`;
    sequences.set(key, [...(sequences.get(key) ?? []), target]);
  }
  const points = new Map<string, string[]>();
  for (const syscall of syscalls) {
    const threads = [...sequences].filter(([key]) => key.startsWith(`${syscall} `)).map(([, list]) => list);
    const longest = Math.max(0, ...threads.map((list) => list.length));
    const targets: string[] = [];
    for (let n = 1; n <= longest; n++) {
      const hit = new Set(threads.map((list) => list[n - 1]).filter((t): t is string => t !== undefined));
      if ([...hit].some((t) => ourTargets.has(t)) && !hit.has('eventfd')) targets[n - 1] = [...hit].sort().join('+');
    }
    if (targets.length > 0) points.set(syscall, targets);
  }
  return points;
}

function judge(testCase: Case, run: WriterRun, options: CachePluginOptions): Outcome {
  const problems: string[] = [];
  const lines = run.stdout.split('\n');
  const done = lines.filter((l) => l.startsWith('DONE ')).map((l) => l.slice(5));
  const failed = lines.filter((l) => l.startsWith('FAILED ')).map((l) => JSON.parse(l.split(' ').slice(2).join(' ')));
  const crash = lines.find((l) => l.startsWith('CRASH '));
  const fired = run.trace.split('\n').filter((l) => l.includes('(INJECTED)'))
    .map((l) => `${/^\d+ +(?:<\.\.\. )?(\w+)/.exec(l)?.[1]} ${describeTarget(l, options.cachePath!)}`);
  // libuv abort()s when a write or read of its eventfd fails: that is node's machinery, not our paths. So is an
  // abort when a fault also landed on a descriptor of node's own (strace counts calls per thread, so the n-th call
  // of one thread is ours and of another thread node's): SIGABRT is libuv's answer to its own I/O failing, while
  // our code's failures are typed errors or exits with a code, which are judged.
  const misaimed = fired.some((f) => /^(write|read) eventfd$/.test(f)) ||
    (run.signal === 'SIGABRT' && fired.some((f) => !ourTargets.has(f.split(' ')[1] ?? '')));
  if (run.hung) problems.push(`hung: no exit within ${runTimeoutMs / 1000} s`);
  else if (crash) problems.push(`crashed: ${crash.slice(6)}`);
  else if (run.code !== 0 || !lines.some((l) => l.startsWith('RESULT '))) {
    problems.push(`exited ${run.code ?? run.signal} without a result: ${run.stderr.trim().split('\n').slice(0, 12).join(' | ')}`);
  }
  for (const failure of failed) {
    if (!failure.typed) problems.push(`untyped error ${failure.name} ${failure.code ?? ''}: ${failure.message} at ${failure.at}`);
  }
  const directory = dirname(options.cachePath!);
  const name = basename(options.cachePath!);
  const left = existsSync(directory) ? readdirSync(directory) : [];
  const lockfile = join(directory, `${name}.lockfile`);
  if (existsSync(lockfile)) {
    const holder = Number.parseInt(readFileSync(lockfile, 'utf8').split('\n')[0] ?? '', 10);
    if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) problems.push(`lockfile left with a live owner (${holder})`);
    // A dead stranger's lockfile (the stale-lock scenario) may stay when breaking it failed; ours may not.
    else if (run.code === 0 && (!(holder > 0) || holder === run.pid)) problems.push('lockfile left behind after a normal exit');
  }
  const debris = left.filter((f) => f !== name && f !== `${name}.lockfile`);
  if (debris.length > 0 && !run.hung && !crash) {
    problems.push(`files left behind: ${debris.map((f) => f.replace(String(run.pid), '<pid>')).join(', ')}`);
  }
  return { testCase, fired, done, failedCodes: failed.map((f) => f.code ?? f.name), problems: misaimed ? [] : problems, misaimed, options };
}

async function verifyStores(outcomes: Outcome[]): Promise<void> {
  // Stores that a writer left: loaded in a fresh process, each through a new plugin and client.
  for (let start = 0; start < outcomes.length; start += 40) {
    const batch = outcomes.slice(start, start + 40);
    const result = await runFixture('fault-verify', {
      stores: batch.map((o) => ({ id: o.testCase.id, options: forChild(o.options), users: o.done })),
    });
    const reports = new Map(result.stdout.split('\n').filter((l) => l.startsWith('STORE '))
      .map((l) => JSON.parse(l.slice(6))).map((r) => [r.id, r]));
    for (const outcome of batch) {
      const report = reports.get(outcome.testCase.id);
      if (!report) outcome.problems.push(`verify process gave no answer: ${result.stderr.trim().slice(-300)}`);
      else if (report.error) outcome.problems.push(`store does not load: ${report.error.name} ${report.error.code ?? ''}`);
      else {
        if (report.missing.length > 0) outcome.problems.push(`completed sign-ins lost: ${report.missing.join(', ')}`);
        if (report.silentFailures > 0) outcome.problems.push(`${report.silentFailures} stored accounts without a usable token`);
      }
    }
  }
}

async function inParallel<T, R>(items: T[], limit: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await run(items[index]!);
    }
  }));
  return results;
}

function matrixReport(backend: string, outcomes: Outcome[]): string {
  const counted = outcomes.filter((o) => !o.misaimed);
  const fired = counted.filter((o) => o.fired.length > 0);
  const failed = counted.filter((o) => o.problems.length > 0);
  const rows = outcomes.map((o) => {
    const c = o.testCase;
    const verdict = o.misaimed ? 'not counted (hit node\'s own descriptors: libuv aborted)' : o.problems.length > 0 ? `FAIL ${o.problems.join('; ')}` : 'ok';
    const effect = `done ${o.done.length}/${users.length}${o.failedCodes.length ? ` failed [${o.failedCodes.join(',')}]` : ''}`;
    return `  ${c.syscall}${c.onlyOurPaths ? ' -P' : ''}#${c.when} (${c.target}) ${c.errno}: injected [${o.fired.join(', ') || 'none'}] ${effect} -> ${verdict}`;
  });
  return [`fault-injection matrix, ${backend}: ${counted.length} injection points (${fired.length} fired), ` +
    `${counted.length - failed.length} passed, ${failed.length} failed` +
    `${counted.length < outcomes.length ? `; ${outcomes.length - counted.length} runs hit node's own descriptors, not counted` : ''}`,
  ...rows].join('\n');
}

interface Scenario {
  name: string;
  backend: BackendKind;
  /** Only the first errno of each syscall: keeps the file in time; the errnos' variety is covered above. */
  firstErrnoOnly?: boolean;
  /** Start with an old lockfile left by a dead process (msal-node-extensions' format: the pid alone), so
   *  the stale-lock inspection and breaking paths run too. */
  staleLock?: boolean;
}

const scenarios: Scenario[] = [
  { name: 'plaintext-file', backend: 'plaintext-file' },
  { name: 'libsecret', backend: 'libsecret' },
  { name: 'safe-storage (stand-in), first errno of each syscall', backend: 'safe-storage', firstErrnoOnly: true },
  { name: 'plaintext-file with a stale lockfile of a dead process at the start, first errno of each syscall',
    backend: 'plaintext-file', staleLock: true, firstErrnoOnly: true },
];

/** A fresh store for one run, with the scenario's starting state. */
async function prepareStore(scenario: Scenario): Promise<CachePluginOptions> {
  const options = await storeOptions(scenario.backend, { lockOptions: { timeoutMs: 10_000 } });
  if (scenario.staleLock) {
    mkdirSync(dirname(options.cachePath!), { recursive: true, mode: 0o700 });
    const lockfile = `${options.cachePath}.lockfile`;
    writeFileSync(lockfile, `${await deadPid()}\n`, { mode: 0o600 });
    // An hour old: stale by age as well, since a pid-only lockfile (no PID namespace) may be judged by age alone.
    const anHourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(lockfile, anHourAgo, anHourAgo);
  }
  return options;
}

describe.runIf(isLinux)('[linux only] fault injection with strace on the save, lock and release paths', () => {
  it.each(scenarios)('$name: every injected fault ends in success or a typed error, with nothing lost or left behind', async (scenario) => {
    const { backend } = scenario;
    const discoveryOptions = await prepareStore(scenario);
    const discovery = await runWriter(discoveryOptions, ['-e', `trace=${syscalls.join(',')}`], false);
    expect(discovery.stdout, discovery.stderr).toContain('RESULT');
    const cases: Case[] = [];
    for (const onlyOurPaths of [false, true]) {
      for (const [syscall, targets] of injectionPoints(discovery.trace, discoveryOptions.cachePath!, onlyOurPaths)) {
        const wanted = bothModeSyscalls.has(syscall) || pathModeSyscalls.has(syscall) === onlyOurPaths;
        targets.forEach((target, index) => {
          if (target === undefined || !wanted) return;
          for (const errno of (errnosBySyscall[syscall] ?? []).slice(0, scenario.firstErrnoOnly ? 1 : undefined)) {
            const id = `${scenario.name}:${syscall}${onlyOurPaths ? '@P' : ''}:${index + 1}:${errno}`;
            cases.push({ id, backend, syscall, errno, when: index + 1, target, onlyOurPaths });
          }
        });
      }
    }
    const outcomes = await inParallel(cases, parallelRuns, async (testCase) => {
      const options = await prepareStore(scenario);
      const run = await runWriter(options, ['-e', `trace=${testCase.syscall}`,
        '-e', `inject=${testCase.syscall}:error=${testCase.errno}:when=${testCase.when}`], testCase.onlyOurPaths);
      return judge(testCase, run, options);
    });
    await verifyStores(outcomes.filter((o) => !o.misaimed));
    const report = matrixReport(scenario.name, outcomes);
    // Kept for the issue's note: the matrix as run, one line per injection point.
    const slug = scenario.name.replace(/[^a-z0-9]+/gi, '-').replace(/-+$/, '');
    writeFileSync(join(tmpdir(), `msal-keychain-cache-fault-matrix-${slug}.txt`), `${report}\n`);
    console.log(report);
    expect(outcomes.length).toBeGreaterThan(0);
    expect(outcomes.filter((o) => o.problems.length > 0).map((o) => `${o.testCase.id}: ${o.problems.join('; ')}`)).toEqual([]);
  });
});

describe.runIf(isLinux)('[linux only] a real full disk: the cache directory on a small tmpfs', () => {
  // No injection here: the kernel itself answers ENOSPC once the cache outgrows the file system, in
  // whichever syscall first needs a block (the temp file's write, its fsync, the lockfile). The writer and
  // the fresh reader run in one private mount namespace (unshare, util-linux), where the tmpfs is mounted.
  it.each(['plaintext-file', 'safe-storage'] as BackendKind[])('%s: sign-ins fail with a typed error once the disk is full; earlier ones survive, nothing is left behind', async (backend) => {
    const options = await storeOptions(backend, { lockOptions: { timeoutMs: 10_000 } });
    const directory = dirname(options.cachePath!);
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const many = Array.from({ length: 12 }, (_, i) => `user${i}`);
    const fixture = (name: string) => join(repoRoot, 'test', 'fixtures', `${name}.mjs`);
    const script = [
      // About three users' cache (a save needs room for the temp file and the file it replaces).
      'mount -t tmpfs -o size=24k,mode=0700 fault-tmpfs "$DIR" || exit 90',
      'echo go | node "$WRITER" "$WRITER_ARGS"',
      'node "$VERIFY" "$VERIFY_ARGS"',
      'echo "LEFT $(ls -A "$DIR" | tr "\\n" " ")"',
    ].join('; ');
    const writerArgs = { options: forChild(options), users: many };
    const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script], {
      env: {
        ...process.env, DIR: directory, WRITER: fixture('fault-writer'), VERIFY: fixture('fault-verify'),
        WRITER_ARGS: JSON.stringify(writerArgs),
        // All users are looked up; the test then requires every one the writer reported done.
        VERIFY_ARGS: JSON.stringify({ stores: [{ id: 'full', options: forChild(options), users: many }] }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(0);
    const lines = stdout.split('\n');
    const done = lines.filter((l) => l.startsWith('DONE ')).map((l) => l.slice(5));
    const failed = lines.filter((l) => l.startsWith('FAILED ')).map((l) => JSON.parse(l.split(' ').slice(2).join(' ')));
    const store = JSON.parse(lines.find((l) => l.startsWith('STORE '))!.slice(6));
    const left = lines.find((l) => l.startsWith('LEFT '))!.slice(5).trim().split(' ').filter(Boolean);
    console.log(`full tmpfs, ${backend}: done ${done.length}/${many.length}, failed [${failed.map((f) => f.code).join(',')}], ` +
      `store: ${store.accounts ?? 0} accounts${store.error ? `, error ${store.error.code}` : ''}, left: ${left.join(' ')}`);
    expect(lines.some((l) => l.startsWith('CRASH '))).toBe(false);
    expect(lines.some((l) => l.startsWith('RESULT '))).toBe(true);
    // The disk did fill up (else this test proves nothing), and every failure is typed.
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.filter((f) => !f.typed)).toEqual([]);
    expect(store.error).toBeUndefined();
    expect(done.filter((user) => store.missing.includes(user))).toEqual([]);
    expect(left.filter((f) => f !== basename(options.cachePath!))).toEqual([]);
  });
});
