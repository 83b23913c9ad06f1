/** Every code a {@link KeychainCacheError} can carry. Tests and callers branch on these, never on text. */
export const errorCodes = [
  'BACKEND_UNAVAILABLE', // no usable secret store and plaintext not allowed
  'PLAINTEXT_NOT_ALLOWED', // plaintext-file asked for without allowPlaintextFallback
  'INVALID_OPTION', // an option has the wrong type or value
  'UNSAFE_PATH', // cache path is a symlink, or owned by another user
  'ACCESS_DENIED', // the OS refused access to the store (permissions, user denied)
  'KEYRING_LOCKED', // the secret store is locked and cannot be unlocked without the user
  'LOCK_TIMEOUT', // another live process held the cache lock for longer than lockOptions.timeoutMs
  'STORE_FAILED', // reading or writing the store failed for another reason
  'CACHE_CORRUPT', // the stored cache could not be parsed (reported in logs; recovered automatically)
  'DECRYPT_FAILED', // encrypted bytes were rejected (wrong key, tampered)
] as const;

export type ErrorCode = (typeof errorCodes)[number];

// Every bundle of this package (main, /self-test, /distributed; ESM and CommonJS; two installed copies) carries
// its own copy of the class below. The brand, a symbol from the global registry, makes them one class to
// `instanceof` and isKeychainCacheError: an error from any copy is an instance of every copy.
const brand = Symbol.for('msal-keychain-cache/KeychainCacheError');

/**
 * The one error class of this package. `message` says what failed, where, and how to fix it; it never
 * contains token text. The underlying error, if any, is kept as `cause`. `instanceof KeychainCacheError` holds
 * across the package's entry points and module formats.
 */
export class KeychainCacheError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KeychainCacheError';
    this.code = code;
    Object.defineProperty(this, brand, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // Subclasses (none in this package; perhaps an app's) keep the ordinary prototype check.
    if (this !== KeychainCacheError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

export function isKeychainCacheError(value: unknown, code?: ErrorCode): value is KeychainCacheError {
  return value instanceof KeychainCacheError && (code === undefined || value.code === code);
}

/** The `code` of a Node system error (`ENOENT`, `EACCES`, ...), if it has one. */
export function systemErrorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

const builtInErrorNames = new Set(['Error', 'TypeError', 'RangeError', 'SyntaxError', 'ReferenceError', 'EvalError', 'URIError',
  'AggregateError', 'AbortError', 'TimeoutError', 'SystemError']);

/**
 * What leaves a public entry point: a KeychainCacheError as it is; anything else (a defect of ours, or an app's
 * store, session or persistence that threw) as STORE_FAILED, with the original kept as `cause`. Its message is not
 * copied: a parser's message can quote the text it failed on, and that text may be a token.
 */
export function asKeychainCacheError(error: unknown, what: string): KeychainCacheError {
  if (error instanceof KeychainCacheError) return error;
  // Only what cannot carry the app's text: a built-in error name, and a Node or system error code.
  const name = error instanceof Error && builtInErrorNames.has(error.name) ? error.name : error instanceof Error ? 'error' : typeof error;
  const raw = systemErrorCode(error);
  const code = raw !== undefined && /^(E[A-Z0-9]{1,15}|ERR_[A-Z0-9_]{1,60})$/.test(raw) ? raw : undefined;
  return new KeychainCacheError('STORE_FAILED', `${what} failed with an unexpected ${name}${code ? ` (${code})` : ''}; see cause.`,
    { cause: error });
}

/**
 * A copy of `target` whose methods throw (or reject with) only KeychainCacheError (see asKeychainCacheError); a
 * method that returns a value still returns it as it is, a promise stays a promise. Other properties are copied.
 * For the objects the package hands out (persistences, partition stores).
 */
export function withTypedErrors<T extends object>(target: T, what: string): T {
  const guarded: Record<string, unknown> = { ...(target as Record<string, unknown>) };
  for (const [name, value] of Object.entries(target)) {
    if (typeof value !== 'function') continue;
    const typed = (error: unknown) => asKeychainCacheError(error, `${what}.${name}()`);
    guarded[name] = function guardedMethod(...args: unknown[]): unknown {
      let result: unknown;
      try {
        result = (value as (...parameters: unknown[]) => unknown).apply(target, args);
      } catch (error) {
        throw typed(error);
      }
      return result instanceof Promise ? result.catch((error: unknown) => { throw typed(error); }) : result;
    };
  }
  return guarded as T;
}
