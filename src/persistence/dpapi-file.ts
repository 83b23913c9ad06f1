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
    },
    decryptHelp: 'DPAPI refused it. It was written by another Windows user or machine, with a different ' +
      'dataProtectionEntropy, or the bytes are damaged (a Windows password reset by an administrator also makes ' +
      'old DPAPI data unreadable). It is moved aside and users sign in again.',
  });
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
