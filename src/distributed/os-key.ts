// The blob key kept in this machine's secret store (DPAPI file, macOS Keychain, Secret Service, Electron
// safeStorage) through the package's own persistence layer, created on first use. For one machine; a
// fleet of servers needs one shared key from a vault instead.
import { asKeychainCacheError, KeychainCacheError } from '../errors.js';
import { acquireFileLock } from '../file-lock.js';
import { checkPersistence } from '../options.js';
import type { Persistence } from '../persistence/types.js';
import { checkOptions, optionalFlag } from './checks.js';

export interface KeyFromPersistenceOptions {
  /**
   * Accept a persistence that stores in the clear (the plaintext file): the AES key then sits in a plaintext file
   * next to nothing that protects it. Default false: such a persistence is refused with PLAINTEXT_NOT_ALLOWED.
   */
  allowUnencrypted?: boolean;
}

/**
 * Returns the 32-byte key stored in `persistence`, creating and storing a random one the first time. For one
 * machine: several hosts would each make a key of their own under the same id, and read each other's blobs as
 * undecryptable (the plugin then keeps them aside instead of destroying them, but users sign in again).
 */
export async function keyFromPersistence(persistence: Persistence, options: KeyFromPersistenceOptions = {}): Promise<Buffer> {
  checkPersistence(persistence, 'keyFromPersistence');
  checkOptions(options, 'keyFromPersistence', ['allowUnencrypted'], '{ allowUnencrypted }, or leave it out');
  const allowUnencrypted = optionalFlag(options.allowUnencrypted, 'allowUnencrypted', false);
  if (!persistence.encrypted && !allowUnencrypted) {
    throw new KeychainCacheError('PLAINTEXT_NOT_ALLOWED', `The persistence at ${persistence.location} (${persistence.kind}) stores in the clear, ` +
      'so the cache key would sit in a plaintext file. Use an encrypted backend (leave allowPlaintextFallback off), or pass ' +
      '{ allowUnencrypted: true } if that file is protected otherwise.');
  }
  // Under the persistence's lock: two processes starting at once must not create two different keys.
  const release = await acquireFileLock(`${persistence.cachePath}.lockfile`).catch((error: unknown) => {
    throw asKeychainCacheError(error, 'Locking the cache key');
  });
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
  } catch (error) {
    // An app's own persistence may throw anything: one error identity, and its text (maybe the key) not copied.
    throw asKeychainCacheError(error, 'Reading or storing the cache key');
  } finally {
    await release();
  }
}
