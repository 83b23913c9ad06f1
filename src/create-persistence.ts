import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { KeychainCacheError, withTypedErrors } from './errors.js';
import { assertNotDirectory, createDirectory, readBytesIfExists } from './files.js';
import { createLogger, type Logger } from './logger.js';
import { type PersistenceOptions, type ResolvedPersistenceOptions, resolvePersistenceOptions } from './options.js';
import { createPlaintextFilePersistence } from './persistence/plaintext-file.js';
import type { BackendKind, Persistence } from './persistence/types.js';

/** What happened to one candidate backend during selection (the self-test prints these). */
export interface BackendAttempt {
  kind: BackendKind;
  usable: boolean;
  /** Why it was not used, with the fix; absent when usable. No token text. */
  reason?: string;
  code?: string;
  ms: number;
}

export interface Selection {
  persistence?: Persistence;
  attempts: BackendAttempt[];
  error?: KeychainCacheError;
}

/** The platform's own encrypted store. The only platform switch of the package. */
export function encryptedCandidates(platform: NodeJS.Platform): BackendKind[] {
  switch (platform) {
    case 'win32':
      return ['dpapi-file'];
    case 'darwin':
      return ['keychain'];
    default:
      // Linux and the other POSIX systems that run a Secret Service (FreeBSD, OpenBSD, ...).
      return ['libsecret'];
  }
}

/** What selection tries, in order: the named backend; else safeStorage when given; else the platform's store. */
export function candidatesFor(options: Pick<ResolvedPersistenceOptions, 'backend' | 'safeStorage' | 'platform'>): BackendKind[] {
  if (options.backend) return [options.backend];
  // An Electron app that passes safeStorage gets it alone: no keytar to load, nothing to rebuild.
  if (options.safeStorage) return ['safe-storage'];
  return encryptedCandidates(options.platform);
}

/**
 * Where the plaintext fallback keeps its cache: a sibling of `cachePath`, never `cachePath` itself. The encrypted
 * backend owns `cachePath` (libsecret and the Keychain keep their change marker there, dpapi-file and safe-storage
 * the encrypted cache), so a run that falls back (over SSH, say) and a run that does not (the desktop) each keep
 * their own cache and neither overwrites the other's (issue 10). `backend: 'plaintext-file'` chosen explicitly
 * still uses `cachePath`, msal-node-extensions' FilePersistence layout.
 */
export function plaintextFallbackPath(cachePath: string): string {
  return `${cachePath}.plaintext`;
}

async function openBackend(kind: BackendKind, options: ResolvedPersistenceOptions, cachePath = options.cachePath): Promise<Persistence> {
  const { serviceName, accountName, platform, env } = options;
  switch (kind) {
    // Each platform's store is imported when chosen (a chunk of its own in the ESM build, shared by the stores of
    // one kind): an import, and a CLI on another store, pays only for the code it runs. The file backends' start on
    // Linux compiles 18 KB less (the Windows, macOS and Electron stores, ~0.4 ms).
    case 'dpapi-file': {
      const { createDpapiPersistence } = await import('./persistence/encrypted-file-backends.js');
      return createDpapiPersistence({
        cachePath, platform, scope: options.dataProtectionScope,
        ...(options.dataProtectionEntropy ? { entropy: options.dataProtectionEntropy } : {}),
      });
    }
    case 'keychain': {
      if (platform !== 'darwin') {
        throw new KeychainCacheError('BACKEND_UNAVAILABLE',
          `The keychain backend is the macOS Keychain, which does not exist on ${platform}. Leave backend unset to get this platform's store.`);
      }
      const { createKeychainPersistence } = await import('./persistence/keyring-backends.js');
      return createKeychainPersistence({ cachePath, serviceName, accountName, platform });
    }
    case 'libsecret': {
      // The Secret Service client also brings node:crypto and node:net.
      const { createLibsecretPersistence } = await import('./persistence/keyring-backends.js');
      return createLibsecretPersistence({ cachePath, serviceName, accountName, platform, env, promptTimeoutMs: options.promptTimeoutMs });
    }
    case 'safe-storage': {
      if (!options.safeStorage) throw new KeychainCacheError('INVALID_OPTION', "backend 'safe-storage' needs the safeStorage option.");
      const { createSafeStoragePersistence } = await import('./persistence/encrypted-file-backends.js');
      return createSafeStoragePersistence({
        cachePath, platform, safeStorage: options.safeStorage, waitMs: options.safeStorageWaitMs,
        allowPlaintext: options.allowPlaintextFallback,
      });
    }
    case 'plaintext-file':
      return createPlaintextFilePersistence({ cachePath, platform });
  }
}

