/**
 * `msal-keychain-cache/testing`: an in-process token endpoint for testing apps that use msal-node, offline.
 *
 * Pass {@link TokenEndpoint.networkClient} as msal-node's `system.networkClient` and use {@link testAuthority} as
 * the authority: msal-node then runs its real code (authority discovery, the token request, the cache and our
 * plugin) against an endpoint that lives in your test process. Set {@link TokenEndpoint.refuse} to prove that a
 * token came from the cache. See docs/testing.md.
 *
 * This entry point is for tests only: the main entry never loads it.
 * @packageDocumentation
 */
export { createTokenEndpoint, testAuthority, testTenantId } from './token-endpoint.js';
export type { IssuedTokens, TokenEndpoint, TokenEndpointOptions } from './token-endpoint.js';
