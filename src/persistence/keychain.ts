import { KeychainCacheError } from '../errors.js';
import { createItemStorePersistence } from './item-store.js';
import { loadKeytar } from './keytar-binding.js';
import type { Persistence } from './types.js';

export interface KeychainPersistenceOptions {
  cachePath: string;
  serviceName: string;
  accountName: string;
  platform: NodeJS.Platform;
}

/**
 * The cache JSON in a macOS Keychain generic-password item (service, account): the layout
 * msal-node-extensions, Azure Identity, MSAL Python and MSAL.NET use, so they share one sign-in.
 * A marker file at `cachePath` tells other processes to reload. Written against keytar's documented
 * macOS behaviour; unverified on real hardware (no Mac here), see the README.
 */
export function createKeychainPersistence(options: KeychainPersistenceOptions): Promise<Persistence> {
  return createItemStorePersistence({
    ...options,
    kind: 'keychain',
    describeItem: (service, account) => `macOS Keychain item (service "${service}", account "${account}")`,
    explainError: explainKeychainError,
    // The macOS Keychain reports a locked keychain as an error, never as "not found".
    openItems: async () => {
      const keytar = await loadKeytar();
      return {
        get: (service, account) => keytar.getPassword(service, account),
        set: (service, account, secret) => keytar.setPassword(service, account, secret),
        delete: (service, account) => keytar.deletePassword(service, account),
      };
    },
  });
}

const keychainAccessHelp = 'open Keychain Access, find the item, and on its Access Control tab allow this app ' +
  '(or delete the item: users then sign in once more)';

/**
 * Maps the macOS Security framework messages keytar passes on (SecCopyErrorMessageString of the OSStatus)
 * to a code, the cause and the fix. keytar gives only the text, so the texts are matched.
 */
export function explainKeychainError(error: unknown, what: string): KeychainCacheError {
  if (error instanceof KeychainCacheError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const failed = `Could not ${what}`;
  // errSecInteractionNotAllowed (-25308): the keychain is locked and no dialog can be shown (SSH, launchd, CI).
  if (/interaction is not allowed|interaction is required/i.test(message)) {
    return new KeychainCacheError('KEYRING_LOCKED',
      `${failed}: the keychain is locked and macOS cannot show its unlock dialog here (an SSH session, a ` +
      'launch agent or CI). Unlock it first: `security unlock-keychain ~/Library/Keychains/login.keychain-db`, ' +
      'or run the app in the logged-in desktop session. Nothing was deleted.', { cause: error });
  }
  // errSecUserCanceled (-128) / errSecAuthFailed (-25293): the user pressed Deny or Cancel on the access
  // prompt. macOS asks again whenever the item was created by a differently signed build of the app
  // (an auto-update that changed the signature, an unsigned development build, a re-signed Electron app).
  if (/canceled|cancelled|passphrase you entered is not correct|authorization|not authorized|denied/i.test(message)) {
    return new KeychainCacheError('ACCESS_DENIED',
      `${failed}: access to the keychain item was denied (the prompt was cancelled or answered Deny). macOS ` +
      'asks again when the item was created by a differently signed build of this app, e.g. after an update or ' +
      `with an unsigned development build. Choose "Always Allow" at the prompt, or ${keychainAccessHelp}. ` +
      'Nothing was deleted.', { cause: error });
  }
  // errSecWrPerm (-61) / errSecReadOnly (-25292): the keychain file cannot be written.
  if (/write permissions|cannot be modified|read-only/i.test(message)) {
    return new KeychainCacheError('ACCESS_DENIED',
      `${failed}: the keychain cannot be written (read-only or wrong permissions on ~/Library/Keychains). ` +
      'Repair it in Keychain Access (File > Keychain First Aid on older macOS) or fix the folder permissions.', { cause: error });
  }
  // errSecNoDefaultKeychain (-25307) / errSecNoSuchKeychain (-25294) / errSecNotAvailable (-25291).
  if (/default keychain could not be found|keychain could not be found|no keychain is available/i.test(message)) {
    return new KeychainCacheError('BACKEND_UNAVAILABLE',
      `${failed}: this user has no usable default keychain. Create or reset the login keychain in Keychain Access ` +
      '(Preferences > Reset My Default Keychain), or set one with `security default-keychain -s login.keychain-db`.' +
      ' Or, to accept an unencrypted cache file, pass allowPlaintextFallback: true.', { cause: error });
  }
  // errSecMissingEntitlement (-34018): a sandboxed or hardened app without the keychain entitlement.
  if (/entitlement/i.test(message)) {
    return new KeychainCacheError('BACKEND_UNAVAILABLE',
      `${failed}: the app lacks the keychain entitlement macOS requires for it (a sandboxed or hardened-runtime ` +
      'build). Sign it with a keychain-access-groups entitlement, or use the safe-storage backend in Electron.', { cause: error });
  }
  return new KeychainCacheError('STORE_FAILED', `${failed}: the macOS Keychain reported an error (see cause).`, { cause: error });
}
