// A PartitionStore over the signed-in user's own session (express-session's req.session, or any object a
// framework keeps per user), as MSAL's web-app guidance and Microsoft's own Python sample keep the cache.
// Blobs are sealed by the plugin's cipher like in every other store (a cookie session sends them to the
// browser: only encrypted). One store per request: it reads and writes that request's session object.
//
// Concurrency, honestly: a session store hands each request its own copy of the session and saves it when
// the response ends; two requests of one user in flight at once each see only their own copy, and the
// later save wins the whole session. So compare-and-set here protects a request against itself only. Where
// the session can be re-read and saved on demand (express-session's reload() and save()), every write does
// reload, compare, write and save at once, so a racing request's saved tokens are merged instead of lost;
// the window left is between another request's last reload and its save.
import { KeychainCacheError, withTypedErrors } from '../errors.js';
import { randomHex } from '../files.js';
import { checkOptions, defaultTombstoneTtlMs, optionalCount, optionalDuration, optionalText } from './checks.js';
import type { PartitionStore } from './store.js';

/** express-session's Session, as far as this store uses it: reload and save are used when they are there. */
export interface SessionLike {
  [field: string]: unknown;
  reload?(callback: (error?: unknown) => void): unknown;
  save?(callback: (error?: unknown) => void): unknown;
}

export interface SessionStoreOptions {
  /**
   * The request whose `session` holds the caches (express-session: `req`). Its `session` is looked up on every
   * call, since express-session's reload() replaces the object.
   */
  request: { session?: SessionLike | null };
  /** The session field that holds the caches. Default `'msalTokenCaches'`. */
  field?: string;
  /**
   * The most bytes (base64 of the sealed blobs, all partitions of this session together) the session may take:
   * a cookie-backed session (cookie-session) holds about 4 KB in all, so set some 3000 there. Default 65536.
   */
  maxBytes?: number;
  /** How long a sign-out's tombstone stays (at least 1000 ms). Default 24 hours. */
  tombstoneTtlMs?: number;
}

interface Entry { v: string; d: string; exp: number }

const callback = (session: SessionLike, method: 'reload' | 'save') => new Promise<void>((resolve, reject) => {
  session[method]!.call(session, (error?: unknown) => (error ? reject(error) : resolve()));
});

export function createSessionStore(options: SessionStoreOptions): PartitionStore {
  const needs = '{ request }: the request whose session holds the caches (express: req, after app.use(session(...)))';
  checkOptions(options, 'createSessionStore', ['request', 'field', 'maxBytes', 'tombstoneTtlMs'], needs);
  if (typeof options.request !== 'object' || options.request === null) {
    throw new KeychainCacheError('INVALID_OPTION', `createSessionStore needs ${needs}.`);
  }
  const { request } = options;
  const field = optionalText(options.field, 'field', 'msalTokenCaches');
  const maxBytes = optionalCount(options.maxBytes, 'maxBytes', 65_536, 256, 64 * 1024 * 1024);
  const tombstoneTtlMs = optionalDuration(options.tombstoneTtlMs, 'tombstoneTtlMs', 1000,
    'It must outlast any request that reads a partition.') ?? defaultTombstoneTtlMs;

  const session = (): SessionLike => {
    const current = request.session;
    if (typeof current !== 'object' || current === null) {
      throw new KeychainCacheError('STORE_FAILED', 'The request has no session: register the session middleware (app.use(session(...))) ' +
        'before the routes that use MSAL.');
    }
    return current;
  };
  const entries = (from: SessionLike): Record<string, Entry> => {
    const value = from[field];
    return typeof value === 'object' && value !== null ? value as Record<string, Entry> : {};
  };
  const live = (entry: Entry | undefined) => (entry && typeof entry.v === 'string' && typeof entry.d === 'string'
    && (entry.exp === 0 || entry.exp > Date.now()) ? entry : undefined);

  /** Writes one entry: reloaded first and saved at once where the session can do that. */
  const update = async (partitionKey: string, change: (current: Entry | undefined) => Entry | null | undefined): Promise<Entry | undefined> => {
    if (typeof session().reload === 'function' && typeof session().save === 'function') await callback(session(), 'reload');
    const target = session();
    const all = { ...entries(target) };
    const next = change(live(all[partitionKey]));
    if (next === null) return undefined; // refused (a compare-and-set conflict)
    if (next) all[partitionKey] = next;
    for (const [key, entry] of Object.entries(all)) if (!live(entry)) delete all[key];
    const size = Object.values(all).reduce((total, entry) => total + entry.d.length + entry.v.length + 32, 0);
    if (size > maxBytes) {
      throw new KeychainCacheError('STORE_FAILED', `The token caches of this session would take ${size} bytes, more than maxBytes ` +
        `(${maxBytes}); nothing was written. A cookie-backed session cannot hold them: use a server-side session store ` +
        '(express-session with Redis or a database), or createRedisStore / createPostgresStore / createFileStore for the caches.');
    }
    target[field] = all;
    if (typeof target.save === 'function' && typeof target.reload === 'function') await callback(target, 'save');
    return next ?? undefined;
  };

  return withTypedErrors({
    async get(partitionKey) {
      const entry = live(entries(session())[partitionKey]);
      return entry ? { version: entry.v, value: Buffer.from(entry.d, 'base64') } : null;
    },
    async version(partitionKey) {
      return live(entries(session())[partitionKey])?.v ?? null;
    },
    async compareAndSet(partitionKey, value, expectedVersion, ttlMs) {
      const written = await update(partitionKey, (current) => ((current?.v ?? null) !== expectedVersion ? null
        : { v: randomHex(12), d: value.toString('base64'), exp: ttlMs ? Date.now() + ttlMs : 0 }));
      return written?.v ?? null;
    },
    async delete(partitionKey) {
      let wasLive = false;
      await update(partitionKey, (current) => {
        wasLive = current !== undefined && current.d !== '';
        return { v: randomHex(12), d: '', exp: Date.now() + tombstoneTtlMs };
      });
      return wasLive;
    },
  }, 'The session store');
}
