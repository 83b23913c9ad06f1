import { KeychainCacheError } from '../errors.js';
import { fileStamp, prepareCacheLocation, randomHex, readBytesIfExists, writeFileAtomic } from '../files.js';
import { deleteFile, quarantineFile, verifyDirectory } from './plaintext-file.js';
import type { BackendKind, Persistence } from './types.js';

export interface Cipher {
  seal(plaintext: string): Promise<Uint8Array>;
  /** Throws when the bytes are refused (wrong key or entropy, another user, tampered, truncated) or the key is out of reach. */
  open(sealed: Uint8Array): Promise<string>;
  /**
   * What a refusal by open() or seal() means. `'data'`: these bytes will never open for this user and key
   * (damaged, tampered, wrong entropy, not this format), so they are DECRYPT_FAILED and the plugin moves them
   * aside. A KeychainCacheError: the key material cannot be reached right now (profile not loaded, keyring
   * gone, access refused); it is thrown as it is and nothing is moved, because the bytes may be fine.
   */
  explainFailure(error: unknown, during: 'open' | 'seal', sealed?: Uint8Array): Promise<'data' | KeychainCacheError>;
}

export interface EncryptedFileOptions {
  kind: Extract<BackendKind, 'dpapi-file' | 'safe-storage'>;
  cachePath: string;
  platform: NodeJS.Platform;
  /** False only for safeStorage's Linux `basic_text` mode (a key hard-coded in Chromium). */
  encrypted: boolean;
  cipher: Cipher;
  /** What a refused decryption usually means on this backend, for the DECRYPT_FAILED message. */
  decryptHelp: string;
}

/**
 * The cache JSON sealed by an OS facility and kept in `cachePath` as raw bytes with no header (the format
 * every MSAL extension writes for DPAPI), replaced atomically. Bytes the cipher calls damaged throw
 * DECRYPT_FAILED, which the plugin handles like any unreadable cache: moved aside, users sign in again. A key
 * that cannot be reached now throws the cipher's typed error (KEYRING_LOCKED, ACCESS_DENIED, ...) and moves
 * nothing: signing users out because their profile was not loaded yet would destroy a good cache.
 */
export async function createEncryptedFilePersistence(options: EncryptedFileOptions): Promise<Persistence> {
  const { kind, cachePath, platform, encrypted, cipher, decryptHelp } = options;
  await prepareCacheLocation(cachePath);

  const open = async (sealed: Uint8Array): Promise<string> => {
    try {
      return await cipher.open(sealed);
    } catch (error) {
      const meaning = await cipher.explainFailure(error, 'open', sealed).catch(() => 'data' as const);
      if (meaning !== 'data') throw meaning;
      throw new KeychainCacheError('DECRYPT_FAILED',
        `The token cache ${cachePath} (${sealed.length} bytes) could not be decrypted by ${kind}: ${decryptHelp}`, { cause: error });
    }
  };

  return {
    kind,
    encrypted,
    cachePath,
    location: cachePath,
    load: async () => {
      const sealed = await readBytesIfExists(cachePath);
      if (sealed === null) return null;
      // An empty file is an unreadable cache like any other; the plugin moves it aside.
      if (sealed.length === 0) return '';
      return open(sealed);
    },
    save: async (contents, saveOptions) => {
      await writeFileAtomic(cachePath, await seal(cipher, kind, contents), { platform, beforeRename: saveOptions?.beforeCommit });
    },
    delete: () => deleteFile(cachePath),
    changeToken: () => fileStamp(cachePath),
    quarantine: () => quarantineFile(cachePath, platform),
    verify: async () => {
      const probe = `msal-keychain-cache verify ${randomHex(16)}`;
      const sealed = await seal(cipher, kind, probe);
      if (encrypted && Buffer.from(sealed).includes(probe)) {
        throw new KeychainCacheError('BACKEND_UNAVAILABLE', `${kind} returned the text unencrypted; refusing to use it.`);
      }
      let back: string;
      try {
        back = await open(sealed);
      } catch (error) {
        // Our own fresh value refused as damaged: the facility is broken here, whatever it says.
        if (error instanceof KeychainCacheError && error.code === 'DECRYPT_FAILED') {
          throw new KeychainCacheError('BACKEND_UNAVAILABLE', `${kind} could not decrypt a test value it had just encrypted; refusing to use it.`,
            { cause: error });
        }
        throw error;
      }
      if (back !== probe) {
        throw new KeychainCacheError('BACKEND_UNAVAILABLE', `${kind} decrypted a test value to something else; refusing to use it.`);
      }
      await verifyDirectory(cachePath, platform);
    },
  };
}

async function seal(cipher: Cipher, kind: BackendKind, contents: string): Promise<Uint8Array> {
  try {
    return await cipher.seal(contents);
  } catch (error) {
    const meaning = await cipher.explainFailure(error, 'seal').catch(() => 'data' as const);
    if (meaning !== 'data') throw meaning;
    throw new KeychainCacheError('STORE_FAILED', `${kind} could not encrypt the token cache (see cause). Nothing was written.`,
      { cause: error });
  }
}
