import { dirname } from 'node:path';
import { KeychainCacheError } from '../errors.js';
import { assertSafePath, ensureDirectory, fileStamp, randomHex, readBytesIfExists, writeFileAtomic } from '../files.js';
import { deleteFile, quarantineFile, verifyDirectory } from './plaintext-file.js';
import type { BackendKind, Persistence } from './types.js';

export interface Cipher {
  seal(plaintext: string): Promise<Uint8Array>;
  /** Throws when the bytes are refused (wrong key or entropy, another user, tampered, truncated). */
  open(sealed: Uint8Array): Promise<string>;
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
 * every MSAL extension writes for DPAPI), replaced atomically. Bytes that do not decrypt throw
 * DECRYPT_FAILED, which the plugin handles like any unreadable cache: moved aside, users sign in again.
 */
export async function createEncryptedFilePersistence(options: EncryptedFileOptions): Promise<Persistence> {
  const { kind, cachePath, platform, encrypted, cipher, decryptHelp } = options;
  await ensureDirectory(dirname(cachePath));
  await assertSafePath(cachePath);

  const open = async (sealed: Uint8Array): Promise<string> => {
    try {
      return await cipher.open(sealed);
    } catch (error) {
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
    save: async (contents) => {
      await writeFileAtomic(cachePath, await seal(cipher, kind, contents), { platform });
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
      if ((await open(sealed)) !== probe) {
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
    throw new KeychainCacheError('STORE_FAILED', `${kind} could not encrypt the token cache (see cause). Nothing was written.`,
      { cause: error });
  }
}
