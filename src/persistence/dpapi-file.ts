// Windows DPAPI (CryptProtectData) through @primno/dpapi: an N-API addon with prebuilt win32-x64 and
// win32-arm64 binaries, an install script that does nothing (no compiler needed on the user's machine),
// importing only KERNEL32 and CRYPT32. It is loaded here only, only on Windows, only for this backend.
import { KeychainCacheError, systemErrorCode } from '../errors.js';
import { createEncryptedFilePersistence } from './encrypted-file.js';
import type { DataProtectionScope, Persistence } from './types.js';

export interface DpapiBinding {
  protectData(data: Uint8Array, entropy: Uint8Array | null, scope: DataProtectionScope): Uint8Array;
  unprotectData(data: Uint8Array, entropy: Uint8Array | null, scope: DataProtectionScope): Uint8Array;
}

export interface DpapiPersistenceOptions {
  cachePath: string;
  platform: NodeJS.Platform;
  scope: DataProtectionScope;
  entropy?: Uint8Array;
}

/**
 * `cachePath` holds the raw CryptProtectData output of the UTF-8 cache JSON, no header: the format of
 * msal-node-extensions, MSAL Python, MSAL.NET and MSAL Go, so their caches open here and ours there.
 */
export async function createDpapiPersistence(options: DpapiPersistenceOptions): Promise<Persistence> {
  const { cachePath, platform, scope, entropy } = options;
  if (platform !== 'win32') {
    throw new KeychainCacheError('BACKEND_UNAVAILABLE',
      `The dpapi-file backend uses Windows DPAPI, which does not exist on ${platform}. Leave backend unset to get this platform's store.`);
  }
  const dpapi = await loadDpapi();
  return createEncryptedFilePersistence({
    kind: 'dpapi-file',
    cachePath,
    platform,
    encrypted: true,
    cipher: {
      seal: async (text) => dpapi.protectData(Buffer.from(text, 'utf8'), entropy ?? null, scope),
      open: async (sealed) => Buffer.from(dpapi.unprotectData(sealed, entropy ?? null, scope)).toString('utf8'),
      explainFailure: async (error, during) => explainDpapiFailure(error, during, cachePath),
    },
    decryptHelp: 'DPAPI says the data is invalid: it was written with a different dataProtectionEntropy, or the ' +
      'bytes are damaged or not a DPAPI blob. It is moved aside and users sign in again.',
  });
}

/**
 * What each Win32 error of CryptProtectData / CryptUnprotectData means for the cache. @primno/dpapi throws
 * `Error("Encryption/Decryption failed. Error code: <GetLastError() in decimal>")`; HRESULTs come unsigned.
 * - data (DECRYPT_FAILED, moved aside): the blob itself is refused. ERROR_INVALID_DATA is what DPAPI (and
 *   Wine) answer for a wrong entropy, a failed integrity check, a truncated or foreign blob; NTE_BAD_DATA,
 *   NTE_BAD_LEN and NTE_BAD_SIGNATURE are the CSP's words for the same; ERROR_INVALID_PARAMETER can only
 *   come from the blob, since our binding's other arguments are fixed.
 * - key out of reach (KEYRING_LOCKED, nothing moved): NTE_BAD_KEY_STATE, NTE_NO_KEY, NTE_BAD_KEYSET and a
 *   master-key file not found (ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND) or no logon session mean the
 *   user's master key cannot be decrypted now: the profile was loaded without the password (a service, a
 *   task "run whether the user is logged on or not", runas /netonly) or is not loaded yet. The same codes
 *   also follow an administrator's password reset or a blob of another user, which no retry fixes; we cannot
 *   tell those apart, so we keep the bytes and the message says when deleting the file is the fix.
 * - refused (ACCESS_DENIED): ERROR_ACCESS_DENIED, NTE_PERM.
 * - service unreachable (BACKEND_UNAVAILABLE): the LSA or the domain controller holding the backup key did
 *   not answer (RPC_S_SERVER_UNAVAILABLE, ERROR_NO_LOGON_SERVERS, ERROR_CANT_ACCESS_DOMAIN_INFO).
 * - anything else (STORE_FAILED, nothing moved): not known to mean damaged data, so not treated as such.
 */
const dpapiDataErrors = new Map<number, string>([
  [13, 'ERROR_INVALID_DATA'], [87, 'ERROR_INVALID_PARAMETER'],
  [0x80090004, 'NTE_BAD_LEN'], [0x80090005, 'NTE_BAD_DATA'], [0x80090006, 'NTE_BAD_SIGNATURE'],
]);
const dpapiKeyErrors = new Map<number, string>([
  [2, 'ERROR_FILE_NOT_FOUND'], [3, 'ERROR_PATH_NOT_FOUND'], [1312, 'ERROR_NO_SUCH_LOGON_SESSION'],
  [0x8009000b, 'NTE_BAD_KEY_STATE'], [0x8009000d, 'NTE_NO_KEY'], [0x80090016, 'NTE_BAD_KEYSET'],
]);
const dpapiAccessErrors = new Map<number, string>([[5, 'ERROR_ACCESS_DENIED'], [0x80090010, 'NTE_PERM']]);
const dpapiServiceErrors = new Map<number, string>([
  [1722, 'RPC_S_SERVER_UNAVAILABLE'], [1311, 'ERROR_NO_LOGON_SERVERS'], [1351, 'ERROR_CANT_ACCESS_DOMAIN_INFO'],
]);

