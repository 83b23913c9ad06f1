// examples/web-app: a real Express server on a free port, driven over HTTP with a cookie like a browser,
// its msal-node network replaced by the in-process token endpoint. Embedded store by default.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createWebApp } from '../examples/web-app/server.mjs';
import { createFileStore, partitionKeys } from '../src/distributed/index.js';
import { createTokenEndpoint, testAuthority, testTenantId } from '../src/token-endpoint.js';
import { tempDir } from './helpers.js';

describe.each(['file', 'session'] as const)('examples/web-app (Express + session, MSAL_CACHE_STORE=%s)', (kind) => {
  it('sign-in by auth code, tokens served silently per user, sign-out deletes the partition', async () => {
    const directory = join(await tempDir(), 'token-caches');
    const endpoint = createTokenEndpoint();
    const env = { MSAL_CACHE_STORE: kind, MSAL_CLIENT_ID: 'web-app', MSAL_CLIENT_SECRET: 'secret', MSAL_AUTHORITY: testAuthority,
      CACHE_KEY: randomBytes(32).toString('base64'), CACHE_DIRECTORY: directory, SESSION_SECRET: 'test', REDIRECT_URI: 'http://localhost/redirect' };
    const app = await createWebApp({ env, system: { networkClient: endpoint.networkClient } });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const browser = async (user: string) => {
        let cookie = '';
        const get = async (path: string) => {
          const response = await fetch(base + path, { redirect: 'manual', headers: cookie ? { cookie } : {} });
          cookie = response.headers.get('set-cookie')?.split(';')[0] ?? cookie;
          return response;
        };
        const login = await get('/login');
        expect(login.status).toBe(302);
        const authorize = new URL(login.headers.get('location')!);
        expect(authorize.pathname).toMatch(/oauth2\/v2.0\/authorize$/);
        // The identity provider signs `user` in and sends the browser back with a code and the state.
        const back = await get(`/redirect?code=${user}&state=${authorize.searchParams.get('state')}`);
        expect([back.status, back.headers.get('location')]).toEqual([302, '/me']);
        return get;
      };
      const alice = await browser('alice');
      const bob = await browser('bob');
      endpoint.refuse = true; // from here on only the caches can answer
      const me = await (await alice('/me')).json();
      expect(me).toMatchObject({ username: 'alice@example.test', tokenFromCache: true });
      expect(((await (await bob('/me')).json()) as { username: string }).username).toBe('bob@example.test');

      const store = await createFileStore({ directory });
      const aliceKey = partitionKeys.forAccount(`${endpoint.objectIdFor('alice')}.${testTenantId}`);
      // The session kind keeps nothing in the file store: each user's cache is in their session.
      expect(await store.get(aliceKey)).toEqual(kind === 'file' ? expect.objectContaining({ version: expect.any(String) }) : null);
      expect((await alice('/logout')).status).toBe(200);
      // Signed out: a tombstone (an empty value) that no request in flight can write over.
      if (kind === 'file') expect((await store.get(aliceKey))?.value).toHaveLength(0);
      expect((await alice('/me')).status).toBe(401);
      expect((await bob('/me')).status).toBe(200);
      const tampered = await fetch(`${base}/redirect?code=mallory&state=forged`);
      expect(tampered.status).toBe(400);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