/**
 * Proves the store works with the work the start needs anyway (issue 13). A stored cache that loads is the proof:
 * the first read of the plugin gets that text instead of asking the store again, so a CLI that only reads pays one
 * lookup. When nothing is stored, the throwaway round trip runs as before. A load that fails decides nothing by
 * itself: the round trip does, as before issue 13, so selection, fallback and remediation come out exactly as they
 * did. A store that works but holds what cannot be read (DECRYPT_FAILED, CACHE_CORRUPT: the plugin moves it aside;
 * a safeStorage session without the key the cache was sealed with: the first read throws) is created, and a store
 * that refuses the round trip is not (a BACKEND_UNAVAILABLE there is what falls back to plaintext). A store that
 * reads but cannot be written fails the first write, typed, with the stored cache intact.
 */
async function verifyByLoad(persistence: Persistence): Promise<Persistence> {
  // Taken before the load: if it is still the same at the first read, nothing was written since the text was read.
  const token = await persistence.changeToken();
  let text: string | null;
  try {
    text = await persistence.load();
  } catch (error) {
    // A locked keyring, or a store that failed (a Secret Service that did not answer within its call timeout), is
    // the answer: the round trip would meet the same lock or silence twice more (write, then clean up), each a full
    // prompt or call timeout. Neither falls back (they are not BACKEND_UNAVAILABLE), so selection is unchanged.
    if (error instanceof KeychainCacheError && (error.code === 'KEYRING_LOCKED' || error.code === 'STORE_FAILED')) throw error;
    await persistence.verify();
    return persistence;
  }
  if (text === null || await decryptionWasIdentity(persistence, text)) {
    await persistence.verify();
    return persistence;
  }
  return withPrimedLoad(persistence, token, text);
}

/**
 * An encrypted backend that keeps its bytes at cachePath (DPAPI, safeStorage) and loaded them back unchanged proved
 * nothing about its encryption (a facility that passes text through): the round trip checks that, so it runs.
 */
async function decryptionWasIdentity(persistence: Persistence, text: string): Promise<boolean> {
  if (!persistence.encrypted || persistence.location !== persistence.cachePath || text === '') return false;
  const raw = await readBytesIfExists(persistence.cachePath).catch(() => null);
  return raw !== null && raw.includes(text);
}

/**
 * The persistence, whose next load returns `text` once without asking the store, provided the change token is still
 * `token` (taken before `text` was loaded); otherwise, and for every later load, it loads from the store.
 */
function withPrimedLoad(persistence: Persistence, token: string, text: string): Persistence {
  let primed: { token: string; text: string } | undefined = { token, text };
  const load = async (): Promise<string | null> => {
    const taken = primed;
    primed = undefined;
    if (taken !== undefined && await persistence.changeToken() === taken.token) return taken.text;
    return persistence.load();
  };
  return { ...persistence, load };
}

