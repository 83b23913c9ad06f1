// The examples run as users would run them, each invocation its own process, with the network replaced by
// the in-process token endpoint (test/fixtures/example-cli.mjs).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isLinux, runFixture, tempDir } from './helpers.js';

const requestsOf = (stderr: string) => JSON.parse(/REQUESTS (.*)/.exec(stderr)![1]!) as Record<string, number>;

describe.runIf(isLinux)('examples/cli (device code login, cache in the private Secret Service)', () => {
  it('login once; later runs get whoami and a token from the cache with the network refusing; logout', async () => {
    const base = { cachePath: join(await tempDir(), 'cache', 'msal-cache.json'), serviceName: `mkc-example-${randomBytes(4).toString('hex')}` };
    const cli = (argv: string[], extra: object = {}) => runFixture('example-cli', { ...base, argv, ...extra });

    const login = await cli(['login'], { deviceCodeUser: 'alice' });
    expect(login.code).toBe(0);
    expect(login.stdout).toBe('Signed in as alice@example.test\n');
    expect(login.stderr).toMatch(/microsoft\.com\/devicelogin and enter the code [0-9A-F]{8}/);
    expect(requestsOf(login.stderr)).toMatchObject({ devicecode: 1, device_code: 1 });

    const whoami = await cli(['whoami'], { refuse: true });
    expect([whoami.code, whoami.stdout]).toEqual([0, 'alice@example.test\n']);

    const token = await cli(['token'], { refuse: true });
    expect(token.code).toBe(0);
    expect(token.stdout).toMatch(/^at\.[\w-]+\n$/);
    expect(requestsOf(token.stderr)).toEqual({}); // served from the cache: no token request at all

    const logout = await cli(['logout']);
    expect([logout.code, logout.stdout]).toEqual([0, 'Signed out alice@example.test\n']);
    const after = await cli(['whoami']);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain('Not signed in. Run: msal-cli login');
  });

  it('refuses unknown commands with exit 2 and the usage', async () => {
    const run = await runFixture('example-cli', { cachePath: join(await tempDir(), 'c.json'), serviceName: 'mkc-example-usage', argv: ['sign-in'] });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('usage: msal-cli login | whoami | token | logout');
  });
});
