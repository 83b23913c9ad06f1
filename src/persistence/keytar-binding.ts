// The only place keytar is loaded, and only when a keychain backend is chosen: importing this package
// must work on machines without keytar or libsecret (msal-node-extensions fails there, msal-js #6160).
import { KeychainCacheError, systemErrorCode } from '../errors.js';

export interface KeytarApi {
  getPassword(service: string, account: string): Promise<string | null>;
  setPassword(service: string, account: string, password: string): Promise<void>;
  deletePassword(service: string, account: string): Promise<boolean>;
}

let loading: Promise<KeytarApi> | undefined;

export function loadKeytar(): Promise<KeytarApi> {
  loading ??= import('keytar').then(
    (module) => ((module as { default?: KeytarApi }).default ?? (module as unknown as KeytarApi)),
    (error: unknown) => {
      loading = undefined;
      throw explainKeytarLoadFailure(error);
    },
  );
  return loading;
}

function explainKeytarLoadFailure(error: unknown): KeychainCacheError {
  const code = systemErrorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  let text: string;
  if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && /keytar['"]?(\s|$|')/.test(message)) {
    text = 'keytar is not installed (it is an optional dependency of msal-keychain-cache). Install it with ' +
      '`npm install keytar`; on Debian/Ubuntu it builds from source when no prebuilt binary can be downloaded ' +
      'and then needs `sudo apt install libsecret-1-dev pkg-config`.';
  } else if (/libsecret-1\.so/.test(message)) {
    text = 'keytar is installed but the libsecret library is missing. Install it: `sudo apt install libsecret-1-0` ' +
      '(Fedora: `sudo dnf install libsecret`; Alpine: `apk add libsecret`).';
  } else if (/NODE_MODULE_VERSION|different Node\.js version/.test(message)) {
    text = "keytar's native module was built for another Node.js or Electron version. Rebuild it: `npm rebuild keytar` " +
      '(Electron: `npx @electron/rebuild`).';
  } else {
    text = "keytar's native module could not be loaded. Rebuild it with `npm rebuild keytar` (needs libsecret-1-dev, " +
      'pkg-config, python3 and a C++ compiler on Linux).';
  }
  return new KeychainCacheError('BACKEND_UNAVAILABLE', text, { cause: error });
}