async function attempt(kind: BackendKind, options: ResolvedPersistenceOptions, cachePath = options.cachePath): Promise<{ persistence?: Persistence; attempt: BackendAttempt; error?: KeychainCacheError }> {
  const started = performance.now();
  try {
    const opened = await openBackend(kind, options, cachePath);
    const persistence = withTypedErrors(options.verify ? await verifyByLoad(opened) : opened, `The ${kind} persistence`);
    return { persistence, attempt: { kind, usable: true, ms: performance.now() - started } };
  } catch (caught) {
    // Something we did not classify is not proof that the store is absent: STORE_FAILED, which never falls back.
    const error = caught instanceof KeychainCacheError ? caught
      : new KeychainCacheError('STORE_FAILED', `The ${kind} backend failed to start with an unexpected error (see cause).`, { cause: caught });
    return { error, attempt: { kind, usable: false, reason: error.message, code: error.code, ms: performance.now() - started } };
  }
}

/**
 * Selection with a record of every candidate; never throws for an unusable backend. A selection that fails
 * removes the directories it created for cachePath (only those, and only while empty): a mistake must not leave
 * 0700 folders behind.
 */
export async function selectPersistence(resolved: ResolvedPersistenceOptions, logger: Logger): Promise<Selection> {
  const directory = dirname(resolved.cachePath);
  let created: string | undefined;
  let selection: Selection;
  try {
    // Before any backend: one that fails for its own reason (no D-Bus) would fall back to <cachePath>.plaintext and
    // hide that cachePath cannot ever hold the encrypted store's file.
    await assertNotDirectory(resolved.cachePath);
    // Made here, so that what this call created is known: mkdir tells the first directory it made, and only that
    // and those below it are removed again if selection fails (another process may be using one it made itself).
    created = await createDirectory(directory);
    selection = await selectAmongBackends(resolved, logger);
  } catch (error) {
    selection = { attempts: [], error: error instanceof KeychainCacheError ? error
      : new KeychainCacheError('STORE_FAILED', 'Selecting a backend failed with an unexpected error (see cause).', { cause: error }) };
  }
  if (!selection.persistence && created !== undefined) {
    // Deepest first, up to the first one made; rmdir refuses a directory that is not empty, which stops the walk.
    for (let current = directory; ; current = dirname(current)) {
      if (!await fs.rmdir(current).then(() => true, () => false) || current === created || dirname(current) === current) break;
    }
  }
  return selection;
}

