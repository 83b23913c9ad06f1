// Both directions through the real clients: a cache written by @azure/msal-node-extensions 5.x is read by
// ours with every account and token, and ours is read by theirs.
import { PublicClientApplication } from '@azure/msal-node';
import { FilePersistence, LibSecretPersistence, PersistenceCachePlugin } from '@azure/msal-node-extensions';
import { describe, expect, it } from 'vitest';
import type { CachePluginOptions } from '../src/index.js';
import { testAuthority, type TokenEndpoint } from '../src/token-endpoint.js';
import { backends, clientId, createTokenEndpoint, findAccount, isLinux, newClient, scopes, signIn, storeOptions } from './helpers.js';

async function theirClient(options: CachePluginOptions, endpoint: TokenEndpoint) {
  const persistence = options.backend === 'libsecret'
    ? await LibSecretPersistence.create(options.cachePath, options.serviceName!, options.accountName!)
    : await FilePersistence.create(options.cachePath);
  return new PublicClientApplication({
    auth: { clientId, authority: testAuthority },
    cache: { cachePlugin: new PersistenceCachePlugin(persistence) },
    system: { networkClient: endpoint.networkClient },
  });
}

const users = ['interop-a', 'interop-b', 'interop-c'];

describe.each(backends)('msal-node-extensions interop, %s backend', (backend) => {
  const runs = backend !== 'libsecret' || isLinux;

  it.runIf(runs)('reads a cache that msal-node-extensions wrote: all accounts, tokens served silently', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const theirs = await theirClient(options, endpoint);
    const tokens = new Map<string, string>();
    for (const user of users) {
      tokens.set(user, (await signIn(theirs, user)).accessToken);
      // Their plugin decides reloads by mtime; a pause keeps their own writes from losing each other.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    endpoint.refuse = true;
    const { client } = await newClient(options, endpoint);
    const accounts = await client.getTokenCache().getAllAccounts();
    for (const user of users) {
      const account = findAccount(accounts, endpoint, user);
      expect(account, user).toBeDefined();
      expect((await client.acquireTokenSilent({ account: account!, scopes })).accessToken).toBe(tokens.get(user));
    }
  });

  it.runIf(runs)('writes a cache that msal-node-extensions reads: all accounts, tokens served silently', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    const tokens = new Map<string, string>();
    for (const user of users) tokens.set(user, (await signIn(client, user)).accessToken);
    endpoint.refuse = true;
    const theirs = await theirClient(options, endpoint);
    const accounts = await theirs.getTokenCache().getAllAccounts();
    expect(accounts).toHaveLength(users.length);
    for (const user of users) {
      const account = findAccount(accounts, endpoint, user)!;
      expect((await theirs.acquireTokenSilent({ account, scopes })).accessToken).toBe(tokens.get(user));
    }
  });
});
