// msal-keychain-cache/testing: every code block of docs/testing.md runs against the built package (imported by
// the package's own name, resolved through `exports`), and the main entry's bundles never contain the endpoint.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers.js';

const run = promisify(execFile);
const markdown = await readFile(join(repoRoot, 'docs', 'testing.md'), 'utf8');
const snippets = [...markdown.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
// Inside the repository, so that `msal-keychain-cache/...` resolves to the package itself.
const directory = join(repoRoot, '.cache', `testing-docs-${process.pid}`);

describe('docs/testing.md', () => {
  afterAll(() => rm(directory, { recursive: true, force: true }));

  it('has code blocks', () => {
    expect(snippets.length).toBeGreaterThanOrEqual(3);
  });

  it.each(snippets.map((code, index) => [index + 1, code]))('snippet %i runs and its assertions hold', async (index, code) => {
    await mkdir(directory, { recursive: true });
    const file = join(directory, `snippet-${index}.mjs`);
    // A marker printed after the last line proves the whole snippet ran.
    await writeFile(file, `${code}\nconsole.log('SNIPPET DONE');\n`);
    const { stdout } = await run(process.execPath, [file], { cwd: directory });
    expect(stdout).toContain('SNIPPET DONE');
  }, 30_000);
});

describe('msal-keychain-cache/testing entry', () => {
  it('exports the endpoint as ESM and CommonJS', async () => {
    const script = `const esm = await import('msal-keychain-cache/testing');
      const cjs = (await import('node:module')).createRequire(import.meta.url)('msal-keychain-cache/testing');
      console.log(JSON.stringify({ esm: Object.keys(esm).sort(), cjs: Object.keys(cjs).sort(), same: esm.testAuthority === cjs.testAuthority }));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot });
    const names = ['createTokenEndpoint', 'testAuthority', 'testTenantId'];
    expect(JSON.parse(stdout)).toEqual({ esm: names, cjs: names, same: true });
  });

  it('checks its options at creation: a misspelled deviceCodeUser would leave a device-code sign-in polling for 15 minutes', async () => {
    const { createTokenEndpoint } = await import(join(repoRoot, 'dist', 'esm', 'testing.js'));
    const { isKeychainCacheError } = await import(join(repoRoot, 'dist', 'esm', 'index.js'));
    const cases: [unknown, RegExp][] = [
      [{ devicecodeUser: 'bob' }, /unknown option 'devicecodeUser'.*deviceCodeUser/],
      ...[0, -1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, '3600', 1e12].map((value): [unknown, RegExp] =>
        [{ tokenLifetimeSeconds: value }, /tokenLifetimeSeconds must be a whole number of seconds/]),
      [{ clientId: '' }, /clientId must be a non-empty string/],
      [{ deviceCodeUser: 5 }, /deviceCodeUser must be a non-empty string/],
      [null, /options must be an object/],
    ];
    for (const [options, message] of cases) {
      let caught: unknown;
      try { createTokenEndpoint(options); } catch (error) { caught = error; }
      expect(isKeychainCacheError(caught, 'INVALID_OPTION'), String(caught)).toBe(true);
      expect((caught as Error).message).toMatch(message);
    }
    expect(createTokenEndpoint({ clientId: 'app', tokenLifetimeSeconds: 60, deviceCodeUser: 'bob' }).refuse).toBe(false);
  });

  it('is not in the main or /distributed bundles', async () => {
    const { testTenantId } = await import(join(repoRoot, 'dist', 'esm', 'testing.js'));
    for (const entry of ['esm/index.js', 'cjs/index.js', 'esm/distributed/index.js', 'cjs/distributed/index.js']) {
      const text = await readFile(join(repoRoot, 'dist', entry), 'utf8');
      expect(text.includes(testTenantId), `${entry} contains the test endpoint`).toBe(false);
      expect(text).not.toMatch(/createTokenEndpoint/);
    }
  });
});
