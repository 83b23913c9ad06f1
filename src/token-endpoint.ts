// An in-process stand-in for the Microsoft identity platform's token endpoint, plugged into msal-node as
// `system.networkClient`. The self-test uses it to sign in without a network; the tests use it to drive
// the real msal-node client. Users are derived from the authorization code, so separate processes that
// use the same code get the same account.
import { createHash, randomBytes } from 'node:crypto';
import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node';
import { KeychainCacheError } from './errors.js';

/** The tenant id of every account the test endpoint signs in (a fixed GUID that belongs to no real tenant). */
export const testTenantId = '8f3c1a52-6f0b-4d51-9d63-5b8e0c2a7e41';
/** The authority to give msal-node (`auth.authority`) together with the endpoint's `networkClient`. */
export const testAuthority = `https://login.microsoftonline.com/${testTenantId}`;

/** The tokens of one answer of the endpoint. */
export interface IssuedTokens {
  accessToken: string;
  refreshToken?: string;
  idToken?: string;
}

/** Options of {@link createTokenEndpoint}; every field is optional. */
export interface TokenEndpointOptions {
  /** The client id written into issued ID tokens (`aud`) when a request names none. Default: `'client'`. */
  clientId?: string;
  /** Lifetime of issued access tokens, in whole seconds, at least 1 and at most 10 years. Default: `3600`. */
  tokenLifetimeSeconds?: number;
  /** Device code flow: every device code is approved at once for this user. Default: none, see {@link TokenEndpoint.approveDeviceCode}. */
  deviceCodeUser?: string;
}

/** An in-process token endpoint, made by {@link createTokenEndpoint}. */
export interface TokenEndpoint {
  /** Give this to msal-node as `system.networkClient`: it answers authority discovery and token requests in process. */
  networkClient: INetworkModule;
  /** When true every token request is answered with `invalid_grant`, so only the cache can serve tokens. */
  refuse: boolean;
  /** Token requests received, by grant type (refused ones included). */
  requests: Record<string, number>;
  /** Every token this endpoint issued, so tests can look for them where they must not be. */
  issued: IssuedTokens[];
  /** The object id that a sign-in with this authorization code produces. */
  objectIdFor(code: string): string;
  /** Device code flow: lets the user with this name finish the sign-in shown with `userCode`. */
  approveDeviceCode(userCode: string, user: string): void;
}

// msal-node sends the short form; RFC 8628's URN is accepted too.
const deviceCodeGrants = ['device_code', 'urn:ietf:params:oauth:grant-type:device_code'];

function base64Url(value: string | Buffer): string {
  return Buffer.from(value).toString('base64url');
}

