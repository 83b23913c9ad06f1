import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { KeychainCacheError } from '../errors.js';
import { assertSafePath, corruptName, ensureDirectory, fileStamp, readFileIfExists, writeFileAtomic } from '../files.js';
import { deleteFile } from './plaintext-file.js';
import { type KeytarApi, loadKeytar } from './keytar-binding.js';
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
 * marker file at `cachePath` whose replacement tells other processes to reload.
 */
export async function createLibsecretPersistence(options: LibsecretPersistenceOptions): Promise<Persistence> {
  const { cachePath, serviceName, accountName, platform, env } = options;
  const keytar = await loadKeytar();
  await ensureDirectory(dirname(cachePath));
  await assertSafePath(cachePath);
  const location = secretServiceItem(serviceName, accountName);
  const call = <T>(action: string, run: () => Promise<T>) => callSecretService(action, location, env, run);

  const touchMarker = () =>
    // Our own version string in the marker; msal-node-extensions only looks at its mtime.
    writeFileAtomic(cachePath, `{"version":"${randomBytes(16).toString('hex')}"}`, { platform });

  const load = async (): Promise<string | null> => {
    const contents = await call('read the', () => keytar.getPassword(serviceName, accountName));
    if (contents === null && (await readFileIfExists(cachePath)) !== null) {
      // libsecret answers "not found" for items in a locked collection. A marker says a cache was
      // written here, so make sure an empty answer is not a locked keyring before calling it empty.
      await probeWritable(keytar, serviceName, call);
    }
    return contents;
  };

  return {
    kind: 'libsecret',
    encrypted: true,
    cachePath,
    location,
    load,
    save: async (contents) => {
      await call('write the', () => keytar.setPassword(serviceName, accountName, contents));
      await touchMarker();
    },
    delete: async () => {
      const deleted = await call('delete the', () => keytar.deletePassword(serviceName, accountName));
      await deleteFile(cachePath);
      return deleted;
    },
    changeToken: () => fileStamp(cachePath),
    quarantine: async () => {
      const bytes = await call('read the', () => keytar.getPassword(serviceName, accountName));
      const asideAccount = corruptName(accountName);
      // keytar cannot store an empty secret, and there is nothing to keep of one.
      const keep = bytes !== null && bytes !== '';
      if (keep) await call('write the', () => keytar.setPassword(serviceName, asideAccount, bytes));
      if (bytes !== null) await call('delete the', () => keytar.deletePassword(serviceName, accountName));
      await touchMarker();
      return keep ? secretServiceItem(serviceName, asideAccount) : 'nowhere (the item was empty, so it was deleted)';
    },
    verify: async () => {
      await probeWritable(keytar, serviceName, call);
    },
  };
}

function secretServiceItem(service: string, account: string): string {
  return `Secret Service item (service "${service}", account "${account}")`;
}

async function probeWritable(
  keytar: KeytarApi,
  serviceName: string,
  call: <T>(action: string, run: () => Promise<T>) => Promise<T>,
): Promise<void> {
  const account = `msal-keychain-cache-verify-${process.pid}-${randomBytes(4).toString('hex')}`;
  const payload = randomBytes(16).toString('hex');
  try {
    await call('write a test item to the', () => keytar.setPassword(serviceName, account, payload));
    const back = await call('read a test item from the', () => keytar.getPassword(serviceName, account));
    if (back !== payload) {
      throw new KeychainCacheError('BACKEND_UNAVAILABLE',
        'A test item written to the Secret Service could not be read back. The keyring may be locked or ' +
        'misbehaving: unlock it (log into the desktop session) or restart gnome-keyring-daemon.');
    }
  } finally {
    await keytar.deletePassword(serviceName, account).catch(() => undefined);
  }
}

async function callSecretService<T>(action: string, location: string, env: NodeJS.ProcessEnv, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw explainSecretServiceError(error, `${action} ${location}`, env);
  }
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
