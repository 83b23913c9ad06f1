// The PostgreSQL store against a real postgres that this test file starts and stops (scripts/postgres-server.mjs).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres } from '../scripts/postgres-server.mjs';
import { createBlobCipher, createPostgresStore, type PostgresStore } from '../src/distributed/index.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';
import { recordingLogger, runFixture, webApp, webSignIn as signIn } from './helpers.js';

const keys = { k1: randomBytes(32).toString('base64') };
const cipher = createBlobCipher({ keys, currentKeyId: 'k1' });

// Linux CI installs postgresql (.ci/run).
describe('PostgreSQL store (real postgres)', () => {
  let server: Awaited<ReturnType<typeof startPostgres>>;
  let pool: pg.Pool;
  let store: PostgresStore;
  beforeAll(async () => {
    server = await startPostgres();
    pool = new pg.Pool({ connectionString: server.connectionString, max: 5 });
    store = createPostgresStore({ pool });
    await store.ensureSchema();
    await store.ensureSchema(); // idempotent
  }, 60_000);
  afterAll(async () => {
    await pool?.end();
    await server?.stop();
  });

  it('compare-and-set: only on the version read, null on conflict; get and delete', async () => {
    expect(await store.get('p')).toBeNull();
    const v1 = await store.compareAndSet('p', Buffer.from([1, 2, 3]), null);
    expect(v1).toEqual(expect.any(String));
    expect(await store.compareAndSet('p', Buffer.from([9]), null)).toBeNull();
    expect(await store.compareAndSet('p', Buffer.from([9]), 'stale-version')).toBeNull();
    const v2 = await store.compareAndSet('p', Buffer.from([4, 5]), v1);
    expect(await store.get('p')).toEqual({ version: v2, value: Buffer.from([4, 5]) });
    expect(await store.delete('p')).toBe(true);
    expect(await store.delete('p')).toBe(false);
  });

  it('two app instances (processes) sign in the same 100 users at once with different scopes: no token lost', async () => {
    const users = Array.from({ length: 100 }, (_, i) => `pg-${i}`);
    const runs = await Promise.all(['A.Read', 'B.Read'].map((scope) =>
      runFixture('distributed-worker', { postgres: server.connectionString, users, scope, keys, currentKeyId: 'k1' })));
    for (const run of runs) {
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout.split('RESULT ')[1]!).failures).toEqual([]);
    }
    const lost: string[] = [];
    for (const user of users) {
      const blob = await store.get(`user:${user}`);
      const cache = JSON.parse(cipher.open(blob!.value, `user:${user}`).text) as { AccessToken: Record<string, { target: string }> };
      const targets = Object.values(cache.AccessToken).map((t) => t.target.toLowerCase()).join(' ');
      if (!targets.includes('a.read') || !targets.includes('b.read')) lost.push(`${user}: ${targets}`);
    }
    expect(lost).toEqual([]);
  });

  it('expiry: an expired row reads as absent, can be written again, and cleanup() deletes it', async () => {
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:expiring', endpoint, { ttlMs: 150 }), 'expiring');
    expect(await store.get('user:expiring')).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await store.get('user:expiring')).toBeNull();
    expect(await store.cleanup()).toBeGreaterThanOrEqual(1);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM msal_token_cache WHERE partition_key = 'user:expiring'`);
    expect(rows[0].n).toBe(0);
    await signIn(webApp(store, cipher, 'user:expiring', endpoint, { ttlMs: 60_000 }), 'expiring');
    expect(await store.get('user:expiring')).not.toBeNull();
  });

  it('a tampered row: DECRYPT_FAILED logged, the user signs in again; a bad table name is refused', async () => {
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:tampered', endpoint), 'tampered');
    await pool.query(`UPDATE msal_token_cache SET data = set_byte(data, length(data) - 3, get_byte(data, length(data) - 3) # 255) WHERE partition_key = 'user:tampered'`);
    const log = recordingLogger();
    const app = webApp(store, cipher, 'user:tampered', endpoint, { loggerOptions: log.loggerOptions });
    expect(await app.getTokenCache().getAllAccounts()).toEqual([]);
    expect(log.lines.some((l) => l.message.includes('DECRYPT_FAILED'))).toBe(true);
    await signIn(app, 'tampered');
    expect(await webApp(store, cipher, 'user:tampered', endpoint).getTokenCache().getAllAccounts()).toHaveLength(1);
    expect(() => createPostgresStore({ pool, table: 'x; drop table y' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });
});