/** A stable GUID-shaped id for a name. */
function guidFor(name: string): string {
  const hex = createHash('sha256').update(name).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function json<T>(body: unknown, status = 200): NetworkResponse<T> {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8' }, body: body as T };
}

/**
 * Creates an in-process stand-in for the Microsoft identity platform that serves the authorization code, device
 * code, refresh token and client credentials grants. The user of an authorization code is derived from the code,
 * so two processes that sign in with the same code get the same account.
 * @example
 * const endpoint = createTokenEndpoint();
 * const app = new PublicClientApplication({ auth: { clientId, authority: testAuthority }, system: { networkClient: endpoint.networkClient } });
 */
const endpointKeys = ['clientId', 'tokenLifetimeSeconds', 'deviceCodeUser'];

/** Checked at creation like every option of this package: a typo here would make a test wait or pass for the wrong reason. */
function checkEndpointOptions(options: unknown): TokenEndpointOptions {
  const invalid = (message: string) => new KeychainCacheError('INVALID_OPTION', `createTokenEndpoint: ${message}`);
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw invalid('options must be an object.');
  for (const key of Object.keys(options)) {
    if (!endpointKeys.includes(key)) throw invalid(`unknown option '${key}'. Valid options: ${endpointKeys.join(', ')}.`);
  }
  const { clientId, tokenLifetimeSeconds, deviceCodeUser } = options as Record<string, unknown>;
  for (const [name, value] of [['clientId', clientId], ['deviceCodeUser', deviceCodeUser]] as const) {
    if (value !== undefined && (typeof value !== 'string' || value === '')) throw invalid(`${name} must be a non-empty string.`);
  }
  if (tokenLifetimeSeconds !== undefined && !(Number.isInteger(tokenLifetimeSeconds) &&
      (tokenLifetimeSeconds as number) >= 1 && (tokenLifetimeSeconds as number) <= 315_360_000)) {
    throw invalid(`tokenLifetimeSeconds must be a whole number of seconds from 1 to 315360000 (10 years); got ${
      typeof tokenLifetimeSeconds === 'number' ? tokenLifetimeSeconds : typeof tokenLifetimeSeconds}.`);
  }
  return options as TokenEndpointOptions;
}

export function createTokenEndpoint(options: TokenEndpointOptions = {}): TokenEndpoint {
  const lifetime = checkEndpointOptions(options).tokenLifetimeSeconds ?? 3600;
  // device_code -> { userCode, the user who approved it (undefined while pending) }
  const deviceCodes = new Map<string, { userCode: string; user: string | undefined }>();
  const endpoint: TokenEndpoint = {
    refuse: false,
    requests: {},
    issued: [],
    objectIdFor: (code) => guidFor(`user:${code}`),
    approveDeviceCode: (userCode, user) => {
      for (const entry of deviceCodes.values()) if (entry.userCode === userCode) entry.user = user;
    },
    networkClient: {
      async sendGetRequestAsync<T>(url: string): Promise<NetworkResponse<T>> {
        const { origin, pathname } = new URL(url);
        if (pathname.endsWith('/discovery/instance')) {
          return json<T>({
            tenant_discovery_endpoint: `${testAuthority}/v2.0/.well-known/openid-configuration`,
            'api-version': '1.1',
            metadata: [{
              preferred_network: 'login.microsoftonline.com',
              preferred_cache: 'login.windows.net',
              aliases: ['login.microsoftonline.com', 'login.windows.net', 'login.microsoft.com', 'sts.windows.net'],
            }],
          });
        }
        if (pathname.endsWith('/.well-known/openid-configuration')) {
          const tenant = pathname.split('/')[1] ?? testTenantId;
          return json<T>({
            authorization_endpoint: `${origin}/${tenant}/oauth2/v2.0/authorize`,
            token_endpoint: `${origin}/${tenant}/oauth2/v2.0/token`,
            device_authorization_endpoint: `${origin}/${tenant}/oauth2/v2.0/devicecode`,
            end_session_endpoint: `${origin}/${tenant}/oauth2/v2.0/logout`,
            issuer: `${origin}/${testTenantId}/v2.0`,
            jwks_uri: `${origin}/${tenant}/discovery/v2.0/keys`,
            response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
          });
        }
        return json<T>({ error: 'not_found' }, 404);
      },
      async sendPostRequestAsync<T>(url: string, request?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
        const form = new URLSearchParams(String(request?.body ?? ''));
        const pathname = new URL(url).pathname;
        if (pathname.endsWith('/devicecode')) {
          endpoint.requests.devicecode = (endpoint.requests.devicecode ?? 0) + 1;
          const deviceCode = randomBytes(24).toString('base64url');
          const userCode = randomBytes(4).toString('hex').toUpperCase();
          deviceCodes.set(deviceCode, { userCode, user: options.deviceCodeUser });
          return json<T>({
            device_code: deviceCode, user_code: userCode, verification_uri: 'https://microsoft.com/devicelogin',
            expires_in: 900, interval: 1,
            message: `To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ${userCode} to authenticate.`,
          });
        }
        const grant = form.get('grant_type') ?? 'unknown';
        endpoint.requests[grant] = (endpoint.requests[grant] ?? 0) + 1;
        if (!pathname.endsWith('/token')) return json<T>({ error: 'not_found' }, 404);
        if (endpoint.refuse) {
          return json<T>({ error: 'invalid_grant', error_description: 'AADSTS70000: refused by the test token endpoint.' }, 400);
        }
        const clientId = form.get('client_id') ?? options.clientId ?? 'client';
        const scope = form.get('scope') ?? '';
        let name: string | undefined;
        if (grant === 'authorization_code') {
          name = form.get('code') ?? undefined;
        } else if (grant === 'refresh_token') {
          // Refresh tokens name their user (rt.<user>.<random>), so that any process's endpoint can redeem
          // them, as the real service would for tokens issued to another instance of the same app.
          const [prefix, owner] = (form.get('refresh_token') ?? '').split('.');
          name = prefix === 'rt' && owner ? Buffer.from(owner, 'base64url').toString('utf8') : undefined;
          if (!name) return json<T>({ error: 'invalid_grant', error_description: 'AADSTS70008: unknown refresh token.' }, 400);
        } else if (deviceCodeGrants.includes(grant)) {
          const entry = deviceCodes.get(form.get('device_code') ?? '');
          if (!entry) return json<T>({ error: 'expired_token', error_description: 'AADSTS70019: unknown device code.' }, 400);
          if (entry.user === undefined) {
            return json<T>({ error: 'authorization_pending', error_description: 'AADSTS70016: the user has not signed in yet.' }, 400);
          }
          name = entry.user;
          deviceCodes.delete(form.get('device_code') ?? '');
        } else if (grant !== 'client_credentials') {
          return json<T>({ error: 'unsupported_grant_type' }, 400);
        }
        const accessToken = `at.${randomBytes(24).toString('base64url')}`;
        if (name === undefined) {
          endpoint.issued.push({ accessToken });
          return json<T>({ token_type: 'Bearer', expires_in: lifetime, ext_expires_in: lifetime, access_token: accessToken });
        }
        const oid = endpoint.objectIdFor(name);
        const now = Math.floor(Date.now() / 1000);
        const idToken = [
          base64Url(JSON.stringify({ alg: 'none', typ: 'JWT' })),
          base64Url(JSON.stringify({
            aud: clientId, iss: `${testAuthority}/v2.0`, iat: now, nbf: now, exp: now + lifetime,
            tid: testTenantId, oid, sub: guidFor(`sub:${name}`), name: `Test ${name}`,
            preferred_username: `${name}@example.test`, ver: '2.0',
          })),
          '',
        ].join('.');
        const refreshToken = `rt.${base64Url(name)}.${randomBytes(24).toString('base64url')}`;
        endpoint.issued.push({ accessToken, refreshToken, idToken });
        return json<T>({
          token_type: 'Bearer', scope, expires_in: lifetime, ext_expires_in: lifetime,
          access_token: accessToken, refresh_token: refreshToken, id_token: idToken,
          client_info: base64Url(JSON.stringify({ uid: oid, utid: testTenantId })),
        });
      },
    },
  };
  return endpoint;
}
