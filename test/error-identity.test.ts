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
