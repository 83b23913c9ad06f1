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

  const cipher: Cipher = useAsync
    ? {
      seal: (text) => safeStorage.encryptStringAsync!(text),
      open: async (sealed) => (await safeStorage.decryptStringAsync!(Buffer.from(sealed))).result,
    }
    : {
      seal: async (text) => safeStorage.encryptString!(text),
      open: async (sealed) => safeStorage.decryptString!(Buffer.from(sealed)),
    };

  return createEncryptedFilePersistence({
    kind: 'safe-storage',
    cachePath,
    platform,
    encrypted: !hardCodedKey,
    cipher,
    decryptHelp: "safeStorage refused it. It was written by another user, machine or app (safeStorage's key " +
      "belongs to the app's name), the keyring that holds the key was reset, or the bytes are damaged. It is moved " +
      'aside and users sign in again.',
  });
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
