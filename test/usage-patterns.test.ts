// The usage-pattern matrix (DESIGN.md section 7, issue 10): no lost update, exclusion and no STORE_FAILED
// in every way apps use the package, on every backend a process can share. Every case reads the store back
// from a fresh process (test/fixtures/usage-verify.mjs); the apps themselves are test/fixtures/usage-run.mjs.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { errorCodes } from '../src/index.js';
import type { BackendKind } from '../src/persistence/types.js';
import { forChild, isLinux, processBackends, repoRoot, storeOptions } from './helpers.js';
import {
  allPresent, installTwoCopies, leftoversBeside, namespacedPid, runUsage, startUsage, usersFor, verifyStore, type UsageResult,
} from './usage-helpers.js';

const esm = { path: join(repoRoot, 'dist', 'esm', 'index.js'), load: 'import' as const };
const cjs = { path: join(repoRoot, 'dist', 'cjs', 'index.js'), load: 'require' as const };
const distributed = { path: join(repoRoot, 'dist', 'esm', 'distributed', 'index.js'), load: 'import' as const };
// Small enough for a stalled or dead holder to be noticed within a test, as a container's would be.
const staleAfterMs = 2000;

/** Every sign-in of every process completed, with no error of any kind. */
function expectAllSignedIn(results: UsageResult[], users: string[]): void {
  expect(results.flatMap((r) => r.errors)).toEqual([]);
  expect(results.flatMap((r) => r.done).sort()).toEqual([...users].sort());
}

/**
 * Three processes, each loading every copy of our code in `entries` and signing in 8 users through each copy's
 * own plugin at once: every sign-in lands, a fresh process reads them all back, nothing is left beside the cache.
 */
async function signInThroughEachCopy(backend: BackendKind, entries: Record<string, { path: string; load: 'import' | 'require' }>) {
  const options = forChild(await storeOptions(backend));
  const users: string[] = [];
  const results = await Promise.all([0, 1, 2].map((p) => runUsage({
    options,
    entries,
    parts: Object.keys(entries).map((entry) => {
      const list = usersFor(`${entry}-p${p}`, 8);
      users.push(...list);
      return { entry, clientId: 'app', users: list };
    }),
  })));
  expectAllSignedIn(results, users);
  expect(await verifyStore(options, { app: users })).toEqual(allPresent({ app: users }));
  expect(await leftoversBeside(options)).toEqual([]);
}

