// Reading serialized MSAL caches (the JSON msal-node's TokenCache.serialize() writes) without msal-node:
// shared by the desktop plugin (account change events, re-merges after a lost lock) and the distributed plugin
// (merges, partitions).

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

/**
 * Three-way merge of serialized caches, entity by entity: start from `latest` (what another instance
 * stored), apply what this instance (or process) changed since `base` (added or updated entities win, entities it
 * removed are removed). Both instances' new tokens survive.
 */
export function mergeCaches(base: string, ours: string, latest: string): string {
  const baseJson = parseCacheJson(base) ?? {};
  const oursJson = parseCacheJson(ours) ?? {};
  const result = parseCacheJson(latest) ?? {};
  for (const section of new Set([...Object.keys(baseJson), ...Object.keys(oursJson)])) {
    const before = baseJson[section] ?? {};
    const after = oursJson[section] ?? {};
    const merged: Record<string, unknown> = { ...(result[section] ?? {}) };
    for (const [key, value] of Object.entries(after)) {
      if (!(key in before) || JSON.stringify(before[key]) !== JSON.stringify(value)) merged[key] = value;
    }
    for (const key of Object.keys(before)) if (!(key in after)) delete merged[key];
    result[section] = merged;
  }
  return JSON.stringify(result);
}

/**
 * Makes msal's memory exactly `text`: msal-node's deserialize only adds, so a client that still held an entity
 * another process removed (a sign-out) would write it back. Clears through msal's own storage first.
 */
export function replaceMemory(context: { tokenCache: { deserialize(text: string): void } }, text: string): void {
  (context.tokenCache as unknown as { storage?: { clear?: () => void } }).storage?.clear?.();
  context.tokenCache.deserialize(text);
}
