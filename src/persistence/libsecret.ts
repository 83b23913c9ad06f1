import { KeychainCacheError } from '../errors.js';
import { DBusError, DBusUnreachableError } from './dbus.js';
import { createItemStorePersistence, type SecretItems } from './item-store.js';
import { SecretServiceClient, SecretServiceError } from './secret-service.js';
import type { Persistence } from './types.js';

export interface LibsecretPersistenceOptions {
  cachePath: string;
  serviceName: string;
  accountName: string;
  platform: NodeJS.Platform;
  env: NodeJS.ProcessEnv;
  /** How long a Secret Service prompt (unlock the keyring, confirm) may wait for the user. */
  promptTimeoutMs: number;
}

/** libsecret's generic schema, the one keytar (and so msal-node-extensions) stores with. */
const genericSchema = 'org.freedesktop.Secret.Generic';

/**
 * The attributes, label and content type keytar's Linux build gives an item (through libsecret's
 * `secret_password_store_sync` with the schema above): `service`, `account` and `xdg:schema`, label
 * "service/account", content type text/plain. Written and found exactly so, our cache and
 * msal-node-extensions' stay one cache, and an item keytar wrote is found.
 */
export function keytarItem(service: string, account: string) {
  return {
    label: `${service}/${account}`,
    attributes: { service, account, 'xdg:schema': genericSchema },
    contentType: 'text/plain',
  };
}

/** The Secret Service through our own D-Bus client: no native module, nothing loaded until this backend is chosen. */
export function secretServiceItems(client: SecretServiceClient): SecretItems {
  return {
    get: async (service, account, where) => {
      const found = await client.lookup(keytarItem(service, account).attributes, where);
      // libsecret hands keytar a NUL-terminated string: the text up to any NUL, as UTF-8.
      if (!found) return null;
      const nul = found.value.indexOf(0);
      return found.value.toString('utf8', 0, nul < 0 ? found.value.length : nul);
    },
    set: async (service, account, secret) => {
      const { label, attributes, contentType } = keytarItem(service, account);
      return client.store(label, attributes, Buffer.from(secret, 'utf8'), contentType);
    },
    delete: (service, account) => client.delete(keytarItem(service, account).attributes),
  };
}

/**
 * The cache JSON in a Secret Service item (keytar's schema `org.freedesktop.Secret.Generic`, attributes
 * `service` and `account`: exactly what msal-node-extensions' LibSecretPersistence writes), plus a
 * marker file at `cachePath`.
 */
export function createLibsecretPersistence(options: LibsecretPersistenceOptions): Promise<Persistence> {
  const { env, promptTimeoutMs, ...rest } = options;
  const client = new SecretServiceClient({ env, promptTimeoutMs });
  return createItemStorePersistence({
    ...rest,
    kind: 'libsecret',
    describeItem: (service, account) => `Secret Service item (service "${service}", account "${account}")`,
    explainError: (error, what) => explainSecretServiceError(error, what, env),
    openItems: async () => secretServiceItems(client),
    describeStore: () => client.describe(),
  });
}

const plaintextHint = ' Or, to accept an unencrypted cache file, pass allowPlaintextFallback: true.';
const startKeyring = "`echo -n \"$KEYRING_PASSWORD\" | gnome-keyring-daemon --unlock --components=secrets >/dev/null`";

/** Maps what the D-Bus and Secret Service layers threw to a code, the cause and the fix. */
export function explainSecretServiceError(error: unknown, what: string, env: NodeJS.ProcessEnv): KeychainCacheError {
  if (error instanceof KeychainCacheError) return error;
  const failed = `Could not ${what}`;
  if (error instanceof DBusUnreachableError) {
    const bus = env.DBUS_SESSION_BUS_ADDRESS;
    return new KeychainCacheError('BACKEND_UNAVAILABLE',
      `${failed}: no D-Bus session bus is reachable (${bus ? `DBUS_SESSION_BUS_ADDRESS=${bus} does not answer` :
        'DBUS_SESSION_BUS_ADDRESS is not set'}). This is usual over SSH, in containers and in CI. Run inside a desktop ` +
      "session, or start a bus and keyring for the command: dbus-run-session -- sh -c 'echo -n \"$KEYRING_PASSWORD\" | " +
      "gnome-keyring-daemon --unlock --components=secrets >/dev/null; exec <your command>' (the daemon prints to stdout)." + plaintextHint, { cause: error });
  }
  if (error instanceof SecretServiceError) {
    switch (error.reason) {
      case 'no-collection':
        return new KeychainCacheError('BACKEND_UNAVAILABLE',
          `${failed}: the Secret Service has no default keyring (its "default" alias names no collection). Create one ` +
          'and make it the default (Seahorse: File > New > Password Keyring, then "Set as default"; KeePassXC: Settings > ' +
          'Secret Service Integration, expose a group of an open database).' + plaintextHint, { cause: error });
      case 'locked':
        return new KeychainCacheError('KEYRING_LOCKED',
          `${failed}: the keyring is locked and was not unlocked (${error.message}). Unlock it (log into the desktop ` +
          `session, or \`echo -n "$KEYRING_PASSWORD" | gnome-keyring-daemon --replace --unlock --components=secrets\`; ` +
          'KeePassXC: unlock the database), then try again. Nothing was deleted.', { cause: error });
      case 'dismissed':
      case 'prompt-timeout':
        return new KeychainCacheError('ACCESS_DENIED',
          `${failed}: the Secret Service asked for confirmation and got none (${error.message}). Allow this ` +
          "application in your keyring manager (KeePassXC: turn off the access confirmations in its Secret Service " +
          'settings), then try again. Nothing was deleted.', { cause: error });
    }
  }
  if (error instanceof DBusError) {
    const name = error.dbusName;
    if (/ServiceUnknown|NameHasNoOwner/.test(name)) {
      return new KeychainCacheError('BACKEND_UNAVAILABLE',
        `${failed}: a D-Bus session bus is running but no Secret Service (with a default keyring) answers on it. ` +
        `Install and start one: \`sudo apt install gnome-keyring\` then ${startKeyring} (or enable KeePassXC's ` +
        'Secret Service integration).' + plaintextHint, { cause: error });
    }
    if (name === 'org.freedesktop.Secret.Error.IsLocked') {
      return new KeychainCacheError('KEYRING_LOCKED', `${failed}: the keyring is locked. Unlock it (log into the ` +
        'desktop session, or restart gnome-keyring-daemon with --unlock), then try again. Nothing was deleted.', { cause: error });
    }
    if (/AccessDenied|NotAuthorized|AuthFailed/.test(name)) {
      return new KeychainCacheError('ACCESS_DENIED', `${failed}: the Secret Service refused access (${name}). Allow this ` +
        'application in your keyring manager, then try again. Nothing was deleted.', { cause: error });
    }
    if (/NoReply|Timeout|Disconnected/.test(name)) {
      return new KeychainCacheError('STORE_FAILED', `${failed}: the Secret Service did not answer (${name}). It may ` +
        'be stuck or have exited: restart it (for gnome-keyring, log out and in, or run gnome-keyring-daemon --replace), ' +
        'then try again. Nothing was deleted.', { cause: error });
    }
    return new KeychainCacheError('STORE_FAILED', `${failed}: the Secret Service answered ${name} (see cause).`, { cause: error });
  }
  return new KeychainCacheError('STORE_FAILED', `${failed}: the Secret Service client failed (see cause).`, { cause: error });
}
