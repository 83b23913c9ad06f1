import { dirname } from 'node:path';
import { KeychainCacheError } from '../errors.js';
import {
  assertSafeDirectory, assertSafePath, corruptName, ensureDirectory, markerStamper, randomHex, readFileIfExists, writeFileAtomic,
} from '../files.js';
import { deleteFile } from './plaintext-file.js';
import { loadKeytar } from './keytar-binding.js';
import type { Persistence } from './types.js';

export interface KeytarStoreOptions {
  kind: 'keychain' | 'libsecret';
  cachePath: string;
  serviceName: string;
  accountName: string;
  platform: NodeJS.Platform;
  /** How people should read where the item is, e.g. `Secret Service item (service "x", account "y")`. */
  describeItem(service: string, account: string): string;
  /** Turns what keytar threw into a typed error naming the cause and the fix. */
  explainError(error: unknown, what: string): KeychainCacheError;
  /**
   * libsecret answers "not found" for items in a locked collection; when true, an empty answer while the
   * marker says a cache was written is double-checked with a throwaway write.
   */
  probeWhenEmpty: boolean;
}

/**
 * The cache JSON in an OS keychain item reached through keytar (service and account: the layout
 * msal-node-extensions, Azure Identity, MSAL Python and MSAL.NET use), plus a marker file at `cachePath`
 * whose replacement tells other processes to reload. Shared by the macOS Keychain and libsecret backends.
 */
export async function createKeytarPersistence(options: KeytarStoreOptions): Promise<Persistence> {
  const { kind, cachePath, serviceName, accountName, platform, describeItem, explainError, probeWhenEmpty } = options;
  const keytar = await loadKeytar();
  await ensureDirectory(dirname(cachePath));
  await assertSafePath(cachePath);
  const location = describeItem(serviceName, accountName);
  const call = async <T>(action: string, run: () => Promise<T>, item = location): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      throw explainError(error, `${action} ${item}`);
    }
  };

  const stamp = markerStamper(cachePath);
  const touchMarker = () =>
    // Our own version string in the marker; msal-node-extensions only looks at its mtime. Not fsynced:
    // the marker carries no data, and after a power loss any marker just means "reload".
    writeFileAtomic(cachePath, `{"version":"${randomHex(16)}"}`, { platform, durable: false });

  const probeWritable = async (): Promise<void> => {
    const account = `msal-keychain-cache-verify-${process.pid}-${randomHex(4)}`;
    const probe = describeItem(serviceName, account);
    const payload = randomHex(16);
    try {
      await call('write a test item as', () => keytar.setPassword(serviceName, account, payload), probe);
      const back = await call('read the test item', () => keytar.getPassword(serviceName, account), probe);
      if (back !== payload) {
        throw new KeychainCacheError('BACKEND_UNAVAILABLE',
          `A test item written as ${probe} could not be read back. The keychain may be locked or misbehaving: ` +
          'unlock it (log into the desktop session) or restart its daemon.');
      }
    } finally {
      await keytar.deletePassword(serviceName, account).catch(() => undefined);
    }
  };

  const load = async (): Promise<string | null> => {
    // The directory holds the marker and the lockfile: checked at every load, as the file backends check theirs.
    await assertSafeDirectory(dirname(cachePath), { allowMissing: true });
    const contents = await call('read the', () => keytar.getPassword(serviceName, accountName));
    if (contents === null && probeWhenEmpty && (await readFileIfExists(cachePath)) !== null) {
      // A marker says a cache was written here: make sure an empty answer is not a locked keyring.
      await probeWritable();
    }
    return contents;
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
      await call('write the', () => keytar.setPassword(serviceName, accountName, contents));
      await touchMarker();
    },
    delete: async () => {
      const deleted = await call('delete the', () => keytar.deletePassword(serviceName, accountName));
      // libsecret answers "nothing to delete" for an item in a locked collection: as at load, a marker that says
      // a cache was written gets a throwaway write first, so a locked keyring throws KEYRING_LOCKED instead of
      // reporting a sign-out that did not happen.
      if (!deleted && probeWhenEmpty && (await readFileIfExists(cachePath)) !== null) await probeWritable();
      await deleteFile(cachePath);
      return deleted;
    },
    // The marker's content version, not only its stat: a same-size marker on a reused inode within one
    // timestamp tick has the same stat (issue 10).
    changeToken: async () => stamp(),
    quarantine: async () => {
      const bytes = await call('read the', () => keytar.getPassword(serviceName, accountName));
      const asideAccount = corruptName(accountName);
      // keytar cannot store an empty secret, and there is nothing to keep of one.
      const keep = bytes !== null && bytes !== '';
      if (keep) await call('write the', () => keytar.setPassword(serviceName, asideAccount, bytes), describeItem(serviceName, asideAccount));
      if (bytes !== null) await call('delete the', () => keytar.deletePassword(serviceName, accountName));
      await touchMarker();
      return keep ? describeItem(serviceName, asideAccount) : 'nowhere (the item was empty, so it was deleted)';
    },
    verify: probeWritable,
  };
}
