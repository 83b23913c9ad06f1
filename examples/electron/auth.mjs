// @ts-check
// Sign-in for an Electron app's main process, with the MSAL token cache encrypted by Electron's own
// safeStorage (through msal-keychain-cache: no keytar, no native module to rebuild or unpack).
// Used by main.mjs in the app; test/fixtures/electron-harness.mjs (in the repository) runs it in plain Node with a stand-in.
import { join } from 'node:path';
import { PublicClientApplication } from '@azure/msal-node';
import { createCachePlugin } from 'msal-keychain-cache';

/**
 * @param {object} options
 * @param {{ whenReady(): Promise<unknown>, getPath(name: string): string }} options.app  Electron's `app`
 * @param {object} options.safeStorage  Electron's `safeStorage` (main process)
 * @param {(url: string) => Promise<void>} options.openBrowser  e.g. `(url) => shell.openExternal(url)`
 * @param {string} options.clientId
 * @param {string} [options.authority]
 * @param {string[]} [options.scopes]
 * @param {import('@azure/msal-node').NodeSystemOptions} [options.system]  tests pass a networkClient here
 */
export async function createAuth({ app, safeStorage, openBrowser, clientId, authority, scopes = ['User.Read'], system = {} }) {
  await app.whenReady(); // safeStorage is not available before the app is ready
  const cachePlugin = await createCachePlugin({
    cachePath: join(app.getPath('userData'), 'msal-cache.bin'),
    safeStorage,
  });
  const msal = new PublicClientApplication({
    auth: { clientId, authority: authority ?? 'https://login.microsoftonline.com/organizations' },
    cache: { cachePlugin },
    system,
  });
  const firstAccount = async () => (await msal.getTokenCache().getAllAccounts())[0];

  return {
    /** Where the cache went, for an About box: 'safe-storage', encrypted unless Linux runs basic_text. */
    storage: { kind: cachePlugin.persistence.kind, encrypted: cachePlugin.persistence.encrypted },
    /** Opens the system browser; resolves with the signed-in account. */
    async signIn() {
      const result = await msal.acquireTokenInteractive({ scopes, openBrowser });
      return result.account;
    },
    /** A token from the cache (refreshed silently when needed), or null when the user must sign in. */
    async getToken() {
      const account = await firstAccount();
      if (!account) return null;
      try {
        return (await msal.acquireTokenSilent({ account, scopes })).accessToken;
      } catch {
        return null;
      }
    },
    account: firstAccount,
    async signOut() {
      for (const account of await msal.getTokenCache().getAllAccounts()) await msal.getTokenCache().removeAccount(account);
    },
    /** Sign-ins and sign-outs from any window or process of the app. */
    onAccountsChanged: (/** @type {import('msal-keychain-cache').CacheChangeListener} */ listener) => cachePlugin.onCacheChanged(listener),
  };
}
