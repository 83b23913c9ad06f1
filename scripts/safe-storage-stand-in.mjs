// A stand-in for Electron's `safeStorage` (main process), for tests and examples on machines where
// Electron cannot be installed. It follows the documented API (electron.d.ts of Electron 45) and what
// Chromium's OSCrypt does underneath, with real AES:
// - Linux: before the app's `ready`, isEncryptionAvailable() is false, getSelectedStorageBackend() is
//   'unknown' and encrypting throws. After it, a keyring backend ('gnome_libsecret', 'kwallet'...) gives
//   "v11" + AES-128-CBC with a key from the keyring's password; 'basic_text' gives "v10" + the same cipher
//   with Chromium's hard-coded password "peanuts" (available, and protecting nothing). A 'basic_text'
//   session has no keyring key, so it refuses "v11" data as OSCrypt does.
// - win32: "v10" + AES-256-GCM (12-byte nonce, 16-byte tag): a flipped byte is refused.
// - darwin: "v10" + AES-128-CBC with the Keychain-held password, 1003 PBKDF2 rounds.
// `api` chooses which methods exist: 'sync' (Electron < 39), 'async' (Electron 46 dropped the sync ones),
// or 'both' (Electron 39-45).
// Errors are Electron's own texts (shell/browser/api/electron_api_safe_storage.cc): empty input decrypts to
// '', input without a v10/v11 prefix is "Ciphertext does not appear to be encrypted.", refused bytes are
// "Error while decrypting the ciphertext provided to safeStorage.decryptString[Async].".
// loseKey() simulates the OS store that holds the key becoming unreachable after start (the keyring daemon
// gone or locked, DPAPI's profile key not loaded): the sync API then reports encryption unavailable and
// throws "... is not available."; the async API (which keeps its encryptor once it has one) rejects
// decryption as "temporarily unavailable" and encryption as a plain failure. restoreKey() undoes it.
import { createCipheriv, createDecipheriv, pbkdf2Sync, randomBytes } from 'node:crypto';

const cbcIv = Buffer.alloc(16, ' ');

/**
 * @param {{ platform?: 'linux' | 'win32' | 'darwin', backend?: string, api?: 'sync' | 'async' | 'both',
 *   ready?: boolean, keyringPassword?: string }} [options]
 */
