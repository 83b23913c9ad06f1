// A PartitionStore in PostgreSQL. Takes the app's own `pg` Pool (or anything with query(text, values)):
// this package never imports a database driver. One table, created by ensureSchema():
//
//   CREATE TABLE IF NOT EXISTS msal_token_cache (
//     partition_key text PRIMARY KEY,
//     version       text NOT NULL,
//     data          bytea NOT NULL,       -- the (encrypted) cache blob
//     expires_at    timestamptz           -- NULL: never; expired rows read as absent until cleanup()
//   );
//   CREATE INDEX IF NOT EXISTS msal_token_cache_expires_at ON msal_token_cache (expires_at);
//
// Compare-and-set is `UPDATE ... WHERE version = $expected` (or an INSERT that only replaces an expired row).
// Expiry is the database's clock alone (now() + interval): app servers' clocks differ from it and each other.
// A sign-out writes a tombstone row (empty data) that expires after tombstoneTtlMs.
import { KeychainCacheError, withTypedErrors } from '../errors.js';
import { randomHex } from '../files.js';
import { checkOptions, defaultTombstoneTtlMs, got, optionalDuration } from './checks.js';
import type { PartitionStore } from './store.js';

export interface SqlQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
}

export interface PostgresStoreOptions {
  pool: SqlQueryable;
  /** Table name (letters, digits, underscores). Default `'msal_token_cache'`. */
  table?: string;
  /** How long a sign-out's tombstone stays (at least 1000 ms): longer than any request. Default 24 hours. */
  tombstoneTtlMs?: number;
}

export interface PostgresStore extends PartitionStore {
  /** Creates the table and its index if they are missing. Safe to call at every start. */
  ensureSchema(): Promise<void>;
  /** Deletes expired rows; returns how many. Call it from a periodic job. */
  cleanup(): Promise<number>;
}

export function createPostgresStore(options: PostgresStoreOptions): PostgresStore {
  checkOptions(options, 'createPostgresStore', ['pool', 'table', 'tombstoneTtlMs'], '{ pool }: a pg Pool (or anything with query(text, values))');
  if (typeof options.pool?.query !== 'function') {
    throw new KeychainCacheError('INVALID_OPTION', 'createPostgresStore needs { pool }: a pg Pool (or anything with query(text, values)).');
  }
  const table: unknown = options.table ?? 'msal_token_cache';
  if (typeof table !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table)) {
    throw new KeychainCacheError('INVALID_OPTION', 'table must be a plain SQL identifier (a letter or underscore, then letters, digits, ' +
      `underscores; at most 63), e.g. 'msal_token_cache'; got ${got(table)}.`);
  }
  const tombstoneTtlMs = optionalDuration(options.tombstoneTtlMs, 'tombstoneTtlMs', 1000,
    'It must outlast any request that reads a partition.') ?? defaultTombstoneTtlMs;
  const { pool } = options;
  const sql = async (action: string, text: string, values: unknown[] = []) => {
    try {
      return await pool.query(text, values);
    } catch (error) {
      throw new KeychainCacheError('STORE_FAILED', `PostgreSQL could not ${action} (${error instanceof Error ? error.message : String(error)}). ` +
        'Check that the database is reachable and that ensureSchema() has run.', { cause: error });
    }
  };
  // $n milliseconds from the database's now(), or NULL (never) when there is no TTL.
  const expiry = (ttlMs?: number) => (ttlMs && ttlMs > 0 ? Math.ceil(ttlMs) : null);
  const expiresAt = (parameter: string) => `now() + ${parameter}::bigint * interval '1 millisecond'`;
  const live = '(expires_at IS NULL OR expires_at > now())';

  return withTypedErrors({
    async ensureSchema() {
      await sql('create the cache table', `CREATE TABLE IF NOT EXISTS "${table}" (
        partition_key text PRIMARY KEY, version text NOT NULL, data bytea NOT NULL, expires_at timestamptz)`);
      await sql('create the expiry index', `CREATE INDEX IF NOT EXISTS "${table}_expires_at" ON "${table}" (expires_at)`);
    },
    async get(partitionKey) {
      const { rows } = await sql('read a cache', `SELECT version, data FROM "${table}" WHERE partition_key = $1 AND ${live}`, [partitionKey]);
      const row = rows[0];
      return row ? { version: String(row.version), value: Buffer.from(row.data as Uint8Array) } : null;
    },
    async compareAndSet(partitionKey, value, expectedVersion, ttlMs) {
      const version = randomHex(12);
      const result = expectedVersion === null
        ? await sql('write a cache', `INSERT INTO "${table}" AS t (partition_key, version, data, expires_at) VALUES ($1, $2, $3, ${expiresAt('$4')})
            ON CONFLICT (partition_key) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data, expires_at = EXCLUDED.expires_at
            WHERE t.expires_at IS NOT NULL AND t.expires_at <= now()`, [partitionKey, version, value, expiry(ttlMs)])
        : await sql('write a cache', `UPDATE "${table}" SET version = $2, data = $3, expires_at = ${expiresAt('$4')}
            WHERE partition_key = $1 AND version = $5 AND ${live}`, [partitionKey, version, value, expiry(ttlMs), expectedVersion]);
      return result.rowCount === 1 ? version : null;
    },
    async version(partitionKey) {
      const { rows } = await sql('read a cache version', `SELECT version FROM "${table}" WHERE partition_key = $1 AND ${live}`, [partitionKey]);
      return rows[0] ? String(rows[0].version) : null;
    },
    async delete(partitionKey) {
      const { rows } = await sql('sign a cache out', `WITH old AS MATERIALIZED (SELECT length(data) > 0 AS live FROM "${table}"
          WHERE partition_key = $1 AND ${live})
        INSERT INTO "${table}" AS t (partition_key, version, data, expires_at) VALUES ($1, $2, ''::bytea, ${expiresAt('$3')})
        ON CONFLICT (partition_key) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data, expires_at = EXCLUDED.expires_at
        RETURNING (SELECT live FROM old) AS was_live`, [partitionKey, randomHex(12), tombstoneTtlMs]);
      return rows[0]?.was_live === true;
    },
    async touch(partitionKey, ttlMs) {
      await sql('renew a cache\'s expiry', `UPDATE "${table}" SET expires_at = ${expiresAt('$2')}
        WHERE partition_key = $1 AND expires_at IS NOT NULL AND ${live}`, [partitionKey, expiry(ttlMs)]);
    },
    async cleanup() {
      return (await sql('delete expired caches', `DELETE FROM "${table}" WHERE expires_at IS NOT NULL AND expires_at <= now()`)).rowCount ?? 0;
    },
  }, 'The PostgreSQL store');
}
