import { posix as posixPath, resolve, win32 as win32Path } from 'node:path';
import { KeychainCacheError } from './errors.js';
import { type LockOptions, resolveLockTiming } from './file-lock.js';
import type { LoggerOptions } from './logger.js';
import type { BackendKind, DataProtectionScope, SafeStorageLike } from './persistence/types.js';

export const backendKinds: readonly BackendKind[] = ['dpapi-file', 'keychain', 'libsecret', 'safe-storage', 'plaintext-file'];

export interface PersistenceOptions {
  /**
   * Where the cache (or, for keychain backends, its change marker) lives: an absolute file path. Required.
   * `defaultCachePath('my-app')` gives the per-user path each OS expects. A relative path or a leading `~` is
   * refused (INVALID_OPTION): Node expands neither, so each would give a different cache per working directory.
   */
  cachePath: string;
  /** Keychain item's service attribute. Default `'msal-keychain-cache'`. Use msal-node-extensions' value to share its cache. */
  serviceName?: string;
  /** Keychain item's account attribute. Default `'MSALCache'`. */
  accountName?: string;
  /** Use exactly this backend instead of the platform's choice. Default: chosen by platform. */
  backend?: BackendKind;
  /** Windows DPAPI scope. Default `'CurrentUser'`; `'LocalMachine'` lets every user of the machine decrypt. */
  dataProtectionScope?: DataProtectionScope;
  /** Windows DPAPI optional entropy (a second secret the app supplies; needed again to decrypt). Default none. */
  dataProtectionEntropy?: Uint8Array | string;
  /** Electron's `safeStorage` (main process). When given, the cache is a `safeStorage`-encrypted file. Default none. */
  safeStorage?: SafeStorageLike;
  /** How long to wait for `safeStorage` to become available (it is not before the app's `ready`). Default `5000`. */
  safeStorageWaitMs?: number;
  /** Permit an unencrypted file when no secret store works (and for `backend: 'plaintext-file'`). Default `false`. */
  allowPlaintextFallback?: boolean;
  /** msal-node's logger options; our lines go to the same callback. Default: warnings to `process.emitWarning`. */
  loggerOptions?: LoggerOptions;
  /**
   * Linux Secret Service: how long a prompt it shows (unlock the keyring, confirm an access) may wait for the user
   * before the call fails with KEYRING_LOCKED (unlock) or ACCESS_DENIED (confirm) and the prompt is dismissed.
   * Default `60000`. A prompt that cannot be shown at all (no display) fails at once.
   */
  promptTimeoutMs?: number;
  /**
   * Check the store before returning. Default `true`. Loading the stored cache is the check (a CLI that only
   * reads pays one lookup); when nothing is stored, a round trip on a throwaway entry.
   */
  verify?: boolean;
  /** The platform to select for. Default `process.platform`. Tests pass other values. */
  platform?: NodeJS.Platform;
  /** Environment to read (D-Bus address). Default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

export interface CachePluginOptions extends PersistenceOptions {
  /** Cross-process lock tuning. Defaults: `timeoutMs` 60000, `staleAfterMs` 30000. */
  lockOptions?: LockOptions;
}

type OptionalKeys = 'backend' | 'loggerOptions' | 'dataProtectionEntropy' | 'safeStorage';
export type ResolvedPersistenceOptions = Required<Omit<PersistenceOptions, OptionalKeys | 'dataProtectionEntropy'>> &
  Pick<PersistenceOptions, Exclude<OptionalKeys, 'dataProtectionEntropy'>> & { dataProtectionEntropy?: Uint8Array };

const persistenceKeys = ['cachePath', 'serviceName', 'accountName', 'backend', 'dataProtectionScope',
  'dataProtectionEntropy', 'safeStorage', 'safeStorageWaitMs', 'allowPlaintextFallback', 'loggerOptions', 'promptTimeoutMs', 'verify',
  'platform', 'env'];
const pluginKeys = [...persistenceKeys, 'lockOptions', 'persistence'];

