import { KeychainCacheError } from '../errors.js';
import { createKeytarPersistence } from './keytar-store.js';
import type { Persistence } from './types.js';

export interface LibsecretPersistenceOptions {
  cachePath: string;
  serviceName: string;
  accountName: string;
  platform: NodeJS.Platform;
  env: NodeJS.ProcessEnv;
}

/**
 * The cache JSON in a Secret Service item (keytar's schema `org.freedesktop.Secret.Generic`, attributes
 * `service` and `account`: exactly what msal-node-extensions' LibSecretPersistence writes), plus a
 * marker file at `cachePath`.
 */
export function createLibsecretPersistence(options: LibsecretPersistenceOptions): Promise<Persistence> {
  const { env, ...rest } = options;
  return createKeytarPersistence({
    ...rest,
    kind: 'libsecret',
    describeItem: (service, account) => `Secret Service item (service "${service}", account "${account}")`,
    explainError: (error, what) => explainSecretServiceError(error, what, env),
    probeWhenEmpty: true,
  });
}

/** Maps libsecret's messages (as keytar passes them on) to a code, the cause and the fix. */
export function explainSecretServiceError(error: unknown, what: string, env: NodeJS.ProcessEnv): KeychainCacheError {
  if (error instanceof KeychainCacheError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const failed = `Could not ${what}`;
  const plaintextHint = ' Or, to accept an unencrypted cache file, pass allowPlaintextFallback: true.';
  if (/autolaunch|DBUS_SESSION_BUS_ADDRESS|Could not connect|Failed to connect to socket|No such file or directory/i.test(message)) {
    const bus = env.DBUS_SESSION_BUS_ADDRESS;
    return new KeychainCacheError('BACKEND_UNAVAILABLE',
      `${failed}: no D-Bus session bus is reachable (${bus ? `DBUS_SESSION_BUS_ADDRESS=${bus} does not answer` :
        'DBUS_SESSION_BUS_ADDRESS is not set'}). This is usual over SSH, in containers and in CI. Run inside a desktop ` +
      "session, or start a bus and keyring for the command: dbus-run-session -- sh -c 'echo -n \"$KEYRING_PASSWORD\" | " +
      "gnome-keyring-daemon --unlock --components=secrets; exec <your command>'." + plaintextHint, { cause: error });
  }
  if (/org\.freedesktop\.secrets|ServiceUnknown|was not provided by any|Object does not exist|No such object|UnknownMethod/i.test(message)) {
    return new KeychainCacheError('BACKEND_UNAVAILABLE',
      `${failed}: a D-Bus session bus is running but no Secret Service (with a default keyring) answers on it. ` +
      'Install and start one: `sudo apt install gnome-keyring` then ' +
      "`echo -n \"$KEYRING_PASSWORD\" | gnome-keyring-daemon --unlock --components=secrets` (or enable KeePassXC's " +
      'Secret Service integration).' + plaintextHint, { cause: error });
  }
  if (/locked|prompt|dismiss|cancel/i.test(message)) {
    return new KeychainCacheError('KEYRING_LOCKED',
      `${failed}: the keyring is locked and no password prompt could be shown. Unlock it (log into the desktop ` +
      "session, or `echo -n \"$KEYRING_PASSWORD\" | gnome-keyring-daemon --replace --unlock --components=secrets`), " +
      'then try again. Nothing was deleted.', { cause: error });
  }
  if (/denied|not allowed|NotAuthorized/i.test(message)) {
    return new KeychainCacheError('ACCESS_DENIED', `${failed}: the Secret Service refused access. Allow this ` +
      'application in your keyring manager, then try again. Nothing was deleted.', { cause: error });
  }
  return new KeychainCacheError('STORE_FAILED', `${failed}: the Secret Service reported an error (see cause).`, { cause: error });
}
