// Electron's safeStorage, handed in by the app: no native module of ours loads on this path, so an
// Electron app needs no rebuild for it. The package never imports `electron`.
import { KeychainCacheError } from '../errors.js';
import { sleep } from '../files.js';
import { createEncryptedFilePersistence, type Cipher } from './encrypted-file.js';
import type { Persistence, SafeStorageLike } from './types.js';

export interface SafeStoragePersistenceOptions {
  cachePath: string;
  platform: NodeJS.Platform;
  safeStorage: SafeStorageLike;
  waitMs: number;
  allowPlaintext: boolean;
}

/**
 * `cachePath` holds `safeStorage.encryptString(json)` (or its Async form), replaced atomically under the
 * same lock as every backend. On Linux, `basic_text` means Chromium's hard-coded key: that is plaintext
 * in all but name, so it needs allowPlaintextFallback and is reported with `encrypted: false`.
 */
export async function createSafeStoragePersistence(options: SafeStoragePersistenceOptions): Promise<Persistence> {
  const { cachePath, platform, safeStorage, waitMs, allowPlaintext } = options;
  const useAsync = typeof safeStorage.isAsyncEncryptionAvailable === 'function' &&
    typeof safeStorage.encryptStringAsync === 'function' && typeof safeStorage.decryptStringAsync === 'function';
  await waitUntilAvailable(safeStorage, useAsync, waitMs);

  const selected = platform === 'linux' && typeof safeStorage.getSelectedStorageBackend === 'function'
    ? safeStorage.getSelectedStorageBackend() : undefined;
  const hardCodedKey = selected === 'basic_text';
  if (hardCodedKey && !allowPlaintext) {
    throw new KeychainCacheError('PLAINTEXT_NOT_ALLOWED',
      "Electron's safeStorage is in 'basic_text' mode: no keyring (gnome-libsecret or kwallet) was found, so it " +
      'encrypts with a key hard-coded in Chromium, which protects nothing. Run the app in a desktop session with a ' +
      'keyring (or pass --password-store=gnome-libsecret), or accept this with allowPlaintextFallback: true.');
  }

  const available = async (): Promise<boolean> =>
    useAsync ? safeStorage.isAsyncEncryptionAvailable!() : safeStorage.isEncryptionAvailable!();
  const explainFailure: Cipher['explainFailure'] = async (error, during, sealed) =>
    explainSafeStorageFailure({ error, during, sealed, cachePath, platform, safeStorage, available });
  const cipher: Cipher = useAsync
    ? {
      seal: (text) => safeStorage.encryptStringAsync!(text),
      open: async (sealed) => (await safeStorage.decryptStringAsync!(Buffer.from(sealed))).result,
      explainFailure,
    }
    : {
      seal: async (text) => safeStorage.encryptString!(text),
      open: async (sealed) => safeStorage.decryptString!(Buffer.from(sealed)),
      explainFailure,
    };

  return createEncryptedFilePersistence({
    kind: 'safe-storage',
    cachePath,
    platform,
    encrypted: !hardCodedKey,
    cipher,
    decryptHelp: "safeStorage refused it while encryption was available. It was written by another user, machine or " +
      "app (safeStorage's key belongs to the app's name), the keyring entry that holds the key was reset, or the " +
      'bytes are damaged. It is moved aside and users sign in again.',
  });
}

/**
 * Electron's safeStorage (electron_api_safe_storage.cc) throws:
 * - "Error while decrypting the ciphertext provided to safeStorage.decryptString." (and the same for
 *   decryptStringAsync) when OSCrypt refuses bytes while encryption is available: the data is bad;
 * - the same text plus " Ciphertext does not appear to be encrypted." for bytes without v10/v11: bad data;
 * - "... Decryption is not available." / "... Encryption is not available." when isEncryptionAvailable() is
 *   false, "safeStorage cannot be used before app is ready", and "safeStorage.decryptStringAsync is
 *   temporarily unavailable. Please try again.": the key is out of reach now.
 * Messages are only the first witness: availability is asked again after a refusal, since a key that went
 * away between the two calls is an environment problem whatever the text said. On Linux, bytes sealed with
 * the keyring key ("v11") refused by a session in 'basic_text' (no keyring reachable, e.g. over SSH) are not
 * damaged either: that session never had the key.
 */
async function explainSafeStorageFailure(facts: {
  error: unknown; during: 'open' | 'seal'; sealed: Uint8Array | undefined; cachePath: string; platform: NodeJS.Platform;
  safeStorage: SafeStorageLike; available: () => Promise<boolean>;
}): Promise<'data' | KeychainCacheError> {
  const { error, during, sealed, cachePath, platform, safeStorage, available } = facts;
  const message = error instanceof Error ? error.message : String(error);
  const what = during === 'open' ? `decrypt the token cache ${cachePath}` : `encrypt the token cache for ${cachePath}`;
  const kept = during === 'open' ? 'The file was left as it is.' : 'Nothing was written.';
  const saysUnavailable = /not available|temporarily unavailable|before app is ready/i.test(message);
  const availableNow = saysUnavailable ? false : await available().catch(() => false);
  if (!availableNow) {
    return new KeychainCacheError('BACKEND_UNAVAILABLE', `Electron's safeStorage could not ${what}: encryption is not ` +
      'available right now (the OS key store that holds its key cannot be reached: on Linux the keyring left the ' +
      'session or is locked, on Windows the DPAPI-protected key in Local State cannot be opened, on macOS Keychain ' +
      `access was refused; or the app is not ready yet). Try again once it is; create the plugin after app.whenReady(). ${kept}`,
    { cause: error });
  }
  const selected = platform === 'linux' && typeof safeStorage.getSelectedStorageBackend === 'function'
    ? safeStorage.getSelectedStorageBackend() : undefined;
  if (during === 'open' && selected === 'basic_text' && sealed && Buffer.from(sealed.subarray(0, 3)).toString('latin1') === 'v11') {
    return new KeychainCacheError('BACKEND_UNAVAILABLE', `Electron's safeStorage could not ${what}: it was written with ` +
      "the key kept in the desktop keyring ('v11'), and this session has no keyring ('basic_text', usual over SSH or " +
      `without a desktop session). Run the app in the desktop session, or pass --password-store=gnome-libsecret. ${kept}`,
    { cause: error });
  }
  return during === 'open' ? 'data'
    : new KeychainCacheError('STORE_FAILED', `Electron's safeStorage could not ${what} although encryption is available ` +
      `(see cause). ${kept}`, { cause: error });
}

async function waitUntilAvailable(safeStorage: SafeStorageLike, useAsync: boolean, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const available = useAsync ? await safeStorage.isAsyncEncryptionAvailable!() : safeStorage.isEncryptionAvailable!();
    if (available) return;
    if (Date.now() >= deadline) {
      throw new KeychainCacheError('BACKEND_UNAVAILABLE',
        `Electron's safeStorage reported encryption unavailable for ${waitMs} ms. It becomes available only after the ` +
        "app's ready event: create the cache plugin after `await app.whenReady()`. On Linux it also needs a keyring " +
        '(gnome-keyring or kwallet) in the desktop session.');
    }
    await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
  }
}