/** An INVALID_OPTION error (also the distributed entry's). */
export function invalid(message: string): KeychainCacheError {
  return new KeychainCacheError('INVALID_OPTION', message);
}

/** What a value is, for "X is ..." in a message, without its content: "undefined", "null", "an array", "an object", "a number". */
export function describeType(value: unknown): string {
  if (value === undefined || value === null) return String(value);
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : `a ${type}`;
}

/**
 * A value as "got ..." shows it, on every entry point: numbers and booleans as they are, a short string quoted, a
 * long one only by its length (it may be a secret pasted into the wrong option), anything else by its type.
 */
export function got(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') {
    if (value === '') return 'an empty string';
    return value.length <= 40 ? `the string '${value}'` : `a string of ${value.length} characters`;
  }
  return describeType(value);
}

const loggerKeys = ['loggerCallback', 'piiLoggingEnabled', 'logLevel', 'correlationId'];

/** msal-node's LoggerOptions, checked as msal-node would use them: a typo or a wrong type fails here, not at first log. */
export function checkLoggerOptions(value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid('loggerOptions must be msal-node LoggerOptions ({ loggerCallback, logLevel, piiLoggingEnabled }).');
  }
  checkKeys(value, loggerKeys, 'loggerOptions');
  const { loggerCallback, logLevel, piiLoggingEnabled, correlationId } = value as Record<string, unknown>;
  if (loggerCallback !== undefined && typeof loggerCallback !== 'function') {
    throw invalid(`loggerOptions.loggerCallback must be a function (level, message, containsPii) => void; got ${got(loggerCallback)}.`);
  }
  if (logLevel !== undefined && !(Number.isInteger(logLevel) && (logLevel as number) >= 0 && (logLevel as number) <= 4)) {
    throw invalid(`loggerOptions.logLevel must be one of msal-node's LogLevel values (LogLevel.Error ... LogLevel.Trace, ` +
      `0 to 4); got ${got(logLevel)}.`);
  }
  if (piiLoggingEnabled !== undefined && typeof piiLoggingEnabled !== 'boolean') {
    throw invalid(`loggerOptions.piiLoggingEnabled must be true or false; got ${got(piiLoggingEnabled)}.`);
  }
  if (correlationId !== undefined && typeof correlationId !== 'string') {
    throw invalid(`loggerOptions.correlationId must be a string; got ${got(correlationId)}.`);
  }
}

const persistenceMethods = ['load', 'save', 'delete', 'changeToken', 'quarantine', 'verify'];

/** A Persistence (from createPersistence) passed to `who`, checked before it is used: every method, an absolute cachePath. */
export function checkPersistence(value: unknown, who: string, otherwise = ''): void {
  const candidate = value as Record<string, unknown> | null;
  const isObject = typeof candidate === 'object' && candidate !== null;
  const missing = isObject ? persistenceMethods.filter((name) => typeof candidate[name] !== 'function') : persistenceMethods;
  const cachePath = candidate?.cachePath;
  // Its lock is taken next to cachePath: a relative one would put it in the working directory.
  if (missing.length === 0 && typeof cachePath === 'string' && (posixPath.isAbsolute(cachePath) || win32Path.isAbsolute(cachePath))) return;
  const detail = !isObject ? describeType(value)
    : missing.length > 0 ? `an object without ${missing.join(', ')}` : 'one whose cachePath is not an absolute path';
  throw invalid(`${who} needs a persistence from createPersistence({ cachePath, ... }) (or an object with the same methods ` +
    `and an absolute cachePath); got ${detail}.${otherwise}`);
}

function checkKeys(value: object, allowed: string[], what: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw invalid(`Unknown ${what} option '${key}'. Valid options: ${allowed.join(', ')}.`);
    }
  }
}

