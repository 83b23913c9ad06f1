// onCacheChanged: accounts added or removed, by this process or by another one while this one is idle.
import { describe, expect, it } from 'vitest';
import type { CacheChange } from '../src/index.js';
import { createTokenEndpoint, forChild, isLinux, newClient, processBackends, recordingLogger, runFixture, signIn, storeOptions } from './helpers.js';

/** Waits (up to 10 s: a correctness wait, not a timing assertion) until `ready()` holds. */
async function until(ready: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.each(processBackends)('cacheChanged notifications, %s backend', (backend) => {
  const runs = backend !== 'libsecret' || isLinux;

  it.runIf(runs)('reports this process\'s sign-in and sign-out with the account, once each', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const { client, plugin } = await newClient(options, endpoint);
    await signIn(client, 'before-listening');
    const changes: CacheChange[] = [];
    const unsubscribe = plugin.onCacheChanged((change) => changes.push(change));
    await new Promise((resolve) => setTimeout(resolve, 50)); // let the baseline load land
    const signedIn = await signIn(client, 'listened');
    await until(() => changes.length >= 1, 'the sign-in event');
    expect(changes[0]).toMatchObject({ origin: 'this-process', removed: [],
      added: [{ localAccountId: endpoint.objectIdFor('listened'), homeAccountId: signedIn.account!.homeAccountId, username: expect.any(String) }] });
    await client.getTokenCache().removeAccount(signedIn.account!);
    await until(() => changes.length >= 2, 'the sign-out event');
    expect(changes[1]).toMatchObject({ origin: 'this-process', added: [], removed: [{ homeAccountId: signedIn.account!.homeAccountId }] });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(changes).toHaveLength(2); // the watcher did not report our own writes again
    unsubscribe();
  });

  it.runIf(runs)('reports another process\'s sign-in while this process is idle, and nothing after unsubscribing', async () => {
    const log = recordingLogger();
    const options = await storeOptions(backend);
    const { plugin } = await newClient({ ...options, loggerOptions: log.loggerOptions }, createTokenEndpoint());
    const changes: CacheChange[] = [];
    const unsubscribe = plugin.onCacheChanged((change) => changes.push(change));
    const unsubscribeBroken = plugin.onCacheChanged(() => { throw new Error('a broken listener'); });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const child = await runFixture('worker', { task: 'sign-in', options: forChild(options), users: ['elsewhere'] });
    expect(child.code).toBe(0);
    await until(() => changes.length >= 1, 'the other process\'s sign-in');
    expect(changes[0]).toMatchObject({ origin: 'another-process', removed: [], added: [{ localAccountId: createTokenEndpoint().objectIdFor('elsewhere') }] });
    unsubscribe();
    unsubscribeBroken();
    const second = await runFixture('worker', { task: 'sign-in', options: forChild(options), users: ['unheard'] });
    expect(second.code).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(changes).toHaveLength(1);
    expect(log.lines.filter((l) => l.level === 1 && /cacheChanged listener threw/.test(l.message))).toHaveLength(1);
    // Accounts go to listeners, never into logs.
    expect(log.lines.filter((l) => l.message.includes(createTokenEndpoint().objectIdFor('elsewhere')))).toEqual([]);
  });
});