describe.each(processBackends)('usage patterns, %s backend', (backend) => {
  const runs = backend !== 'libsecret' || isLinux;

  describe('several msal clients per plugin', () => {
    // One process alone makes the interleaving deterministic (nobody else's write hides the bug); two add
    // another process's writes in between.
    it.runIf(runs).each([1, 2])('one plugin shared by two client ids signing in at once, interleaved, in %i process(es)', async (processes) => {
      const options = forChild(await storeOptions(backend));
      const clients = { 'client-a': [] as string[], 'client-b': [] as string[] };
      const results = await Promise.all(Array.from({ length: processes }, (_, p) => {
        const parts = (['client-a', 'client-b'] as const).map((clientId) => {
          const users = usersFor(`shared-p${p}-${clientId}`, 8);
          clients[clientId].push(...users);
          return { plugin: 'one', clientId, users };
        });
        return runUsage({ options, parts });
      }));
      expectAllSignedIn(results, Object.values(clients).flat());
      expect(await verifyStore(options, clients)).toEqual(allPresent(clients));
      expect(await leftoversBeside(options)).toEqual([]);
    });

    it.runIf(runs).each([1, 2])('a new PublicClientApplication per command around a module-level plugin, in %i process(es)', async (processes) => {
      const options = forChild(await storeOptions(backend));
      const users = Array.from({ length: processes }, (_, p) => usersFor(`per-command-p${p}`, 10));
      const results = await Promise.all(users.map((list) =>
        runUsage({ options, parts: [{ plugin: 'module-level', clientId: 'cli', users: list, perCommand: true }] })));
      expectAllSignedIn(results, users.flat());
      const clients = { cli: users.flat() };
      expect(await verifyStore(options, clients)).toEqual(allPresent(clients));
      expect(await leftoversBeside(options)).toEqual([]);
    });
  });

  describe('several copies of our code in one process', () => {
    it.runIf(runs)('worker threads, each with its own plugin, beside another process', async () => {
      const options = forChild(await storeOptions(backend));
      const threadUsers = [0, 1, 2, 3].map((t) => usersFor(`thread-t${t}`, 6));
      const otherUsers = usersFor('thread-other-process', 6);
      const results = await Promise.all([
        runUsage({ options, parts: threadUsers.map((users) => ({ clientId: 'app', users, thread: true })) }),
        runUsage({ options, parts: [{ clientId: 'app', users: otherUsers }] }),
      ]);
      const all = [...threadUsers.flat(), ...otherUsers];
      expectAllSignedIn(results, all);
      expect(await verifyStore(options, { app: all })).toEqual(allPresent({ app: all }));
      expect(await leftoversBeside(options)).toEqual([]);
    });

    it.runIf(runs)('the ESM and the CJS build loaded in one process, a plugin from each, in three processes', async () => {
      await signInThroughEachCopy(backend, { esm, cjs });
    });

    it.runIf(runs)('two installed copies of the package loaded in one process, in three processes', async () => {
      const [first, second] = await installTwoCopies();
      await signInThroughEachCopy(backend, { first: { path: first, load: 'import' }, second: { path: second, load: 'import' } });
    });

    it.runIf(runs)('the main entry signing in while the /distributed bundle takes the same lock (keyFromPersistence), in three processes', async () => {
      // The one lockfile both bundles of an app share: the persistence's, when the blob key is kept in it.
      const options = forChild(await storeOptions(backend));
      const created = await runUsage({ options, entries: { distributed }, parts: [{ plugin: 'p', keyLoop: 'distributed' }] });
      expect(created.errors).toEqual([]);
      const [key] = created.keys;
      const users: string[] = [];
      const results = await Promise.all([0, 1, 2].map((p) => {
        const list = usersFor(`main-with-distributed-p${p}`, 10);
        users.push(...list);
        return runUsage({
          options,
          entries: { distributed },
          parts: [{ plugin: 'p', clientId: 'app', users: list }, { plugin: 'p', keyLoop: 'distributed' }],
        });
      }));
      expectAllSignedIn(results, users);
      expect(results.flatMap((r) => r.keys)).toEqual([key, key, key]);
      expect(await verifyStore(options, { app: users }, true)).toEqual(allPresent({ app: users }, { key }));
      expect(await leftoversBeside(options)).toEqual([]);
    });
  });

  // unshare needs root (CI runs as root); both children are pid 1 of their own namespace, on one host name.
  describe.runIf(runs && isLinux)('processes in separate PID namespaces on one shared directory', () => {
    it('several sign in at once and lose nothing', async () => {
      const options = forChild(await storeOptions(backend));
      const users = [0, 1, 2].map((p) => usersFor(`pidns-p${p}`, 10));
      const results = await Promise.all(users.map((list) =>
        runUsage({ options, parts: [{ clientId: 'app', users: list }] }, { pidNamespace: true })));
      expectAllSignedIn(results, users.flat());
      expect(await verifyStore(options, { app: users.flat() })).toEqual(allPresent({ app: users.flat() }));
      expect(await leftoversBeside(options)).toEqual([]);
    });

    it('a live holder in another namespace keeps its lock: the waiter times out, the holder saves', async () => {
      const options = forChild(await storeOptions(backend, { lockOptions: { staleAfterMs } }));
      const holder = startUsage('usage-run', { options, parts: [{ clientId: 'app', users: ['live-holder'], hold: true }] }, { pidNamespace: true });
      await holder.waitFor('HOLDING');
      // Long enough for the age rule to fire twice over if the holder's heartbeat were not seen.
      const waiterOptions = { ...options, lockOptions: { staleAfterMs, timeoutMs: 2 * staleAfterMs } };
      const waiter = await runUsage({ options: waiterOptions, parts: [{ clientId: 'app', users: ['waiter'] }] }, { pidNamespace: true });
      holder.child.stdin!.write('go on\n');
      const held = await holder.done;
      expect(waiter.errors).toEqual([{ user: 'waiter', code: 'LOCK_TIMEOUT' }]);
      expect(held.result).toMatchObject({ done: ['live-holder'], errors: [] });
      expect(await verifyStore(options, { app: ['live-holder'] })).toEqual(allPresent({ app: ['live-holder'] }));
      expect(await leftoversBeside(options)).toEqual([]);
    });

    it('a holder killed with SIGKILL does not block the others for good', async () => {
      const options = forChild(await storeOptions(backend, { lockOptions: { staleAfterMs } }));
      const holder = startUsage('usage-run', { options, parts: [{ clientId: 'app', users: ['killed-holder'], hold: true }] }, { pidNamespace: true });
      await holder.waitFor('HOLDING');
      process.kill(await namespacedPid(holder.child.pid!), 'SIGKILL');
      await holder.done;
      const users = [0, 1].map((p) => usersFor(`after-kill-p${p}`, 4));
      const results = await Promise.all(users.map((list) =>
        runUsage({ options, parts: [{ clientId: 'app', users: list }] }, { pidNamespace: true })));
      expectAllSignedIn(results, users.flat());
      expect(await verifyStore(options, { app: users.flat() })).toEqual(allPresent({ app: users.flat() }));
      expect(await leftoversBeside(options)).toEqual([]);
    });
  });

  // Woken with nobody else writing, the stale save would simply replace the newer cache; woken while another
  // writer is busy, going on with its write must take the lock again and not write over that writer either.
  it.runIf(runs).each(['nobody else is writing', 'another writer is busy'])('a holder stopped (SIGSTOP) inside its write past staleAfterMs never saves over the writer that broke its lock (woken while %s)', async (when) => {
    const options = forChild(await storeOptions(backend, { lockOptions: { staleAfterMs } }));
    const stalled = startUsage('usage-run', { options, parts: [{ clientId: 'app', users: ['stalled'], hold: true }] });
    await stalled.waitFor('HOLDING');
    stalled.child.kill('SIGSTOP');
    const users = usersFor('while-stalled', 4);
    const afterWake = when === 'another writer is busy' ? usersFor('after-wake', 12) : [];
    let next: UsageResult;
    let busy: ReturnType<typeof startUsage> | undefined;
    try {
      next = await runUsage({ options, parts: [{ clientId: 'app', users }] });
      if (afterWake.length > 0) {
        busy = startUsage('usage-run', { options, parts: [{ clientId: 'app', users: afterWake }] });
        await busy.waitFor('DONE');
      }
    } finally {
      stalled.child.stdin!.write('go on\n');
      stalled.child.kill('SIGCONT');
    }
    const woke = await stalled.done;
    const others = busy ? [next, (await busy.done).result!] : [next];
    expectAllSignedIn(others, [...users, ...afterWake]);
    // The stalled write either lands as well or fails with one of our codes; never untyped, never STORE_FAILED.
    expect(woke.result, woke.stderr).toBeDefined();
    const outcome = woke.result!;
    const landed = outcome.done.includes('stalled');
    if (!landed) {
      expect(outcome.errors).toHaveLength(1);
      expect(errorCodes).toContain(outcome.errors[0]!.code);
      expect(outcome.errors[0]!.code).not.toBe('STORE_FAILED');
    }
    const clients = { app: landed ? [...users, ...afterWake, 'stalled'] : [...users, ...afterWake] };
    expect(await verifyStore(options, clients)).toEqual(allPresent(clients));
    expect(await leftoversBeside(options)).toEqual([]);
  });
});