function optionalString(value: unknown, name: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${name} must be a non-empty string.`);
  return value;
}

function optionalBoolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalid(`${name} must be true or false, got ${typeof value}.`);
  return value;
}

function optionalPositive(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  // setTimeout's limit: a longer wait would fire at once.
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 2_147_483_647) {
    throw invalid(`${name} must be a whole number of milliseconds from 1 to 2147483647; got ${got(value)}.`);
  }
  return value;
}

/**
 * The checks every path option gets (cachePath; the file store's directory): no NUL, no '~' (Node does not expand
 * it), absolute on `platform`. `fix` says what to use instead of a '~' path and of a relative one; INVALID_OPTION.
 */
export function checkAbsolutePath(value: string, name: string, platform: NodeJS.Platform, perDirectory: string,
  fix: { home: string; absolute: string }): void {
  if (value.includes('\0')) throw invalid(`${name} contains a NUL character, which no file system allows in a path. Check how the path is built.`);
  if (/^~($|[\\/])/.test(value)) {
    throw invalid(`${name} '${value}' starts with '~', which Node does not expand: it would create a folder named '~' in the ` +
      `working directory. ${fix.home}`);
  }
  if (!(platform === 'win32' ? win32Path.isAbsolute(value) : posixPath.isAbsolute(value))) {
    throw invalid(`${name} '${value}' is relative, so every working directory would get ${perDirectory}. ${fix.absolute} ` +
      `(e.g. ${platform === 'win32' ? 'path.resolve(...)' : `'${resolve(value)}'`}).`);
  }
}

/** Validates once and returns a new object; the caller's object is never modified. */
export function resolvePersistenceOptions(options: PersistenceOptions, allowedKeys = persistenceKeys): ResolvedPersistenceOptions {
  if (typeof options !== 'object' || options === null) throw invalid('Options must be an object with at least cachePath.');
  checkKeys(options, allowedKeys, 'persistence');
  if (typeof options.cachePath !== 'string' || options.cachePath.trim() === '') {
    throw invalid("cachePath is required: the file where the cache (or its change marker) is kept. Use defaultCachePath('my-app') " +
      '(per-user, e.g. /home/me/.cache/my-app/msal-cache.json) or another absolute path.');
  }
  const platform = options.platform ?? process.platform;
  checkAbsolutePath(options.cachePath, 'cachePath', platform, 'its own cache', {
    home: "Use defaultCachePath('my-app'), or join(os.homedir(), ...) for a path of your own.",
    absolute: "Use defaultCachePath('my-app') or an absolute path",
  });
  const lastComponent = options.cachePath.split(platform === 'win32' ? /[\\/]/ : /\//).pop()!;
  if (lastComponent === '' || lastComponent === '.' || lastComponent === '..') {
    throw invalid(`cachePath '${options.cachePath}' names a directory (it ends with '${lastComponent || options.cachePath.slice(-1)}'): ` +
      "it must be the cache file itself, e.g. path.join(directory, 'msal-cache.json'), or defaultCachePath('my-app').");
  }
  if (options.backend !== undefined && !backendKinds.includes(options.backend)) {
    throw invalid(`backend must be one of ${backendKinds.join(', ')}; got '${String(options.backend)}'.`);
  }
  if (options.dataProtectionScope !== undefined && !['CurrentUser', 'LocalMachine'].includes(options.dataProtectionScope)) {
    throw invalid(`dataProtectionScope must be 'CurrentUser' or 'LocalMachine'; got '${String(options.dataProtectionScope)}'.`);
  }
  const entropy = options.dataProtectionEntropy;
  if (entropy !== undefined && typeof entropy !== 'string' && !(entropy instanceof Uint8Array)) {
    throw invalid('dataProtectionEntropy must be a string or a Buffer/Uint8Array.');
  }
  if (options.safeStorage !== undefined) checkSafeStorage(options.safeStorage);
  if (options.backend === 'safe-storage' && options.safeStorage === undefined) {
    throw invalid("backend: 'safe-storage' needs the safeStorage option: pass `safeStorage` from `import { safeStorage } from 'electron'` (main process).");
  }
  // safeStorage with another backend stays allowed (an explicit backend wins, with a warning): an Electron app may
  // always pass safeStorage and pick a backend from its configuration.
  checkLoggerOptions(options.loggerOptions);
  return {
    cachePath: options.cachePath,
    serviceName: optionalString(options.serviceName, 'serviceName', 'msal-keychain-cache'),
    accountName: optionalString(options.accountName, 'accountName', 'MSALCache'),
    backend: options.backend,
    dataProtectionScope: options.dataProtectionScope ?? 'CurrentUser',
    ...(entropy === undefined ? {} : { dataProtectionEntropy: typeof entropy === 'string' ? Buffer.from(entropy, 'utf8') : Uint8Array.from(entropy) }),
    safeStorage: options.safeStorage,
    safeStorageWaitMs: optionalPositive(options.safeStorageWaitMs, 'safeStorageWaitMs') ?? 5000,
    promptTimeoutMs: optionalPositive(options.promptTimeoutMs, 'promptTimeoutMs') ?? 60_000,
    allowPlaintextFallback: optionalBoolean(options.allowPlaintextFallback, 'allowPlaintextFallback', false),
    loggerOptions: options.loggerOptions,
    verify: optionalBoolean(options.verify, 'verify', true),
    platform,
    env: options.env ?? process.env,
  };
}

function checkSafeStorage(value: unknown): void {
  const has = (name: string) => typeof (value as Record<string, unknown> | null)?.[name] === 'function';
  const sync = has('isEncryptionAvailable') && has('encryptString') && has('decryptString');
  const async = has('isAsyncEncryptionAvailable') && has('encryptStringAsync') && has('decryptStringAsync');
  if (typeof value !== 'object' || value === null || !(sync || async)) {
    throw invalid("safeStorage must be Electron's safeStorage object (main process): it needs isEncryptionAvailable, " +
      'encryptString and decryptString, or their Async versions.');
  }
}

export function resolveLockOptions(options: CachePluginOptions | { lockOptions?: LockOptions }): LockOptions {
  const lock = options.lockOptions;
  if (lock === undefined) return {};
  if (typeof lock !== 'object' || lock === null) throw invalid('lockOptions must be an object.');
  checkKeys(lock, ['timeoutMs', 'staleAfterMs'], 'lockOptions');
  // Validated by the lock's own rules (positive, finite, staleAfterMs at least the minimum), at creation.
  resolveLockTiming(lock);
  const resolved: LockOptions = {};
  if (lock.timeoutMs !== undefined) resolved.timeoutMs = lock.timeoutMs;
  if (lock.staleAfterMs !== undefined) resolved.staleAfterMs = lock.staleAfterMs;
  return resolved;
}

export { pluginKeys };

/**
 * Where an app's cache belongs on each OS, for `cachePath`: `%LOCALAPPDATA%\<appName>\msal-cache.bin` on
 * Windows (the per-user, non-roaming profile DPAPI data belongs in), `~/Library/Caches/<appName>/msal-cache.json`
 * on macOS, and `$XDG_CACHE_HOME/<appName>/msal-cache.json` (default `~/.cache`) elsewhere.
 */
export function defaultCachePath(appName: string, options: { platform?: NodeJS.Platform; env?: NodeJS.ProcessEnv } = {}): string {
  if (typeof appName !== 'string' || appName.trim() === '' || /[\\/:*?"<>|]/.test(appName) || appName === '.' || appName === '..') {
    throw invalid('appName must be a plain folder name (no slashes or reserved characters), e.g. "my-cli".');
  }
  const platform = options.platform ?? process.platform;
  const env = options.env ?? process.env;
  const path = platform === 'win32' ? win32Path : posixPath;
  const home = platform === 'win32' ? env.USERPROFILE : env.HOME;
  const base = platform === 'win32' ? env.LOCALAPPDATA ?? (home ? path.join(home, 'AppData', 'Local') : undefined)
    : platform === 'darwin' ? (home ? path.join(home, 'Library', 'Caches') : undefined)
      : env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : (home ? path.join(home, '.cache') : undefined);
  if (!base) {
    throw invalid(`Cannot find a per-user folder: ${platform === 'win32' ? 'LOCALAPPDATA and USERPROFILE are' : 'HOME is'} not set. Pass cachePath yourself.`);
  }
  return path.join(base, appName, platform === 'win32' ? 'msal-cache.bin' : 'msal-cache.json');
}
