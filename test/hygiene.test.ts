import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCachePlugin, createPersistence } from '../src/index.js';
import { backends, createTokenEndpoint, isLinux, newClient, recordingLogger, scopes, signIn, storeOptions, tempDir } from './helpers.js';

describe.each(backends)('hygiene, %s backend', (backend) => {
  const runs = backend !== 'libsecret' || isLinux;

  it.runIf(runs && process.platform !== 'win32')('creates files 0600 in directories 0700', async () => {
    const options = await storeOptions(backend);
    const { client } = await newClient(options, createTokenEndpoint());
    await signIn(client, 'modes');
    expect((await stat(options.cachePath)).mode & 0o777).toBe(0o600);
    expect((await stat(dirname(options.cachePath))).mode & 0o777).toBe(0o700);
  });

  it.runIf(runs)('refuses a cachePath that is a symlink, before and after creation', async () => {
    const options = await storeOptions(backend);
    const target = join(await tempDir(), 'elsewhere.json');
    await writeFile(target, '{}');
    await mkdir(dirname(options.cachePath), { recursive: true });
    await symlink(target, options.cachePath);
    await expect(createCachePlugin(options)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(await readFile(target, 'utf8')).toBe('{}');
  });

  it.runIf(runs)('never lets a token reach a logger that records everything, PII included, at Trace', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    const log = recordingLogger();
    const { client } = await newClient({ ...options, loggerOptions: log.loggerOptions }, endpoint, log.loggerOptions);
    const signedIn = await signIn(client, 'logged');
    await client.acquireTokenSilent({ account: signedIn.account!, scopes });
    await client.acquireTokenSilent({ account: signedIn.account!, scopes, forceRefresh: true });
    const second = await newClient({ ...options, loggerOptions: log.loggerOptions }, endpoint, log.loggerOptions);
    await signIn(second.client, 'logged-2');
    await client.getTokenCache().getAllAccounts();
    await client.getTokenCache().removeAccount(signedIn.account!);
    expect(log.lines.some((l) => l.message.includes('[msal-keychain-cache]'))).toBe(true);
    const everything = log.lines.map((l) => l.message).join('\n');
    expect(endpoint.issued.length).toBeGreaterThanOrEqual(3);
    for (const issued of endpoint.issued) {
      expect(everything).not.toContain(issued.accessToken);
      if (issued.refreshToken) expect(everything).not.toContain(issued.refreshToken);
      if (issued.idToken) expect(everything).not.toContain(issued.idToken.split('.')[1]);
    }
  });
});

describe('plaintext is never silent', () => {
  it('refuses backend plaintext-file without allowPlaintextFallback', async () => {
    const options = await storeOptions('plaintext-file');
    await expect(createPersistence({ ...options, allowPlaintextFallback: false })).rejects.toMatchObject({ code: 'PLAINTEXT_NOT_ALLOWED' });
  });

  it('warns every time a plaintext persistence is created', async () => {
    const options = await storeOptions('plaintext-file');
    const log = recordingLogger();
    await createPersistence({ ...options, loggerOptions: log.loggerOptions });
    await createPersistence({ ...options, loggerOptions: log.loggerOptions });
    expect(log.lines.filter((l) => l.level === 1 && /UNENCRYPTED/.test(l.message))).toHaveLength(2);
  });

  it('falls back only with the flag on a platform without an encrypted backend, and says why', async () => {
    const { backend: _b, ...options } = await storeOptions('plaintext-file');
    await expect(createPersistence({ ...options, allowPlaintextFallback: false, platform: 'win32' }))
      .rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    const log = recordingLogger();
    const persistence = await createPersistence({ ...options, allowPlaintextFallback: true, platform: 'win32', loggerOptions: log.loggerOptions });
    expect(persistence).toMatchObject({ kind: 'plaintext-file', encrypted: false });
    expect(log.lines.find((l) => l.level === 1)?.message).toMatch(/UNENCRYPTED.*no secret store answered as usable/);
  });
});

describe('options', () => {
  it.each([
    [{}, 'no cachePath'],
    [{ cachePath: '/tmp/x', backend: 'keychain-of-dreams' }, 'unknown backend'],
    [{ cachePath: '/tmp/x', allowPlainTextFallback: true }, 'misspelt option'],
    [{ cachePath: '/tmp/x', allowPlaintextFallback: 'yes' }, 'non-boolean flag'],
    [{ cachePath: '/tmp/x', serviceName: '' }, 'empty service name'],
    [{ cachePath: '/tmp/x', lockOptions: { timeoutMs: -1 } }, 'negative timeout'],
    [{ cachePath: '/tmp/x', lockOptions: { staleAfterMs: 500 } }, 'staleAfterMs below the 1000 ms minimum (breaks live holders)'],
    [{ cachePath: '/tmp/x', lockOptions: { timeoutMs: Infinity } }, 'infinite timeout'],
  ])('rejects %j (%s) with INVALID_OPTION', async (options: object, _reason: string) => {
    await expect(createCachePlugin(options as never)).rejects.toMatchObject({ code: 'INVALID_OPTION' });
  });

  it("does not modify the caller's options object", async () => {
    const options = Object.freeze({ ...(await storeOptions('plaintext-file')) });
    await createCachePlugin(options);
  });
});
