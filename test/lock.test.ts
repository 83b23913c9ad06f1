import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readlink, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { acquireFileLock } from '../src/file-lock.js';
import { backends, deadPid, forChild, isLinux, repoRoot, runFixture, startFixture, storeOptions, tempDir } from './helpers.js';

/** Runs an ES module snippet in node as another user (setpriv; the tests run as root in CI); returns stdout. */
function runAs(uid: number, code: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', code],
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}: ${stderr}`)) : resolve(stdout)));
  });
}

/** A lockfile as our lock writes it, for `pid` in this PID namespace (no start time: only the pid is probed). */
async function lockfileOf(pid: number, nonce: string): Promise<string> {
  const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  return `${pid}\n${hostname()}\n${nonce}\n${boot}\n${await readlink('/proc/self/ns/pid')}\n\n\n`;
}

async function lockPathIn(): Promise<string> {
  return join(await tempDir(), 'msal-cache.json.lockfile');
}

describe('file lock', () => {
  it('writes the holder pid on the first line and removes the file on release; releasing twice is harmless', async () => {
    const lockPath = await lockPathIn();
    const release = await acquireFileLock(lockPath);
    const [pid, host] = (await readFile(lockPath, 'utf8')).split('\n');
    expect(Number(pid)).toBe(process.pid);
    expect(host).toBe(hostname());
    expect((await stat(lockPath)).mode & 0o777).toBe(0o600);
    await release();
    expect(existsSync(lockPath)).toBe(false);
    await release();
  });

  it('gives mutual exclusion across processes: 4 processes x 25 increments of one counter lose none', async () => {
    const directory = await tempDir();
    const counterPath = join(directory, 'counter');
    await writeFile(counterPath, '0');
    const lockPath = join(directory, 'counter.lockfile');
    const results = await Promise.all(Array.from({ length: 4 }, () =>
      runFixture('lock-holder', { mode: 'count', times: 25, lockPath, counterPath })));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    expect(Number(await readFile(counterPath, 'utf8'))).toBe(100);
  });

  it('takes over from a holder killed with SIGKILL within 1 s, without waiting for the stale age', async () => {
    const lockPath = await lockPathIn();
    const holder = startFixture('lock-holder', { lockPath });
    await holder.waitFor('HOLDING');
    holder.child.kill('SIGKILL');
    await holder.done;
    expect(existsSync(lockPath)).toBe(true);
    // staleAfterMs of 10 minutes: only the dead-pid rule can free this lock within the 1 s timeout.
    const release = await acquireFileLock(lockPath, { timeoutMs: 1000, staleAfterMs: 600_000 });
    expect(Number((await readFile(lockPath, 'utf8')).split('\n')[0])).toBe(process.pid);
    await release();
  });

  it('never breaks a live holder early, even one whose lock is older than staleAfterMs (heartbeat)', async () => {
    const lockPath = await lockPathIn();
    const lockOptions = { staleAfterMs: 1000 };
    const holder = startFixture('lock-holder', { lockPath, lockOptions });
    const holding = await holder.waitFor('HOLDING');
    const holderPid = Number(holding.split(' ')[1]);
    await expect(acquireFileLock(lockPath, { ...lockOptions, timeoutMs: 4000 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    expect(Number((await readFile(lockPath, 'utf8')).split('\n')[0])).toBe(holderPid);
    holder.child.stdin.write('release\n');
    await holder.waitFor('RELEASED');
    const release = await acquireFileLock(lockPath, { timeoutMs: 1000 });
    await release();
  });

  it('breaks an ancient lock by age when its pid is alive but reused, or it comes from another host', async () => {
    const sleeper = spawn('sleep', ['30']);
    try {
      for (const content of [`${sleeper.pid}\n${hostname()}\nnot-ours\n`, `${sleeper.pid}\nanother-host.example\nx\n`]) {
        const lockPath = await lockPathIn();
        await writeFile(lockPath, content);
        // A fresh one is respected ...
        await expect(acquireFileLock(lockPath, { timeoutMs: 200, staleAfterMs: 5_000 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
        // ... an ancient one is broken.
        const old = new Date(Date.now() - 60_000);
        await utimes(lockPath, old, old);
        const release = await acquireFileLock(lockPath, { timeoutMs: 1000, staleAfterMs: 5_000 });
        await release();
      }
    } finally {
      sleeper.kill();
    }
  });

  it("understands msal-node-extensions' lockfile (pid only): waits for a live one, and for a dead one until it is untouched for staleAfterMs", async () => {
    const lockPath = await lockPathIn();
    await writeFile(lockPath, String(process.ppid));
    await expect(acquireFileLock(lockPath, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    // A pid-only lockfile does not say which PID namespace wrote it: a container's live holder can have a pid
    // that is dead (or another process) here. So a dead pid alone does not free it; its age does.
    await writeFile(lockPath, String(await deadPid()));
    await expect(acquireFileLock(lockPath, { timeoutMs: 300, staleAfterMs: 60_000 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    const old = new Date(Date.now() - 120_000);
    await utimes(lockPath, old, old);
    await (await acquireFileLock(lockPath, { timeoutMs: 1000, staleAfterMs: 60_000 }))();
  });

  it('excludes msal-node-extensions processes, and they exclude us', async () => {
    const { CrossPlatformLock } = await import('../node_modules/@azure/msal-node-extensions/dist/lock/CrossPlatformLock.mjs' as string);
    const logger = { info() {}, verbose() {}, warning() {}, error() {} };
    const lockPath = await lockPathIn();
    const ours = await acquireFileLock(lockPath);
    const theirs = new CrossPlatformLock(lockPath, logger, { retryNumber: 3, retryDelay: 10 });
    await expect(theirs.lock()).rejects.toThrow();
    await ours();
    await theirs.lock();
    await expect(acquireFileLock(lockPath, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    await theirs.unlock();
    await (await acquireFileLock(lockPath, { timeoutMs: 200 }))();
  });

  it('treats an empty lockfile as being written at first, and as abandoned after 2 s', async () => {
    const lockPath = await lockPathIn();
    await writeFile(lockPath, '');
    await expect(acquireFileLock(lockPath, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    const old = new Date(Date.now() - 10_000);
    await utimes(lockPath, old, old);
    await (await acquireFileLock(lockPath, { timeoutMs: 1000 }))();
  });

  it('lets many waiters break one stale lock without two of them holding it at once', async () => {
    const directory = await tempDir();
    const lockPath = join(directory, 'counter.lockfile');
    const counterPath = join(directory, 'counter');
    await writeFile(counterPath, '0');
    await writeFile(lockPath, await lockfileOf(await deadPid(), randomBytes(4).toString('hex')));
    const results = await Promise.all(Array.from({ length: 6 }, () =>
      runFixture('lock-holder', { mode: 'count', times: 10, lockPath, counterPath })));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Number(await readFile(counterPath, 'utf8'))).toBe(60);
  });

  it('judges lockfiles of the older formats (no PID namespace line) by age alone, even one that names our own pid', async () => {
    for (const content of [`${process.pid}\n${hostname()}\nleft-by-a-previous-container\n`, String(process.pid), `${await deadPid()}\n${hostname()}\nx\n`]) {
      const lockPath = await lockPathIn();
      await writeFile(lockPath, content);
      await expect(acquireFileLock(lockPath, { timeoutMs: 200, staleAfterMs: 60_000 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
      const old = new Date(Date.now() - 120_000);
      await utimes(lockPath, old, old);
      await (await acquireFileLock(lockPath, { timeoutMs: 1000, staleAfterMs: 60_000 }))();
    }
  });

  it('tells holders with our pid apart by start time: another thread or copy of our code is live, an earlier process is not', async () => {
    const ours = (await readFile('/proc/self/stat', 'utf8')).split(') ')[1]!.split(' ')[19];
    const namespace = await readlink('/proc/self/ns/pid');
    const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    const lockPath = await lockPathIn();
    // Written by another copy of the code in this very process (a worker thread, the CJS build): respected.
    await writeFile(lockPath, `${process.pid}\n${hostname()}\nanother-copy\n${boot}\n${namespace}\n${ours}\n`);
    await expect(acquireFileLock(lockPath, { timeoutMs: 300, staleAfterMs: 600_000 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    // Same pid, another start time: an earlier process whose pid we now have. Taken at once.
    await writeFile(lockPath, `${process.pid}\n${hostname()}\nearlier\n${boot}\n${namespace}\n${Number(ours) - 1}\n`);
    await (await acquireFileLock(lockPath, { timeoutMs: 300, staleAfterMs: 600_000 }))();
  });

  it('a live worker thread\'s lock is respected by the main thread; a terminated worker\'s lock is taken at once', async () => {
    const lockPath = await lockPathIn();
    const lockModule = pathToFileURL(join(repoRoot, 'dist', 'internal', 'file-lock.js')).href;
    const worker = new Worker(`import(${JSON.stringify(lockModule)}).then(async (m) => { await m.acquireFileLock(` +
      `${JSON.stringify(lockPath)}); require('node:worker_threads').parentPort.postMessage('held'); setInterval(() => {}, 1000); });`,
      { eval: true });
    await new Promise((resolve) => worker.once('message', resolve));
    // Same pid, same process start time: only the thread tells them apart.
    await expect(acquireFileLock(lockPath, { timeoutMs: 300, staleAfterMs: 600_000 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    await worker.terminate();
    await (await acquireFileLock(lockPath, { timeoutMs: 2000, staleAfterMs: 600_000 }))();
  });

  it('in a PID namespace that kept its parent\'s /proc, two copies of the code in one process still exclude each other', async () => {
    // `unshare --pid --fork` without --mount-proc: /proc/<pid> there is some other process. The ESM copy holds
    // the lock; the CJS copy must wait, not judge the holder by probes through the wrong /proc.
    const lockPath = await lockPathIn();
    const esm = JSON.stringify(pathToFileURL(join(repoRoot, 'dist', 'internal', 'file-lock.js')).href);
    const cjs = JSON.stringify(join(repoRoot, 'dist', 'internal', 'file-lock.cjs'));
    const script = `const { createRequire } = await import('node:module'); const esm = await import(${esm}); ` +
      `const cjs = createRequire(import.meta.url)(${cjs}); await esm.acquireFileLock(${JSON.stringify(lockPath)}); ` +
      `const second = await cjs.acquireFileLock(${JSON.stringify(lockPath)}, { timeoutMs: 1000 }).then(() => 'ACQUIRED', (e) => e.code); ` +
      'console.log(`pid ${process.pid} ${second}`); process.exit(0);';
    const output = await new Promise<string>((resolve, reject) => {
      execFile('unshare', ['--pid', '--fork', process.execPath, '--input-type=module', '-e', script],
        (error, stdout, stderr) => (error ? reject(new Error(`${error.message}: ${stderr}`)) : resolve(stdout)));
    });
    expect(output.trim()).toBe('pid 1 LOCK_TIMEOUT');
  });

  it('respects a holder in another PID namespace (its pid cannot be probed from here) until it is untouched for staleAfterMs', async () => {
    const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    const lockPath = await lockPathIn();
    // pid 1 is alive in every namespace; the holder's own namespace says it is not ours.
    await writeFile(lockPath, `1\n${hostname()}\ncontainer\n${boot}\npid:[1]\n12345\n`);
    await expect(acquireFileLock(lockPath, { timeoutMs: 300, staleAfterMs: 5_000 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    const old = new Date(Date.now() - 60_000);
    await utimes(lockPath, old, old);
    await (await acquireFileLock(lockPath, { timeoutMs: 1000, staleAfterMs: 5_000 }))();
  });

  it('a breaker stopped in the middle of breaking, past the .break grace, never takes the live lock another process took meanwhile', async () => {
    const lockPath = await lockPathIn();
    await writeFile(lockPath, await lockfileOf(await deadPid(), 'stale'));
    const lockOptions = { timeoutMs: 30_000, staleAfterMs: 30_000 };
    // The breaker is held up for 3 s right after it created `.break` (its next open of `.break`): past the 2 s
    // after which another waiter takes that `.break` as abandoned, breaks the stale lock itself and holds the lock.
    const breaker = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-P', `${lockPath}.break`, '-e', 'trace=openat',
      '-e', 'inject=openat:delay_enter=3000000:when=2',
      process.execPath, join(repoRoot, 'test', 'fixtures', 'lock-holder.mjs'), JSON.stringify({ mode: 'watch', lockPath, lockOptions, holdMs: 500 })]);
    let breakerOut = '';
    breaker.stdout.setEncoding('utf8').on('data', (chunk: string) => { breakerOut += chunk; });
    const breakerDone = new Promise((resolve) => breaker.on('close', resolve));
    while (!breakerOut.includes('ACQUIRING')) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const others = [runFixture('lock-holder', { mode: 'watch', lockPath, lockOptions, holdMs: 4000 })];
    others.push(new Promise((resolve) => setTimeout(resolve, 3000)).then(() =>
      runFixture('lock-holder', { mode: 'watch', lockPath, lockOptions, holdMs: 1000 })));
    const results = await Promise.all(others);
    await breakerDone;
    for (const output of [breakerOut, ...results.map((r) => r.stdout)]) {
      expect(output).toContain('RELEASED');
      expect(output).not.toContain('LOST');
    }
  });

  it('a stale lock it may not remove ends in ACCESS_DENIED at once, not a spin until the timeout', async () => {
    // A dead holder's lockfile owned by root in a sticky, world-writable directory: another user may create
    // files there but not delete root's. The waiter runs as nobody (CI runs as root).
    const parent = await tempDir();
    await chmod(parent, 0o755);
    const directory = join(parent, 'shared');
    await mkdir(directory);
    await chmod(directory, 0o1777);
    const lockPath = join(directory, 'msal-cache.json.lockfile');
    await writeFile(lockPath, await lockfileOf(await deadPid(), 'dead'), { mode: 0o644 });
    const run = await runAs(65534, `import(${JSON.stringify(pathToFileURL(join(repoRoot, 'dist', 'internal', 'file-lock.js')).href)}).then((m) => ` +
      `m.acquireFileLock(${JSON.stringify(lockPath)}, { timeoutMs: 60000 })).then(() => console.log('ACQUIRED'), ` +
      '(e) => console.log(`CODE ${e.code}`));');
    expect(run.trim()).toBe('CODE ACCESS_DENIED');
    expect(existsSync(lockPath)).toBe(true);
  });

  it('refuses a staleAfterMs below the minimum, and bad timing values, with INVALID_OPTION', async () => {
    const lockPath = await lockPathIn();
    for (const lockOptions of [{ staleAfterMs: 100 }, { staleAfterMs: 999 }, { timeoutMs: 0 }, { timeoutMs: Number.NaN },
      { staleAfterMs: Infinity }, { staleAfterMs: 2 ** 31 }, { timeoutMs: 10_000_000_000 }]) {
      await expect(acquireFileLock(lockPath, lockOptions)).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    }
    expect(existsSync(lockPath)).toBe(false);
  });

  it('does not remove a lock that was taken over from it', async () => {
    const lockPath = await lockPathIn();
    const release = await acquireFileLock(lockPath);
    await writeFile(lockPath, `${process.ppid}\n${hostname()}\nsomeone-else\n`);
    await release();
    expect(await readFile(lockPath, 'utf8')).toContain('someone-else');
  });
});

describe.each(backends)('lock held inside a write, %s backend', (backend) => {
  it.runIf(backend !== 'libsecret' || isLinux)("no other process's reads or writes remove or take a writer's lock", async () => {
    const options = forChild(await storeOptions(backend));
    const lockPath = `${options.cachePath}.lockfile`;
    const holder = startFixture('worker', { task: 'hold-lock', options, users: ['holder'] });
    const holderPid = Number((await holder.waitFor('HOLDING')).split(' ')[1]);
    const lockBefore = await readFile(lockPath, 'utf8');
    expect(Number(lockBefore.split('\n')[0])).toBe(holderPid);

    const [reader, writer] = await Promise.all([
      runFixture('worker', { task: 'read', options }),
      runFixture('worker', { task: 'sign-in', options: { ...options, lockOptions: { timeoutMs: 500 } }, users: ['blocked'] }),
    ]);
    expect(reader.code).toBe(0);
    expect(writer.code).not.toBe(0);
    expect(writer.stderr).toContain('LOCK_TIMEOUT');
    expect(await readFile(lockPath, 'utf8')).toBe(lockBefore);

    holder.child.stdin.write('go\n');
    await holder.waitFor('RELEASED');
    expect((await holder.done).code).toBe(0);
    expect(existsSync(lockPath)).toBe(false);
  });
});
