// The PostgreSQL store against a real postgres that this test file starts and stops (scripts/postgres-server.mjs).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeFromEnv } from '../examples/web-app/server.mjs';
import { startPostgres } from '../scripts/postgres-server.mjs';
import { createPostgresStore, type PostgresStore } from '../src/distributed/index.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';
import { webApp, webSignIn as signIn } from './helpers.js';
import { storeCipher as cipher, storeContract, storeSafetyContract, type StoreSubject } from './store-contract.js';

// Linux CI installs postgresql (.ci/run).
describe('PostgreSQL store (real postgres)', () => {
  let server: Awaited<ReturnType<typeof startPostgres>>;
  let pool: pg.Pool;
  let store: PostgresStore;
  beforeAll(async () => {
    server = await startPostgres();
    pool = new pg.Pool({ connectionString: server.connectionString, max: 5 });
    // Idle connections are told "terminating connection" when the server stops at the end; pg emits that
    // on the pool, and an unhandled pool error would crash the process (pg's own advice: always listen).
    pool.on('error', () => undefined);
    store = createPostgresStore({ pool });
    await store.ensureSchema();
    await store.ensureSchema(); // idempotent
  }, 60_000);
  afterAll(async () => {
    await pool?.end();
    await server?.stop();
  });

  const subject = (): StoreSubject => ({
    store,
    workerArgs: { postgres: server.connectionString },
    tamper: async (partitionKey) => {
      await pool.query(`UPDATE msal_token_cache SET data = set_byte(data, length(data) - 3, get_byte(data, length(data) - 3) # 255),
        version = version || '-tampered' WHERE partition_key = $1`, [partitionKey]);
    },
  });
  storeContract(subject, 'pg');
  storeSafetyContract(subject, 'pg');

  it('expiry: an expired row reads as absent, can be written again, and cleanup() deletes it', async () => {
    const endpoint = createTokenEndpoint();
    await signIn(webApp(store, cipher, 'user:expiring', endpoint, { ttlMs: 1000 }), 'expiring');
    expect(await store.get('user:expiring')).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 1300));
    expect(await store.get('user:expiring')).toBeNull();
    expect(await store.cleanup()).toBeGreaterThanOrEqual(1);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM msal_token_cache WHERE partition_key = 'user:expiring'`);
    expect(rows[0].n).toBe(0);
    await signIn(webApp(store, cipher, 'user:expiring', endpoint, { ttlMs: 60_000 }), 'expiring');
    expect(await store.get('user:expiring')).not.toBeNull();
  });

  it('expiry follows the database clock, not the app server\'s: an app clock an hour behind or ahead changes nothing', async () => {
    const realNow = Date.now;
    const endpoint = createTokenEndpoint();
    try {
      for (const [user, skew] of [['behind', -3600_000], ['ahead', 3600_000]] as const) {
        Date.now = () => realNow() + skew;
        await signIn(webApp(store, cipher, `user:clock-${user}`, endpoint, { ttlMs: 60_000 }), user);
        const { rows } = await pool.query(`SELECT extract(epoch FROM expires_at - now()) * 1000 AS ms FROM msal_token_cache WHERE partition_key = $1`,
          [`user:clock-${user}`]);
        expect(Number(rows[0].ms)).toBeGreaterThan(50_000);
        expect(Number(rows[0].ms)).toBeLessThanOrEqual(60_000);
        expect(await store.get(`user:clock-${user}`)).not.toBeNull();
      }
    } finally {
      Date.now = realNow;
    }
  });

  it('refuses a table name that is not a plain identifier', () => {
    expect(() => createPostgresStore({ pool, table: 'x; drop table y' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });

  it('the example web app picks this store from MSAL_CACHE_STORE=postgres', async () => {
    const { store: chosen, close } = await storeFromEnv({ MSAL_CACHE_STORE: 'postgres', DATABASE_URL: server.connectionString });
    const version = await chosen!.compareAndSet('example-env', Buffer.from('x'), null);
    expect(await store.get('example-env')).toEqual({ version, value: Buffer.from('x') });
    await close();
  });
});
