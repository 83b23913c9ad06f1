// The blob key kept in this machine's secret store (DPAPI file, macOS Keychain, Secret Service, Electron
// safeStorage) through the package's own persistence layer, created on first use. For one machine; a
// fleet of servers needs one shared key from a vault instead.
import { KeychainCacheError } from '../errors.js';
import { acquireFileLock } from '../file-lock.js';
import type { Persistence } from '../persistence/types.js';

/** Returns the 32-byte key stored in `persistence`, creating and storing a random one the first time. */
export async function keyFromPersistence(persistence: Persistence): Promise<Buffer> {
  // Under the persistence's lock: two processes starting at once must not create two different keys.
  const release = await acquireFileLock(`${persistence.cachePath}.lockfile`);
  try {
    const text = await persistence.load();
    if (text !== null) {
      let key: Buffer | undefined;
      try {
        const parsed = JSON.parse(text) as { aes256Key?: unknown };
        if (typeof parsed.aes256Key === 'string') key = Buffer.from(parsed.aes256Key, 'base64');
      } catch {
        key = undefined;
      }
      if (key?.length !== 32) {
        // Never replaced silently: a new key would make every stored cache unreadable.
        throw new KeychainCacheError('CACHE_CORRUPT', `The stored cache key in ${persistence.location} is not a 32-byte key. ` +
          'Restore it, or delete it (persistence.delete()) to start over: every stored cache then reads as DECRYPT_FAILED and users sign in again.');
      }
      return key;
    }
    const key = Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(32)));
    await persistence.save(JSON.stringify({ aes256Key: key.toString('base64') }));
    return key;
  } finally {
    await release();
  }
}