/** The Win32 error code in what @primno/dpapi threw, or undefined when it carries none. */
export function dpapiErrorCode(error: unknown): number | undefined {
  const match = /Error code: (-?\d+)/.exec(error instanceof Error ? error.message : String(error));
  // GetLastError() is a DWORD; read a negative rendering as the same 32 bits.
  return match ? Number(match[1]) >>> 0 : undefined;
}

export function explainDpapiFailure(error: unknown, during: 'open' | 'seal', cachePath: string): 'data' | KeychainCacheError {
  const code = dpapiErrorCode(error);
  const name = code === undefined ? undefined
    : dpapiDataErrors.get(code) ?? dpapiKeyErrors.get(code) ?? dpapiAccessErrors.get(code) ?? dpapiServiceErrors.get(code);
  const said = code === undefined ? 'an error without a Win32 code' : `Win32 error ${code}${name ? ` (${name})` : ''}`;
  const what = during === 'open' ? `decrypt the token cache ${cachePath}` : `encrypt the token cache for ${cachePath}`;
  const kept = during === 'open' ? 'The file was left as it is.' : 'Nothing was written.';
  if (code !== undefined && dpapiDataErrors.has(code)) {
    return during === 'open' ? 'data'
      : new KeychainCacheError('STORE_FAILED', `Windows DPAPI could not ${what}: ${said}. ${kept}`, { cause: error });
  }
  if (code !== undefined && dpapiKeyErrors.has(code)) {
    return new KeychainCacheError('KEYRING_LOCKED', `Windows DPAPI could not ${what}: ${said}. This Windows user's ` +
      'DPAPI master key cannot be used right now: the profile is not loaded, or it was loaded without the password ' +
      '(a service, a scheduled task set to run whether or not the user is logged on, runas /netonly). Run the app ' +
      `in the user's own interactive logon and try again. ${kept} If the password was reset by an administrator or the ` +
      'file was copied from another user or machine, it can never be decrypted here: delete it and sign in again.',
    { cause: error });
  }
  if (code !== undefined && dpapiAccessErrors.has(code)) {
    return new KeychainCacheError('ACCESS_DENIED', `Windows DPAPI could not ${what}: ${said}. Windows refused access ` +
      `to this user's protected-data keys (%APPDATA%\\Microsoft\\Protect). Check that the app runs as the user who owns the ` +
      `profile. ${kept}`, { cause: error });
  }
  if (code !== undefined && dpapiServiceErrors.has(code)) {
    return new KeychainCacheError('BACKEND_UNAVAILABLE', `Windows DPAPI could not ${what}: ${said}. The local ` +
      'security authority or the domain controller that holds the backup key did not answer. Try again once the ' +
      `machine is on the domain's network. ${kept}`, { cause: error });
  }
  return new KeychainCacheError('STORE_FAILED', `Windows DPAPI could not ${what}: ${said}, which is not known to ` +
    `mean damaged data, so nothing was treated as such. ${kept} If it persists, delete the file and sign in again.`,
  { cause: error });
}

let loading: Promise<DpapiBinding> | undefined;

export function loadDpapi(): Promise<DpapiBinding> {
  loading ??= import('@primno/dpapi').then(
    (module) => {
      const exports = module as unknown as { isPlatformSupported?: boolean; Dpapi?: DpapiBinding & { error?: unknown } };
      // The package swallows a failed native load and hands out an object that throws on use: check first.
      if (!exports.isPlatformSupported || !exports.Dpapi) {
        throw explainDpapiLoadFailure(exports.Dpapi?.error ?? new Error('no prebuilt binary for this platform'));
      }
      return exports.Dpapi;
    },
    (error: unknown) => { throw explainDpapiLoadFailure(error); },
  ).catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

function explainDpapiLoadFailure(error: unknown): KeychainCacheError {
  const code = systemErrorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && /@primno\/dpapi/.test(message)) {
    return new KeychainCacheError('BACKEND_UNAVAILABLE', '@primno/dpapi is not installed (an optional dependency of ' +
      'msal-keychain-cache that carries the prebuilt Windows DPAPI binding). Install it: `npm install @primno/dpapi`. ' +
      'If you bundle your app, keep it external and ship its prebuilds folder.', { cause: error });
  }
  return new KeychainCacheError('BACKEND_UNAVAILABLE', `The Windows DPAPI binding (@primno/dpapi) could not be loaded ` +
    `for ${process.arch}: it ships prebuilt binaries for x64 and arm64 Windows only. On 32-bit Node use a 64-bit ` +
    'Node.js, or pass allowPlaintextFallback: true to accept an unencrypted cache file.', { cause: error });
}
