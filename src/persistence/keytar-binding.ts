// The only place keytar is loaded: only for the macOS Keychain backend, only when it is chosen. Linux uses our
// own Secret Service client and never loads it. Importing this package must work without keytar
// (msal-node-extensions fails there, msal-js #6160), so keytar is an optional peer dependency.
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
    text = 'The macOS Keychain backend needs keytar, which is not installed (an optional peer dependency of ' +
      'msal-keychain-cache, used on macOS only). Install it in your app: `npm install keytar` (a prebuilt binary; ' +
      'Electron apps then run `npx @electron/rebuild`), or pass Electron\'s safeStorage instead.';
  } else if (/NODE_MODULE_VERSION|different Node\.js version/.test(message)) {
    text = "keytar's native module was built for another Node.js or Electron version. Rebuild it: `npm rebuild keytar` " +
      '(Electron: `npx @electron/rebuild`).';
  } else {
    text = "keytar's native module could not be loaded. Reinstall or rebuild it: `npm rebuild keytar` (Electron: " +
      '`npx @electron/rebuild`).';
  }
  return new KeychainCacheError('BACKEND_UNAVAILABLE', text, { cause: error });
}
