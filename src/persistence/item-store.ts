import { dirname } from 'node:path';
import { KeychainCacheError } from '../errors.js';
import {
  assertSafeDirectory, corruptName, markerStamper, prepareCacheLocation, randomHex, writeFileAtomic,
} from '../files.js';
import { deleteFile } from './plaintext-file.js';
import type { Persistence } from './types.js';

/** One secret per (service, account), the item layout keytar uses on every platform. */
export interface SecretItems {
  /**
   * The secret, or null when no item exists. A locked item throws; it is never reported as missing. `where` is what
   * an earlier `set` returned, perhaps in another process: a hint the store checks, never trusts.
   */
  get(service: string, account: string, where?: string): Promise<string | null>;
  /** Creates the item, or replaces its secret; where the item is, when the store can say (a Secret Service object path). */
  set(service: string, account: string, secret: string): Promise<string | void>;
  /** False when there was no item. */
  delete(service: string, account: string): Promise<boolean>;
}

export interface ItemStoreOptions {
  kind: 'keychain' | 'libsecret';
  cachePath: string;
  serviceName: string;
  accountName: string;
  platform: NodeJS.Platform;
  /** How people should read where the item is, e.g. `Secret Service item (service "x", account "y")`. */
  describeItem(service: string, account: string): string;
  /** Turns what the store threw into a typed error naming the cause and the fix. */
  explainError(error: unknown, what: string): KeychainCacheError;
  /** Opens the store (loads keytar, or nothing): called once, at creation. */
  openItems(): Promise<SecretItems>;
  /** See Persistence.describeStore. */
  describeStore?(): Promise<string | undefined>;
}

/**
 * The cache JSON in an OS keychain item named by service and account (the layout keytar,
 * msal-node-extensions, Azure Identity, MSAL Python and MSAL.NET use), plus a marker file at `cachePath`
 * whose replacement tells other processes to reload. Shared by the macOS Keychain (through keytar) and the
 * Secret Service (through our own client) backends.
 */
export async function createItemStorePersistence(options: ItemStoreOptions): Promise<Persistence> {
  const { kind, cachePath, serviceName, accountName, platform, describeItem, explainError } = options;
  const items = await options.openItems();
  await prepareCacheLocation(cachePath);
  const location = describeItem(serviceName, accountName);
  const call = async <T>(action: string, run: () => Promise<T>, item = location): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      throw explainError(error, `${action} ${item}`);
    }
  };

  // Where the cache's item is, as the marker last read says: a process's first load then asks the store for that item
  // (it checks the item is still ours) instead of searching for it (issue 13: two round trips of a CLI's start).
  let itemHint: string | undefined;
  const stamp = markerStamper(cachePath, (content) => { itemHint = markerItem(content); });
  const touchMarker = (item?: string | void) =>
    // Our own version string in the marker; msal-node-extensions only looks at its mtime. Not fsynced:
    // the marker carries no data, and after a power loss any marker just means "reload".
    writeFileAtomic(cachePath, JSON.stringify({ version: randomHex(16), ...(item ? { item } : {}) }), { platform, durable: false });

  const probeWritable = async (): Promise<void> => {
    const account = `msal-keychain-cache-verify-${process.pid}-${randomHex(4)}`;
    const probe = describeItem(serviceName, account);
    const payload = randomHex(16);
    let written = false;
    try {
      await call('write a test item as', () => items.set(serviceName, account, payload), probe);
      written = true;
      const back = await call('read the test item', () => items.get(serviceName, account), probe);
      if (back !== payload) {
        throw new KeychainCacheError('BACKEND_UNAVAILABLE',
          `A test item written as ${probe} could not be read back. The keychain may be locked or misbehaving: ` +
          'unlock it (log into the desktop session) or restart its daemon.');
      }
    } finally {
      // Only what was written: after a failed write (a locked keyring, a store that did not answer) a delete
      // would wait out the same prompt or timeout again.
      if (written) await items.delete(serviceName, account).catch(() => undefined);
    }
  };

  const load = async (): Promise<string | null> => {
    // The directory holds the marker and the lockfile: checked at every load, as the file backends check theirs.
    await assertSafeDirectory(dirname(cachePath), { allowMissing: true });
    return call('read the', () => items.get(serviceName, accountName, itemHint));
  };

  return {
    kind,
    encrypted: true,
    cachePath,
    location,
    load,
    save: async (contents, saveOptions) => {
      // The keychain write is the commit: the marker only announces it.
      await saveOptions?.beforeCommit?.();
      const item = await call('write the', () => items.set(serviceName, accountName, contents));
      await touchMarker(item);
    },
    delete: async () => {
      const deleted = await call('delete the', () => items.delete(serviceName, accountName));
      await deleteFile(cachePath);
      return deleted;
    },
    // The marker's content version, not only its stat: a same-size marker on a reused inode within one
    // timestamp tick has the same stat (issue 10).
    changeToken: async () => stamp(),
    quarantine: async () => {
      const bytes = await call('read the', () => items.get(serviceName, accountName));
      const asideAccount = corruptName(accountName);
      // keytar cannot store an empty secret, and there is nothing to keep of one.
      const keep = bytes !== null && bytes !== '';
      if (keep) await call('write the', () => items.set(serviceName, asideAccount, bytes), describeItem(serviceName, asideAccount));
      if (bytes !== null) await call('delete the', () => items.delete(serviceName, accountName));
      await touchMarker();
      return keep ? describeItem(serviceName, asideAccount) : 'nowhere (the item was empty, so it was deleted)';
    },
    verify: probeWritable,
    ...(options.describeStore ? { describeStore: options.describeStore } : {}),
  };
}

/** The item named in a marker's content, if it names one (a marker another program wrote may hold anything). */
function markerItem(content: string): string | undefined {
  try {
    const item = (JSON.parse(content) as { item?: unknown } | null)?.item;
    return typeof item === 'string' && item.length <= 400 ? item : undefined;
  } catch {
    return undefined;
  }
}
