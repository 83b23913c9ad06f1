#!/usr/bin/env node
// A command-line tool that signs in with the device code flow and keeps its MSAL token cache encrypted
// in the OS secret store through msal-keychain-cache. The next run gets tokens silently from the cache.
//
//   msal-cli login | whoami | token | logout
//
// Settings (environment): MSAL_CLI_CLIENT_ID (your app registration; public client flows enabled),
// MSAL_CLI_AUTHORITY (default https://login.microsoftonline.com/organizations), MSAL_CLI_SCOPES
// (space-separated, default "User.Read").
import { pathToFileURL } from 'node:url';
import { InteractionRequiredAuthError, PublicClientApplication } from '@azure/msal-node';
import { createCachePlugin, defaultCachePath } from 'msal-keychain-cache';

const usage = 'usage: msal-cli login | whoami | token | logout';

/**
 * Runs one command and returns the exit code. `overrides` exist for tests: msal-node `system` options
 * (a networkClient) and cache plugin options.
 */
export async function run(argv, { stdout = process.stdout, stderr = process.stderr, env = process.env, system = {}, cache = {} } = {}) {
  const [command, ...rest] = argv;
  if (!['login', 'whoami', 'token', 'logout'].includes(command) || rest.length > 0) {
    stderr.write(`${usage}\n`);
    return 2;
  }
  const clientId = env.MSAL_CLI_CLIENT_ID;
  if (!clientId) {
    stderr.write('Set MSAL_CLI_CLIENT_ID to your app registration\'s client id.\n');
    return 2;
  }
  const scopes = (env.MSAL_CLI_SCOPES ?? 'User.Read').split(/\s+/).filter(Boolean);
  const cachePlugin = await createCachePlugin({
    cachePath: defaultCachePath('msal-cli-example'),
    serviceName: 'msal-cli-example',
    ...cache,
  });
  const app = new PublicClientApplication({
    auth: { clientId, authority: env.MSAL_CLI_AUTHORITY ?? 'https://login.microsoftonline.com/organizations' },
    cache: { cachePlugin },
    system,
  });
  const [account] = await app.getTokenCache().getAllAccounts();

  switch (command) {
    case 'login': {
      const result = await app.acquireTokenByDeviceCode({
        scopes,
        deviceCodeCallback: (response) => stderr.write(`${response.message}\n`),
      });
      stdout.write(`Signed in as ${result.account?.username}\n`);
      return 0;
    }
    case 'whoami':
      if (!account) {
        stderr.write('Not signed in. Run: msal-cli login\n');
        return 1;
      }
      stdout.write(`${account.username}\n`);
      return 0;
    case 'token':
      if (!account) {
        stderr.write('Not signed in. Run: msal-cli login\n');
        return 1;
      }
      try {
        const result = await app.acquireTokenSilent({ account, scopes });
        stdout.write(`${result.accessToken}\n`);
        return 0;
      } catch (error) {
        if (!(error instanceof InteractionRequiredAuthError)) throw error;
        stderr.write('The session has expired. Run: msal-cli login\n');
        return 1;
      }
    case 'logout': {
      const accounts = await app.getTokenCache().getAllAccounts();
      for (const each of accounts) await app.getTokenCache().removeAccount(each);
      stdout.write(accounts.length > 0 ? `Signed out ${accounts.map((a) => a.username).join(', ')}\n` : 'Nobody was signed in\n');
      return 0;
    }
  }
  return 2;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.exitCode = await run(process.argv.slice(2));
  } catch (error) {
    // KeychainCacheError messages say what failed and how to fix it, and never contain tokens.
    process.stderr.write(`${error?.code ? `[${error.code}] ` : ''}${error?.message ?? error}\n`);
    process.exitCode = 1;
  }
}