export function createSafeStorageStandIn(options = {}) {
  const platform = options.platform ?? 'linux';
  const backend = options.backend ?? 'gnome_libsecret';
  const api = options.api ?? 'both';
  // The secret the OS store holds for the app: the same value stands for the same user's keyring.
  const keyringPassword = options.keyringPassword ?? 'stand-in keyring password';
  let ready = options.ready ?? true;
  let plainTextForced = false;
  let keyReachable = true;

  const cbcKey = (password, rounds) => pbkdf2Sync(password, 'saltysalt', rounds, 16, 'sha1');
  const gcmKey = pbkdf2Sync(keyringPassword, 'dpapi-protected key', 1, 32, 'sha256');
  const linuxBasic = () => backend === 'basic_text' || plainTextForced;

  const available = () => {
    if (!ready || !keyReachable) return false;
    if (platform === 'linux') return backend !== 'unknown';
    return true;
  };
  const beforeReady = () => new Error('safeStorage cannot be used before app is ready');
  const decryptFailed = (method) => new Error(`Error while decrypting the ciphertext provided to safeStorage.${method}.`);

  const encrypt = (plainText, method = 'encryptString') => {
    if (typeof plainText !== 'string') throw new TypeError('plainText must be a string');
    if (!ready) throw beforeReady();
    if (!available()) {
      throw new Error(method === 'encryptString'
        ? 'Error while encrypting the text provided to safeStorage.encryptString. Encryption is not available.'
        : `Error while encrypting the text provided to safeStorage.${method}.`);
    }
    const data = Buffer.from(plainText, 'utf8');
    if (platform === 'win32') {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', gcmKey, nonce);
      const body = Buffer.concat([cipher.update(data), cipher.final()]);
      return Buffer.concat([Buffer.from('v10'), nonce, body, cipher.getAuthTag()]);
    }
    const [prefix, key] = platform === 'darwin' ? ['v10', cbcKey(keyringPassword, 1003)]
      : linuxBasic() ? ['v10', cbcKey('peanuts', 1)] : ['v11', cbcKey(keyringPassword, 1)];
    const cipher = createCipheriv('aes-128-cbc', key, cbcIv);
    return Buffer.concat([Buffer.from(prefix), cipher.update(data), cipher.final()]);
  };

  const decrypt = (encrypted, method = 'decryptString') => {
    if (!ready) throw beforeReady();
    if (!Buffer.isBuffer(encrypted)) throw new TypeError(`Expected the first argument of ${method}() to be a buffer`);
    if (!available()) {
      throw new Error(method === 'decryptString'
        ? 'Error while decrypting the ciphertext provided to safeStorage.decryptString. Decryption is not available.'
        : `safeStorage.${method} is temporarily unavailable. Please try again.`);
    }
    if (encrypted.length === 0) return '';
    const prefix = encrypted.subarray(0, 3).toString('latin1');
    if (prefix !== 'v10' && prefix !== 'v11') {
      throw new Error(`Error while decrypting the ciphertext provided to safeStorage.${method}. Ciphertext does not appear to be encrypted.`);
    }
    try {
      if (platform === 'win32') {
        if (prefix !== 'v10' || encrypted.length < 3 + 12 + 16) throw new Error('bad header');
        const decipher = createDecipheriv('aes-256-gcm', gcmKey, encrypted.subarray(3, 15));
        decipher.setAuthTag(encrypted.subarray(encrypted.length - 16));
        return Buffer.concat([decipher.update(encrypted.subarray(15, encrypted.length - 16)), decipher.final()]).toString('utf8');
      }
      let key;
      if (platform === 'darwin') {
        if (prefix !== 'v10') throw new Error('unknown version');
        key = cbcKey(keyringPassword, 1003);
      } else if (prefix === 'v10') {
        key = cbcKey('peanuts', 1);
      } else if (backend === 'basic_text') {
        throw new Error('no keyring key in a basic_text session');
      } else {
        key = cbcKey(keyringPassword, 1);
      }
      const decipher = createDecipheriv('aes-128-cbc', key, cbcIv);
      return Buffer.concat([decipher.update(encrypted.subarray(3)), decipher.final()]).toString('utf8');
    } catch {
      throw decryptFailed(method);
    }
  };

  const safeStorage = {};
  if (api !== 'async') {
    Object.assign(safeStorage, {
      isEncryptionAvailable: () => available(),
      encryptString: encrypt,
      decryptString: decrypt,
    });
  }
  if (api !== 'sync') {
    Object.assign(safeStorage, {
      // Electron keeps the async encryptor once it has one: a key lost later does not make this false.
      isAsyncEncryptionAvailable: async () => ready && (platform !== 'linux' || backend !== 'unknown'),
      encryptStringAsync: async (plainText) => encrypt(plainText, 'encryptStringAsync'),
      decryptStringAsync: async (encrypted) => {
        const result = decrypt(encrypted, 'decryptStringAsync');
        // Data under the hard-coded key should be re-encrypted once a keyring key is available.
        const shouldReEncrypt = platform === 'linux' && !linuxBasic() && encrypted.subarray(0, 3).toString('latin1') === 'v10';
        return { shouldReEncrypt, result };
      },
    });
  }
  if (platform === 'linux') {
    safeStorage.getSelectedStorageBackend = () => (ready ? (plainTextForced ? 'basic_text' : backend) : 'unknown');
    safeStorage.setUsePlainTextEncryption = (usePlainText) => { plainTextForced = Boolean(usePlainText); };
  } else {
    safeStorage.setUsePlainTextEncryption = () => undefined;
  }

  return {
    safeStorage,
    /** What Electron does when the app emits `ready`. */
    emitReady() { ready = true; },
    /** The OS store holding the key becomes unreachable (see the header); the bytes already written are untouched. */
    loseKey() { keyReachable = false; },
    restoreKey() { keyReachable = true; },
  };
}
