// A silent read asks the store for its change token at most once per turn of the event loop (and once per
// millisecond within a long turn): the hot path's one system call, saved. These cases pin down what that must
// never cost: a change another process or thread made is seen by the first read after this process heard of it,
// whether it heard through a message (a new turn) or by waiting synchronously (execFileSync).
import { PublicClientApplication } from '@azure/msal-node';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { createCachePlugin, createPersistence, type Persistence } from '../src/index.js';
import { testAuthority } from '../src/token-endpoint.js';
import { backends, clientId, createTokenEndpoint, findAccount, forChild, isLinux, newClient, repoRoot, scopes, signIn, startFixture, storeOptions, waitForLine } from './helpers.js';

const workerFixture = join(repoRoot, 'test', 'fixtures', 'worker.mjs');
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Another writer of the same store, as a child process or a worker thread: signs in a user when told, says DONE. */
function startWriter(kind: 'process' | 'thread', options: Parameters<typeof forChild>[0]) {
  const args = JSON.stringify({ task: 'serve', options: forChild(options) });
  if (kind === 'process') {
    const fixture = startFixture('worker', { task: 'serve', options: forChild(options) });
    return { ...fixture, send: (line: string) => fixture.child.stdin.write(`${line}\n`), end: () => fixture.child.stdin.end() };
  }
  const worker = new Worker(workerFixture, { argv: [args], stdin: true, stdout: true, stderr: true });
  let stdout = '';
  let stderr = '';
  worker.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  worker.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const done = new Promise<number>((resolve) => worker.on('exit', resolve));
  const ended = done.then((code) => `worker exited (${code}): ${stderr}`);
  const waitFor = (prefix: string) => waitForLine(worker.stdout, () => stdout, ended, prefix);
  return { done, waitFor, send: (line: string) => worker.stdin!.write(`${line}\n`), end: () => worker.stdin!.end() };
}

describe.each(backends)('reads see other writers at once, %s backend', (backend) => {
  const runs = backend !== 'libsecret' || isLinux;

  it.runIf(runs)('within one turn the store is asked at most once a millisecond, and at least once a millisecond; each new turn asks again', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const inner = await createPersistence(options);
    const asks: number[] = [];
    const counting: Persistence = { ...inner, changeToken: () => { asks.push(performance.now()); return inner.changeToken(); } };
    const plugin = await createCachePlugin({ persistence: counting });
    const client = new PublicClientApplication({
      auth: { clientId, authority: testAuthority }, cache: { cachePlugin: plugin }, system: { networkClient: endpoint.networkClient },
    });
    const { account } = await signIn(client, 'burst');
    endpoint.refuse = true;

    await nextTurn();
    // 300 silent calls in one turn: msal-node and the in-process endpoint make no I/O, so nothing ends the turn.
    const calls: { startedAt: number; askedAt?: number }[] = [];
    for (let i = 0; i < 300; i++) {
      const before = asks.length;
      const startedAt = performance.now();
      await client.acquireTokenSilent({ account: account!, scopes });
      calls.push({ startedAt, ...(asks.length > before ? { askedAt: asks[before] } : {}) });
    }
    const ended = performance.now();
    expect(calls[0]!.askedAt).toBeDefined(); // the first read of a turn always asks
    const asked = calls.filter((call) => call.askedAt !== undefined).length;
    // Never twice within a millisecond: n asks span at least n - 1 ms of the burst...
    expect(asked).toBeLessThanOrEqual(Math.floor(ended - calls[0]!.startedAt) + 1);
    // ...and a call that starts more than a millisecond after the last ask asks again.
    let lastAsk = -Infinity;
    const late: number[] = [];
    calls.forEach((call, i) => {
      if (call.askedAt !== undefined) lastAsk = call.askedAt;
      else if (call.startedAt - lastAsk > 1.05) late.push(i);
    });
    expect(late).toEqual([]);

    // Every new turn asks once, whatever ended the last one.
    for (const end of [nextTurn, () => new Promise((resolve) => setTimeout(resolve, 0)), () => Promise.resolve().then(nextTurn)]) {
      await end();
      const before = asks.length;
      await client.acquireTokenSilent({ account: account!, scopes });
      await client.acquireTokenSilent({ account: account!, scopes });
      expect(asks.length - before).toBeGreaterThanOrEqual(1);
    }
  });

  it.runIf(runs)('a changeToken() that does real asynchronous work is asked on every read', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const inner = await createPersistence(options);
    let asks = 0;
    // An app's own persistence asking a server, say: its answer arrives in a later turn and stands for nothing after.
    const remote: Persistence = { ...inner, changeToken: async () => { asks++; await nextTurn(); return inner.changeToken(); } };
    const plugin = await createCachePlugin({ persistence: remote });
    const client = new PublicClientApplication({
      auth: { clientId, authority: testAuthority }, cache: { cachePlugin: plugin }, system: { networkClient: endpoint.networkClient },
    });
    const { account } = await signIn(client, 'remote');
    endpoint.refuse = true;
    const before = asks;
    for (let i = 0; i < 20; i++) await client.acquireTokenSilent({ account: account!, scopes });
    expect(asks - before).toBe(20);
  });

  it.runIf(runs).each(['process', 'thread'] as const)(
    'a sign-in by another %s is seen by the first read after its message, in the same turn, after a burst of reads',
    async (kind) => {
      const options = await storeOptions(backend);
      const endpoint = createTokenEndpoint();
      const { client } = await newClient(options, endpoint);
      const { account } = await signIn(client, 'here');
      const writer = startWriter(kind, options);
      await writer.waitFor('READY');
      const stale: string[] = [];
      for (let round = 0; round < 8; round++) {
        // Reads right up to the message, so the plugin holds a token from this very turn.
        for (let i = 0; i < 30; i++) await client.acquireTokenSilent({ account: account!, scopes });
        const user = `there-${round}`;
        writer.send(user);
        await writer.waitFor(`DONE ${user}`); // resolved inside the callback that delivered the line
        if (!findAccount(await client.getTokenCache().getAllAccounts(), endpoint, user)) stale.push(user);
      }
      writer.end();
      await writer.done;
      expect(stale).toEqual([]);
    },
  );

  it.runIf(runs)('a sign-in by a program run synchronously (execFileSync) is seen by the next read of the same turn', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    const { account } = await signIn(client, 'caller');
    const stale: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 30; i++) await client.acquireTokenSilent({ account: account!, scopes });
      const user = `synchronous-${round}`;
      execFileSync(process.execPath, [workerFixture, JSON.stringify({ task: 'sign-in', users: [user], options: forChild(options) })]);
      // No await between the child's exit and this read: the same turn of the event loop.
      if (!findAccount(await client.getTokenCache().getAllAccounts(), endpoint, user)) stale.push(user);
    }
    expect(stale).toEqual([]);
  });
});