async function selectAmongBackends(resolved: ResolvedPersistenceOptions, logger: Logger): Promise<Selection> {
  if (resolved.safeStorage !== undefined && resolved.backend !== undefined && resolved.backend !== 'safe-storage') {
    logger.warning(`safeStorage is not used: backend '${resolved.backend}' was asked for explicitly. Remove backend to ` +
      'keep the cache with safeStorage.');
  }
  const attempts: BackendAttempt[] = [];
  const plaintextRefused = 'Not used: an unencrypted file needs allowPlaintextFallback: true (self-test: --allow-plaintext).';

  if (resolved.backend === 'plaintext-file' && !resolved.allowPlaintextFallback) {
    const error = new KeychainCacheError('PLAINTEXT_NOT_ALLOWED',
      "backend: 'plaintext-file' stores tokens unencrypted, so it also needs allowPlaintextFallback: true. " +
      'Set both if an unencrypted cache is really what you want.');
    return { attempts: [{ kind: 'plaintext-file', usable: false, reason: error.message, code: error.code, ms: 0 }], error };
  }

  const candidates = candidatesFor(resolved);
  let lastError: KeychainCacheError | undefined;
  for (const kind of candidates) {
    const result = await attempt(kind, resolved);
    attempts.push(result.attempt);
    if (result.persistence) {
      if (kind === 'plaintext-file') {
        warnPlaintext(logger, result.persistence, "backend: 'plaintext-file' was chosen",
          "To keep them encrypted, leave backend unset: this platform's secret store is then used.");
      }
      if (kind === 'safe-storage' && !result.persistence.encrypted) {
        warnPlaintext(logger, result.persistence, "Electron's safeStorage is in basic_text mode: it encrypts with a key " +
          'hard-coded in Chromium, which protects nothing', 'To keep them encrypted, run the app where a keyring is ' +
          'available (a desktop session with gnome-keyring or KWallet), and not with --password-store=basic.');
      }
      return { persistence: result.persistence, attempts };
    }
    lastError = result.error;
  }

  const why = lastError ? lastError.message
    : `msal-keychain-cache has no encrypted backend for ${resolved.platform} in this version.`;
  // Only an absent store falls back. A locked keyring, a refused access, an unsafe path or a failing store
  // exists and holds (or will hold) the user's tokens: falling back would hide it and split the cache in two.
  const unavailable = !lastError || lastError.code === 'BACKEND_UNAVAILABLE';
  if (resolved.backend === undefined && resolved.allowPlaintextFallback && unavailable) {
    const result = await attempt('plaintext-file', resolved, plaintextFallbackPath(resolved.cachePath));
    attempts.push(result.attempt);
    if (result.persistence) {
      warnPlaintext(logger, result.persistence, `no secret store answered as usable in this run, and ` +
        `allowPlaintextFallback: true permits this file then. The store's answer: ${withoutPlaintextAdvice(why)}`,
        `${resolved.cachePath} stays the encrypted store's: a run that reaches the store (a desktop session; an Electron ` +
        'app that creates the plugin after app.whenReady()) uses the cache kept there, and this run does not touch it.');
      return { persistence: result.persistence, attempts };
    }
    return { attempts, error: result.error };
  }
  if (resolved.backend === undefined) {
    attempts.push(resolved.allowPlaintextFallback
      ? { kind: 'plaintext-file', usable: false, code: lastError!.code, ms: 0,
        reason: `Not used: the plaintext fallback is only for a store that does not exist here, and this one answered ${lastError!.code}.` }
      : { kind: 'plaintext-file', usable: false, reason: plaintextRefused, code: 'PLAINTEXT_NOT_ALLOWED', ms: 0 });
  }
  const error = unavailable
    ? new KeychainCacheError('BACKEND_UNAVAILABLE', `No encrypted token cache is available. ${why}${
      resolved.backend === undefined && !/allowPlaintextFallback/.test(why)
        ? ' Or, to accept an unencrypted cache file, pass allowPlaintextFallback: true.' : ''}`, { cause: lastError })
    : lastError;
  return { attempts, error };
}

/** The backend's reason without its "or pass allowPlaintextFallback" advice, which the flag has already taken. */
function withoutPlaintextAdvice(message: string): string {
  return message.split(/(?<=\.)\s+/).filter((sentence) => !sentence.includes('allowPlaintextFallback')).join(' ');
}

/** One warning, in this order: where the tokens are and what that means, why, then what to do (or to know). */
function warnPlaintext(logger: Logger, persistence: Persistence, why: string, next: string): void {
  logger.warning(`Tokens are stored UNENCRYPTED in ${persistence.cachePath}: anyone who can read that file can use them. ` +
    `Why: ${why.replace(/\.?$/, '.')} ${next}`);
}

/**
 * Picks, opens and verifies the platform's secret store (or the backend named in `backend`). Falls back
 * to a plaintext file (`<cachePath>.plaintext`, see plaintextFallbackPath) only with
 * `allowPlaintextFallback: true` and only when the store is unavailable, and then logs a warning every time.
 * A store that exists but refuses (KEYRING_LOCKED, ACCESS_DENIED, UNSAFE_PATH, STORE_FAILED) throws as it is.
 * Throws BACKEND_UNAVAILABLE naming the cause and the fix when nothing usable is left.
 */
export async function createPersistence(options: PersistenceOptions): Promise<Persistence> {
  const resolved = resolvePersistenceOptions(options);
  const selection = await selectPersistence(resolved, createLogger(resolved.loggerOptions));
  if (selection.persistence) return selection.persistence;
  throw selection.error;
}
