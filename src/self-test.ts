// `msal-keychain-cache self-test`: tells a user in seconds whether this machine can keep an encrypted
// MSAL cache, and if not, what to do. Works only in a throwaway location, never on a real cache.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { arch, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { KeychainCachePlugin } from './cache-plugin.js';
import { selectPersistence } from './create-persistence.js';
import { isKeychainCacheError, KeychainCacheError } from './errors.js';
import { acquireFileLock } from './file-lock.js';
import { explainDirectoryFailure } from './files.js';
import { createLogger } from './logger.js';
import { resolvePersistenceOptions } from './options.js';
import type { Persistence } from './persistence/types.js';
import type { SelfTestReport, SelfTestStep } from './self-test-report.js';
import { createTokenEndpoint, testAuthority } from './token-endpoint.js';

export interface SelfTestOptions {
  allowPlaintext?: boolean;
  /** How long a keyring prompt (unlock) may wait for the user; see the plugin option of that name. */
  promptTimeoutMs?: number;
  platform?: NodeJS.Platform;
  env?: NodeJS.ProcessEnv;
}

export type { SelfTestReport, SelfTestStep } from './self-test-report.js';
export { formatReport } from './self-test-report.js';

export async function runSelfTest(options: SelfTestOptions = {}): Promise<SelfTestReport> {
  const started = performance.now();
  const platform = options.platform ?? process.platform;
  const report: SelfTestReport = {
    ok: false, platform, arch: arch(), node: process.version, candidates: [], chosen: null, steps: [], totalMs: 0,
  };
  let directory: string | undefined;
  let persistence: Persistence | undefined;
  try {
    directory = await mkdtemp(join(tmpdir(), 'msal-keychain-cache-self-test-')).catch(async (error: unknown) => {
      // The library's own diagnosis (the same codes and fixes a cachePath there would get), then the self-test's hint.
      const why = await explainDirectoryFailure(tmpdir(), error, 'create a scratch directory in');
      throw new KeychainCacheError(why.code, `The self-test works in a throwaway directory in ${tmpdir()} and cannot create ` +
        `one there: ${why.message} Point TMPDIR at a directory you can write (e.g. TMPDIR="$HOME/tmp") and run it again. ` +
        'Your cache directory needs the same: a folder this user can create files in.', { cause: error });
    });
    const resolved = resolvePersistenceOptions({
      cachePath: join(directory, 'cache', 'msal-cache.json'),
      serviceName: 'msal-keychain-cache-self-test',
      accountName: `self-test-${process.pid}-${randomBytes(4).toString('hex')}`,
      allowPlaintextFallback: options.allowPlaintext === true,
      ...(options.promptTimeoutMs === undefined ? {} : { promptTimeoutMs: options.promptTimeoutMs }),
      platform,
      env: options.env ?? process.env,
      // Plaintext fallback is reported in the output; no warning line on top of it.
      loggerOptions: { loggerCallback: () => undefined },
    });
    const selection = await selectPersistence(resolved, createLogger(resolved.loggerOptions));
    report.candidates = [...selection.attempts, {
      kind: 'safe-storage', usable: false, code: 'NOT_APPLICABLE', ms: 0,
      reason: "Electron apps only: pass `safeStorage` from Electron's main process (cannot be checked from this command).",
    }];
    if (!selection.persistence) {
      const error = selection.error ?? new KeychainCacheError('BACKEND_UNAVAILABLE', 'No backend is usable.');
      report.error = { code: error.code, message: error.message };
      return report;
    }
    persistence = selection.persistence;
    const store = await persistence.describeStore?.();
    report.chosen = { kind: persistence.kind, encrypted: persistence.encrypted, ...(store ? { store } : {}) };
    report.steps.push(await step('store round trip', () => storeRoundTrip(persistence!)));
    report.steps.push(await step('lock round trip', () => lockRoundTrip(persistence!.cachePath)));
    report.steps.push(await step('msal round trip', () => msalRoundTrip(persistence!)));
    const failed = report.steps.find((s) => s.status === 'failed');
    report.ok = !failed;
    if (failed) report.error = { code: failed.code ?? 'STORE_FAILED', message: `${failed.name} failed: ${failed.detail}` };
    return report;
  } catch (error) {
    report.error = isKeychainCacheError(error)
      ? { code: error.code, message: error.message }
      : { code: 'STORE_FAILED', message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
    return report;
  } finally {
    await persistence?.delete().catch(() => undefined);
    if (directory !== undefined) await rm(directory, { recursive: true, force: true });
    report.totalMs = performance.now() - started;
  }
}

class Skip extends Error {}

async function step(name: SelfTestStep['name'], run: () => Promise<string>): Promise<SelfTestStep> {
  const started = performance.now();
  try {
    const detail = await run();
    return { name, status: 'ok', ms: performance.now() - started, detail };
  } catch (error) {
    const ms = performance.now() - started;
    if (error instanceof Skip) return { name, status: 'skipped', ms, detail: error.message };
    const code = isKeychainCacheError(error) ? error.code : undefined;
    const detail = error instanceof Error ? error.message : String(error);
    return { name, status: 'failed', ms, detail, ...(code ? { code } : {}) };
  }
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new KeychainCacheError('STORE_FAILED', what);
}

async function storeRoundTrip(persistence: Persistence): Promise<string> {
  const payload = JSON.stringify({ selfTest: randomBytes(16).toString('hex') });
  const before = await persistence.changeToken();
  await persistence.save(payload);
  check((await persistence.load()) === payload, 'the saved cache read back differently');
  check((await persistence.changeToken()) !== before, 'saving did not change the change token, so other processes would miss updates');
  check(await persistence.delete(), 'delete reported nothing to delete');
  check((await persistence.load()) === null, 'the cache was still there after delete');
  return `save, load, change detection and delete on ${persistence.location}`;
}

async function lockRoundTrip(cachePath: string): Promise<string> {
  const lockPath = `${cachePath}.lockfile`;
  const release = await acquireFileLock(lockPath, { timeoutMs: 1000 });
  try {
    try {
      await acquireFileLock(lockPath, { timeoutMs: 30 });
      throw new KeychainCacheError('STORE_FAILED', `a second lock on ${lockPath} was granted while the first was held`);
    } catch (error) {
      if (!isKeychainCacheError(error, 'LOCK_TIMEOUT')) throw error;
    }
  } finally {
    await release();
  }
  const again = await acquireFileLock(lockPath, { timeoutMs: 1000 });
  await again();
  return 'exclusive while held, free again after release';
}

async function msalRoundTrip(persistence: Persistence): Promise<string> {
  let msal: typeof import('@azure/msal-node');
  try {
    msal = await import('@azure/msal-node');
  } catch {
    throw new Skip('@azure/msal-node is not installed next to msal-keychain-cache (it is a peer dependency)');
  }
  const endpoint = createTokenEndpoint();
  const client = () => new msal.PublicClientApplication({
    auth: { clientId: 'self-test-client', authority: testAuthority },
    cache: { cachePlugin: new KeychainCachePlugin(persistence) },
    system: { networkClient: endpoint.networkClient },
  });
  const scopes = ['User.Read'];
  const signIn = await client().acquireTokenByCode({ code: 'self-test-user', scopes, redirectUri: 'http://localhost' });
  check(signIn.account !== null, 'sign-in returned no account');
  endpoint.refuse = true; // from here on only the persisted cache can answer
  const fresh = client();
  const accounts = await fresh.getTokenCache().getAllAccounts();
  check(accounts.length === 1, `a fresh client found ${accounts.length} accounts in the store instead of 1`);
  const silent = await fresh.acquireTokenSilent({ account: accounts[0]!, scopes });
  check(silent.accessToken === signIn.accessToken, 'a fresh client did not get the stored token silently');
  await fresh.getTokenCache().removeAccount(accounts[0]!);
  check((await client().getTokenCache().getAllAccounts()).length === 0, 'sign-out did not remove the account from the store');
  return 'sign-in persisted; a fresh client got the account and a silent token from the store; sign-out removed it';
}
