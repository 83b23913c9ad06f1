import { ConfidentialClientApplication, PublicClientApplication } from '@azure/msal-node';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { createCachePlugin, createPersistence, type Persistence } from '../src/index.js';
import { testAuthority } from '../src/token-endpoint.js';
import { backends, clientId, createTokenEndpoint, findAccount, isLinux, newClient, recordingLogger, scopes, signIn, storeOptions } from './helpers.js';

describe.each(backends)('one process, %s backend', (backend) => {
  const runs = backend !== 'libsecret' || isLinux;

  it.runIf(runs)('keeps all 40 sign-ins: each is served silently from the cache with the token endpoint refusing', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    const failures: string[] = [];
    for (let i = 0; i < 40; i++) {
      const user = `single-${i}`;
      const signedIn = await signIn(client, user);
      endpoint.refuse = true;
      try {
        const silent = await client.acquireTokenSilent({ account: signedIn.account!, scopes });
        if (silent.accessToken !== signedIn.accessToken) failures.push(`${user}: different token`);
      } catch (error) {
        failures.push(`${user}: ${(error as Error).message}`);
      }
      endpoint.refuse = false;
    }
    expect(failures).toEqual([]);
    expect(await client.getTokenCache().getAllAccounts()).toHaveLength(40);
    expect(endpoint.requests.authorization_code).toBe(40);
    expect(endpoint.requests.refresh_token ?? 0).toBe(0);
  });

  it.runIf(runs)('keeps concurrent sign-ins from one client and a second plugin instance in the same process', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const first = await newClient(options, endpoint);
    const second = await newClient(options, endpoint);
    const users = Array.from({ length: 20 }, (_, i) => `concurrent-${i}`);
    await Promise.all(users.map((user, i) => signIn(i % 2 ? first.client : second.client, user)));
    endpoint.refuse = true;
    const fresh = await newClient(options, endpoint);
    const accounts = await fresh.client.getTokenCache().getAllAccounts();
    expect(users.filter((u) => !findAccount(accounts, endpoint, u))).toEqual([]);
  });

  it.runIf(runs)('one plugin shared by msal clients with different client ids, created at any time, loses no account', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const { plugin } = await newClient(options, endpoint);
    const clientFor = (id: string) => new PublicClientApplication({
      auth: { clientId: id, authority: testAuthority },
      cache: { cachePlugin: plugin },
      system: { networkClient: endpoint.networkClient },
    });
    const tool = clientFor('tool-a');
    const other = clientFor('tool-b');
    await Promise.all([signIn(tool, 'shared-a1'), signIn(other, 'shared-b1'), signIn(tool, 'shared-a2')]);
    // A CLI building a new client per command around the module-level plugin: each must load the store
    // before its first write, or its write replaces the store with its own near-empty memory.
    for (let i = 0; i < 3; i++) await signIn(clientFor(i % 2 ? 'tool-a' : 'tool-b'), `per-command-${i}`);
    await signIn(other, 'shared-b2');
    endpoint.refuse = true;
    const fresh = await newClient(options, endpoint);
    const accounts = await fresh.client.getTokenCache().getAllAccounts();
    const users = ['shared-a1', 'shared-b1', 'shared-a2', 'per-command-0', 'per-command-1', 'per-command-2', 'shared-b2'];
    expect(users.filter((u) => !findAccount(accounts, endpoint, u))).toEqual([]);
    // Every client still sees every account (its memory follows the store, not only its own writes).
    for (const client of [tool, other]) {
      const seen = await client.getTokenCache().getAllAccounts();
      expect(users.filter((u) => !findAccount(seen, endpoint, u))).toEqual([]);
    }
  });

  // A writer stopped (SIGSTOP, a debugger) at `where` while another process, finding its lock older than
  // staleAfterMs, breaks it and signs in: when it wakes it must re-apply its write on the newer cache.
  it.runIf(runs).each(['inside its write, before the save', 'inside the save, after its first fence'] as const)(
    'a writer whose lock was broken while it was stopped %s re-applies its write instead of overwriting the newer cache', async (where) => {
      const options = await storeOptions(backend);
      const endpoint = createTokenEndpoint();
      const log = recordingLogger();
      await signIn((await newClient(options, endpoint)).client, 'before');
      const gate = stopOnce();
      const real = await createPersistence(options);
      const persistence: Persistence = where.startsWith('inside the save') ? {
        ...real,
        load: () => real.load(), delete: () => real.delete(), changeToken: () => real.changeToken(),
        quarantine: () => real.quarantine(), verify: () => real.verify(),
        save: async (contents, saveOptions) => { await gate.stop(); return real.save(contents, saveOptions); },
      } : real;
      const plugin = await createCachePlugin({ persistence, loggerOptions: log.loggerOptions });
      const stalling = new PublicClientApplication({
        auth: { clientId, authority: testAuthority },
        cache: {
          cachePlugin: where.startsWith('inside its write') ? {
            async beforeCacheAccess(context) {
              await plugin.beforeCacheAccess(context);
              if (context.cacheHasChanged) await gate.stop();
            },
            afterCacheAccess: (context) => plugin.afterCacheAccess(context),
          } : plugin,
        },
        system: { networkClient: endpoint.networkClient },
      });
      const stalled = signIn(stalling, 'stalled');
      await gate.stopped;
      await rm(`${options.cachePath}.lockfile`);
      await signIn((await newClient(options, endpoint)).client, 'newer');
      gate.resume();
      await stalled;
      endpoint.refuse = true;
      const accounts = await (await newClient(options, endpoint)).client.getTokenCache().getAllAccounts();
      expect(['before', 'newer', 'stalled'].filter((u) => !findAccount(accounts, endpoint, u))).toEqual([]);
      expect(log.lines.some((l) => /taken from this process/.test(l.message))).toBe(true);
      expect(existsSync(`${options.cachePath}.lockfile`)).toBe(false);
    });

  it.runIf(runs)('a completed sign-out stays done: another client\'s next sign-in does not write the removed account back', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const shared = await newClient(options, endpoint);
    const otherClientOnSharedPlugin = new PublicClientApplication({
      auth: { clientId: 'second-client', authority: testAuthority },
      cache: { cachePlugin: shared.plugin },
      system: { networkClient: endpoint.networkClient },
    });
    // Another plugin instance stands for another process.
    const elsewhere = await newClient(options, endpoint);
    await signIn(shared.client, 'u0');
    await signIn(shared.client, 'u1');
    for (const [remover, user] of [[elsewhere.client, 'u0'], [otherClientOnSharedPlugin, 'u1']] as const) {
      const account = findAccount(await remover.getTokenCache().getAllAccounts(), endpoint, user)!;
      await remover.getTokenCache().removeAccount(account);
    }
    // The first client still had u0 and u1 in memory: its next write must not bring them back.
    await signIn(shared.client, 'u2');
    endpoint.refuse = true;
    const accounts = await (await newClient(options, endpoint)).client.getTokenCache().getAllAccounts();
    expect(['u0', 'u1', 'u2'].filter((u) => findAccount(accounts, endpoint, u))).toEqual(['u2']);
  });

  it.runIf(runs)('persists refreshed tokens (refresh_token grant) and sign-out', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    const signedIn = await signIn(client, 'refresher');
    const refreshed = await client.acquireTokenSilent({ account: signedIn.account!, scopes, forceRefresh: true });
    expect(endpoint.requests.refresh_token).toBe(1);
    expect(refreshed.accessToken).not.toBe(signedIn.accessToken);

    endpoint.refuse = true;
    const fresh = await newClient(options, endpoint);
    const [account] = await fresh.client.getTokenCache().getAllAccounts();
    expect((await fresh.client.acquireTokenSilent({ account: account!, scopes })).accessToken).toBe(refreshed.accessToken);

    await fresh.client.getTokenCache().removeAccount(account!);
    const after = await newClient(options, endpoint);
    expect(await after.client.getTokenCache().getAllAccounts()).toEqual([]);
  });

  it.runIf(runs)('persists client-credential tokens of a ConfidentialClientApplication', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const make = async () => new ConfidentialClientApplication({
      auth: { clientId, authority: testAuthority, clientSecret: 'test-secret' },
      cache: { cachePlugin: (await newClient(options, endpoint)).plugin },
      system: { networkClient: endpoint.networkClient },
    });
    const appScopes = ['https://graph.microsoft.com/.default'];
    const first = await (await make()).acquireTokenByClientCredential({ scopes: appScopes });
    endpoint.refuse = true;
    const second = await (await make()).acquireTokenByClientCredential({ scopes: appScopes });
    expect(second?.accessToken).toBe(first?.accessToken);
    expect(endpoint.requests.client_credentials).toBe(1);
  });
});

/** A point where code under test stops once, until the test resumes it. */
function stopOnce() {
  let resume!: () => void;
  const resumed = new Promise<void>((resolve) => { resume = resolve; });
  let stoppedNow!: () => void;
  const stopped = new Promise<void>((resolve) => { stoppedNow = resolve; });
  let done = false;
  return {
    stopped,
    resume,
    async stop() {
      if (done) return;
      done = true;
      stoppedNow();
      await resumed;
    },
  };
}
