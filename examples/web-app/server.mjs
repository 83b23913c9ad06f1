// A web app (Express + session) that signs users in with the auth code flow and keeps one encrypted token
// cache per signed-in user through msal-keychain-cache/distributed. No server needed by default (embedded
// file store); MSAL_CACHE_STORE=redis (REDIS_URL) or =postgres (DATABASE_URL) for several app instances, or
// =session to keep each user's cache in their own session (see the README on what a session store guarantees).
//
//   MSAL_CLIENT_ID=... MSAL_CLIENT_SECRET=... CACHE_KEY=$(openssl rand -base64 32) SESSION_SECRET=... node server.mjs
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfidentialClientApplication } from '@azure/msal-node';
import express from 'express';
import session from 'express-session';
import {
  createBlobCipher, createFileStore, createPartitionedCachePlugin, createPostgresStore, createRedisStore, createSessionStore, partitionKeys,
} from 'msal-keychain-cache/distributed';

/** Picks the store from the environment: { store, close }. */
export async function storeFromEnv(env) {
  switch (env.MSAL_CACHE_STORE ?? 'file') {
    case 'redis': {
      const { createClient } = await import('redis');
      const client = await createClient({ url: env.REDIS_URL }).connect();
      return { store: createRedisStore({ client }), close: () => client.quit() };
    }
    case 'postgres': {
      const { default: pg } = await import('pg');
      const pool = new pg.Pool({ connectionString: env.DATABASE_URL });
      // pg emits errors of idle connections (a database restart) on the pool; unheard, they end the process.
      pool.on('error', (error) => console.error(`PostgreSQL connection lost: ${error.message}`));
      const store = createPostgresStore({ pool });
      await store.ensureSchema();
      return { store, close: () => pool.end() };
    }
    case 'session':
      // One store per request, over that request's session: see cacheStoreFor below.
      return { store: undefined, close: async () => undefined };
    case 'file':
      return { store: await createFileStore({ directory: env.CACHE_DIRECTORY ?? resolve('token-caches') }), close: async () => undefined };
    default:
      throw new Error(`MSAL_CACHE_STORE must be file, redis, postgres or session; got '${env.MSAL_CACHE_STORE}'.`);
  }
}

/**
 * The app. `overrides.system` lets tests replace msal-node's network with an in-process token endpoint.
 * @param {{ env?: NodeJS.ProcessEnv, store?: import('msal-keychain-cache/distributed').PartitionStore, system?: object }} [overrides]
 */
export async function createWebApp({ env = process.env, store, system = {} } = {}) {
  const chosen = store ? { store, close: async () => undefined } : await storeFromEnv(env);
  // The session store lives in each request's session; the others are one store for the whole app.
  const cacheStoreFor = (req) => chosen.store ?? createSessionStore({ request: req });
  const cipher = createBlobCipher({ keys: { primary: env.CACHE_KEY }, currentKeyId: 'primary' });
  const scopes = ['User.Read'];
  const redirectUri = env.REDIRECT_URI ?? 'http://localhost:3000/redirect';
  // One msal client per request, its cache plugin bound to this user's partition.
  const msalFor = (req, partitionKey) => new ConfidentialClientApplication({
    auth: { clientId: env.MSAL_CLIENT_ID, clientSecret: env.MSAL_CLIENT_SECRET, authority: env.MSAL_AUTHORITY ?? 'https://login.microsoftonline.com/organizations' },
    cache: { cachePlugin: createPartitionedCachePlugin({ store: cacheStoreFor(req), cipher, partitionKey, ttlMs: 7 * 24 * 3600_000 }) },
    system,
  });

  const app = express();
  app.locals.closeStore = chosen.close;
  app.use(session({ secret: env.SESSION_SECRET ?? randomBytes(32).toString('hex'), resave: false, saveUninitialized: false }));

  app.get('/login', async (req, res) => {
    req.session.state = randomBytes(16).toString('hex');
    res.redirect(await msalFor(req, undefined).getAuthCodeUrl({ scopes, redirectUri, state: req.session.state }));
  });

  app.get('/redirect', async (req, res) => {
    if (typeof req.query.code !== 'string' || req.query.state !== req.session.state) return res.status(400).send('Bad sign-in response.');
    // The user is not known until the code is redeemed: no partitionKey, so the plugin files the new
    // cache under the account that signed in.
    const result = await msalFor(req, undefined).acquireTokenByCode({ code: req.query.code, scopes, redirectUri });
    req.session.homeAccountId = result.account.homeAccountId;
    res.redirect('/me');
  });

  app.get('/me', async (req, res) => {
    if (!req.session.homeAccountId) return res.status(401).send('Not signed in: /login');
    const msal = msalFor(req, partitionKeys.forAccount(req.session.homeAccountId));
    const account = await msal.getTokenCache().getAccountByHomeId(req.session.homeAccountId);
    if (!account) return res.status(401).send('Session expired: /login');
    const result = await msal.acquireTokenSilent({ account, scopes });
    res.json({ username: account.username, tokenExpiresOn: result.expiresOn, tokenFromCache: result.fromCache });
  });

  app.get('/logout', async (req, res) => {
    if (req.session.homeAccountId) await cacheStoreFor(req).delete(partitionKeys.forAccount(req.session.homeAccountId));
    req.session.destroy(() => res.send('Signed out.'));
  });

  return app;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const app = await createWebApp();
  app.listen(Number(process.env.PORT ?? 3000), () => console.log(`listening on ${process.env.PORT ?? 3000}`));
}
