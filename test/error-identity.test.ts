// One error identity: an error thrown by any entry point, in either module format, is a KeychainCacheError to
// every other one (issue 12), through the built bundles users load.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers.js';

const dist = (format: 'esm' | 'cjs', entry: string) => join(repoRoot, 'dist', format, entry);

describe('KeychainCacheError is one class across entry points and module formats', () => {
  it('errors from /distributed and the main entry, ESM and CommonJS, pass instanceof and isKeychainCacheError of every copy', async () => {
    const script = `
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      const copies = {
        esmMain: await import(${JSON.stringify(dist('esm', 'index.js'))}),
        cjsMain: require(${JSON.stringify(dist('cjs', 'index.js'))}),
        esmDistributed: await import(${JSON.stringify(dist('esm', 'distributed/index.js'))}),
        cjsDistributed: require(${JSON.stringify(dist('cjs', 'distributed/index.js'))}),
        esmSelfTest: await import(${JSON.stringify(dist('esm', 'self-test.js'))}),
        cjsSelfTest: require(${JSON.stringify(dist('cjs', 'self-test.js'))}),
      };
      const thrown = {};
      const capture = async (name, run) => { try { await run(); thrown[name] = null; } catch (error) { thrown[name] = error; } };
      await capture('esmMain', () => copies.esmMain.createPersistence({ cachePath: '/tmp/x.json', backend: 'nope' }));
      await capture('cjsMain', () => copies.cjsMain.createPersistence({ cachePath: '/tmp/x.json', backend: 'nope' }));
      await capture('esmDistributed', () => copies.esmDistributed.createBlobCipher({ keys: { k: undefined }, currentKeyId: 'k' }));
      await capture('cjsDistributed', () => copies.cjsDistributed.createBlobCipher({ keys: { k: 42 }, currentKeyId: 'k' }));
      const classes = Object.entries(copies).filter(([, m]) => m.KeychainCacheError);
      const checks = [];
      for (const [from, error] of Object.entries(thrown)) {
        for (const [name, module] of Object.entries(copies)) {
          if (module.KeychainCacheError) checks.push([from, name, 'instanceof', error instanceof module.KeychainCacheError]);
          if (module.isKeychainCacheError) checks.push([from, name, 'isKeychainCacheError', module.isKeychainCacheError(error, 'INVALID_OPTION')]);
        }
      }
      console.log(JSON.stringify({ classes: classes.length, codes: Object.values(thrown).map((e) => e && e.code),
        plainError: copies.cjsMain.isKeychainCacheError(new Error('x')) || (new TypeError('x') instanceof copies.esmMain.KeychainCacheError),
        checks }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    const result = JSON.parse(stdout) as { classes: number; codes: string[]; plainError: boolean; checks: [string, string, string, boolean][] };
    expect(result.classes).toBeGreaterThanOrEqual(2);
    expect(result.codes).toEqual(['INVALID_OPTION', 'INVALID_OPTION', 'INVALID_OPTION', 'INVALID_OPTION']);
    expect(result.plainError).toBe(false);
    expect(result.checks.filter(([, , , ok]) => !ok)).toEqual([]);
    expect(result.checks.length).toBeGreaterThanOrEqual(16);
  });

  it('a subclass an app derives keeps the ordinary instanceof', async () => {
    const { KeychainCacheError } = await import('../src/errors.js');
    class AppError extends KeychainCacheError {}
    expect(new AppError('STORE_FAILED', 'x')).toBeInstanceOf(AppError);
    expect(new KeychainCacheError('STORE_FAILED', 'x') instanceof AppError).toBe(false);
    expect(new AppError('STORE_FAILED', 'x')).toBeInstanceOf(KeychainCacheError);
  });
});

// Every error that leaves the package is a KeychainCacheError, also when what failed underneath is not ours: a
// persistence or a partition store the app passed in, a session whose save failed. The original is the cause;
// its message is not copied (it could quote a token).
describe('what the app passes in fails as a KeychainCacheError, with the original as cause and its text kept out', () => {
  const secretText = 'eyJhbGciOi-looks-like-a-token';

  it('a persistence passed to createCachePlugin that throws a TypeError, or rejects with a string, on load and on save', async () => {
    const { PublicClientApplication } = await import('@azure/msal-node');
    const { createCachePlugin, createPersistence, isKeychainCacheError } = await import('../src/index.js');
    const { createTokenEndpoint, signIn, tempDir } = await import('./helpers.js');
    const real = await createPersistence({ cachePath: join(await tempDir(), 'msal-cache.json'), backend: 'plaintext-file',
      allowPlaintextFallback: true, loggerOptions: { loggerCallback: () => undefined } });
    for (const failure of [() => { throw new TypeError(secretText); }, () => Promise.reject(secretText)]) {
      for (const method of ['load', 'save'] as const) {
        const persistence = { ...real, [method]: failure };
        const endpoint = createTokenEndpoint();
        const client = new PublicClientApplication({ auth: { clientId: 'c', authority: 'https://login.microsoftonline.com/common' },
          cache: { cachePlugin: await createCachePlugin({ persistence }) }, system: { networkClient: endpoint.networkClient } });
        const error = await signIn(client, 'ann').then(() => undefined, (caught: unknown) => caught);
        expect(isKeychainCacheError(error, 'STORE_FAILED'), `${method}: ${String(error)}`).toBe(true);
        const typed = error as Error & { cause: unknown };
        expect(typed.cause === secretText || (typed.cause as Error).message === secretText).toBe(true);
        expect(typed.message).not.toContain(secretText);
      }
    }
  });

  it('a partition store that throws, and a session whose save fails, through a real confidential client', async () => {
    const { createBlobCipher, createSessionStore, partitionKeys } = await import('../src/distributed/index.js');
    const { isKeychainCacheError } = await import('../src/index.js');
    const { createTokenEndpoint, webApp, webSignIn } = await import('./helpers.js');
    const { randomBytes } = await import('node:crypto');
    const cipher = createBlobCipher({ keys: { k1: randomBytes(32) }, currentKeyId: 'k1' });
    const throwing = { get: async () => { throw new RangeError(secretText); }, compareAndSet: async () => null, delete: async () => false };
    const failingSession = { reload(done: (error?: unknown) => void) { done(); }, save(done: (error?: unknown) => void) { done(new Error(secretText)); } };
    const sessionStore = createSessionStore({ request: { session: failingSession } as never });
    for (const store of [throwing, sessionStore]) {
      const error = await webSignIn(webApp(store, cipher, partitionKeys.forAccount('ann'), createTokenEndpoint()), 'ann')
        .then(() => undefined, (caught: unknown) => caught);
      expect(isKeychainCacheError(error, 'STORE_FAILED'), String(error)).toBe(true);
      expect((error as Error).message).not.toContain(secretText);
      expect(((error as Error).cause as Error).message).toBe(secretText);
    }
    // Called directly, as an app's sign-out route does: the store's own methods reject the same way.
    const direct = await sessionStore.delete(partitionKeys.forAccount('ann')).then(() => undefined, (caught: unknown) => caught);
    expect(isKeychainCacheError(direct, 'STORE_FAILED'), String(direct)).toBe(true);
  });
});

describe('what a wrapped error\'s message may take from the original: nothing of the app\'s', () => {
  const appPersistence = async (load: () => Promise<string | null>) => {
    const { tempDir } = await import('./helpers.js');
    const directory = await tempDir();
    return { kind: 'plaintext-file' as const, encrypted: true, cachePath: join(directory, 'key.json'), location: 'an app store', load,
      save: async () => undefined, delete: async () => false, changeToken: async () => 'token', quarantine: async () => '', verify: async () => undefined };
  };

  it('keyFromPersistence over an app persistence that throws: STORE_FAILED, the original as cause, its text kept out', async () => {
    const { keyFromPersistence } = await import('../src/distributed/index.js');
    const { isKeychainCacheError } = await import('../src/index.js');
    const original = new SyntaxError('Unexpected token in JSON: eyJ0eXAi-secret');
    const error = await keyFromPersistence(await appPersistence(async () => { throw original; })).then(() => undefined, (caught: unknown) => caught);
    expect(isKeychainCacheError(error, 'STORE_FAILED')).toBe(true);
    expect((error as Error).cause).toBe(original);
    expect((error as Error).message).not.toContain('eyJ0eXAi');
  });

  it('an app error\'s own code and name are app data: only Node\'s and the system\'s codes and built-in names are named', async () => {
    const { asKeychainCacheError } = await import('../src/errors.js');
    const leaky = Object.assign(new Error('x'), { code: 'refresh-token-0.AXYZsecret', name: 'AXYZsecretName' });
    expect(asKeychainCacheError(leaky, 'Reading').message).not.toMatch(/AXYZsecret/);
    const system = Object.assign(new Error('x'), { code: 'ENOSPC' });
    expect(asKeychainCacheError(system, 'Reading').message).toContain('(ENOSPC)');
    expect(asKeychainCacheError(new TypeError('x'), 'Reading').message).toContain('unexpected TypeError');
  });

  it('the file store\'s pathFor stays synchronous, and a key that is not a string is INVALID_OPTION', async () => {
    const { createFileStore } = await import('../src/distributed/index.js');
    const { tempDir } = await import('./helpers.js');
    const store = await createFileStore({ directory: join(await tempDir(), 'store') });
    expect(typeof store.pathFor('user:a')).toBe('string');
    expect(() => store.pathFor(42 as never)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });
});
