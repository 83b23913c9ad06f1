// Reading serialized MSAL caches (the JSON msal-node's TokenCache.serialize() writes) without msal-node:
// shared by the desktop plugin (account change events) and the distributed plugin (merges, partitions).

/** A serialized cache: sections (Account, IdToken, AccessToken, RefreshToken, AppMetadata) of entities by key. */
export type CacheJson = Record<string, Record<string, unknown>>;

/** The parsed cache, or undefined when the text is not a JSON object. Never throws, never quotes the text. */
export function parseCacheJson(text: string): CacheJson | undefined {
  try {
    const parsed = JSON.parse(text) as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed as CacheJson : undefined;
  } catch {
    return undefined;
  }
}

/** An account as the stored cache describes it (the fields of MSAL's serialized account entity). */
export interface CachedAccount {
  homeAccountId: string;
  localAccountId: string;
  environment: string;
  tenantId: string;
  username: string;
  name?: string;
}

/** The accounts in a serialized MSAL cache, keyed by home account id and environment; undefined when unreadable. */
export function accountsIn(text: string): Map<string, CachedAccount> | undefined {
  const parsed = parseCacheJson(text);
  if (parsed === undefined) return undefined;
  const section = parsed.Account as Record<string, Record<string, unknown>> | undefined;
  const accounts = new Map<string, CachedAccount>();
  if (typeof section !== 'object' || section === null) return accounts;
  for (const entity of Object.values(section)) {
    if (typeof entity?.home_account_id !== 'string') continue;
    const account: CachedAccount = {
      homeAccountId: entity.home_account_id,
      localAccountId: String(entity.local_account_id ?? ''),
      environment: String(entity.environment ?? ''),
      tenantId: String(entity.realm ?? ''),
      username: String(entity.username ?? ''),
      ...(typeof entity.name === 'string' ? { name: entity.name } : {}),
    };
    accounts.set(`${account.homeAccountId}|${account.environment}|${account.tenantId}`, account);
  }
  return accounts;
}
