import { performance } from 'node:perf_hooks';
import { KeychainCacheError } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import { type PersistenceOptions, type ResolvedPersistenceOptions, resolvePersistenceOptions } from './options.js';
import { createLibsecretPersistence } from './persistence/libsecret.js';
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

/** The encrypted backends to try, in order, on each platform. The only platform switch of the package. */
export function encryptedCandidates(platform: NodeJS.Platform): BackendKind[] {
  switch (platform) {
    case 'win32': // DPAPI arrives with the platform issue
    case 'darwin': // Keychain arrives with the platform issue
      return [];
    default:
      // Linux and the other POSIX systems that run a Secret Service (FreeBSD, OpenBSD, ...).
      return ['libsecret'];
  }
}

async function openBackend(kind: BackendKind, options: ResolvedPersistenceOptions): Promise<Persistence> {
  const { cachePath, serviceName, accountName, platform, env } = options;
  switch (kind) {
    case 'libsecret':
      return createLibsecretPersistence({ cachePath, serviceName, accountName, platform, env });
    case 'plaintext-file':
      return createPlaintextFilePersistence({ cachePath, platform });
  }
}

async function attempt(kind: BackendKind, options: ResolvedPersistenceOptions): Promise<{ persistence?: Persistence; attempt: BackendAttempt; error?: KeychainCacheError }> {
  const started = performance.now();
  try {
    const persistence = await openBackend(kind, options);
    if (options.verify) await persistence.verify();
    return { persistence, attempt: { kind, usable: true, ms: performance.now() - started } };
  } catch (caught) {
    const error = caught instanceof KeychainCacheError ? caught
      : new KeychainCacheError('BACKEND_UNAVAILABLE', `The ${kind} backend failed to start (see cause).`, { cause: caught });
    return { error, attempt: { kind, usable: false, reason: error.message, code: error.code, ms: performance.now() - started } };
  }
}

/** Selection with a record of every candidate; never throws for an unusable backend. */
export async function selectPersistence(resolved: ResolvedPersistenceOptions, logger: Logger): Promise<Selection> {
  const attempts: BackendAttempt[] = [];
  const plaintextRefused = 'Not used: an unencrypted file needs allowPlaintextFallback: true (self-test: --allow-plaintext).';

  if (resolved.backend === 'plaintext-file' && !resolved.allowPlaintextFallback) {
    const error = new KeychainCacheError('PLAINTEXT_NOT_ALLOWED',
      "backend: 'plaintext-file' stores tokens unencrypted, so it also needs allowPlaintextFallback: true. " +
      'Set both if an unencrypted cache is really what you want.');
    return { attempts: [{ kind: 'plaintext-file', usable: false, reason: error.message, code: error.code, ms: 0 }], error };
  }

  const candidates = resolved.backend ? [resolved.backend] : encryptedCandidates(resolved.platform);
  let lastError: KeychainCacheError | undefined;
  for (const kind of candidates) {
    const result = await attempt(kind, resolved);
    attempts.push(result.attempt);
    if (result.persistence) {
      if (kind === 'plaintext-file') warnPlaintext(logger, result.persistence, 'it was chosen explicitly');
      return { persistence: result.persistence, attempts };
    }
    lastError = result.error;
  }

  const why = lastError ? lastError.message
    : `msal-keychain-cache has no encrypted backend for ${resolved.platform} in this version.`;
  if (resolved.backend === undefined && resolved.allowPlaintextFallback) {
    const result = await attempt('plaintext-file', resolved);
    attempts.push(result.attempt);
    if (result.persistence) {
      warnPlaintext(logger, result.persistence, `no secret store works: ${why}`);
      return { persistence: result.persistence, attempts };
    }
    lastError = result.error;
    return { attempts, error: lastError };
  }
  if (resolved.backend === undefined) attempts.push({ kind: 'plaintext-file', usable: false, reason: plaintextRefused, code: 'PLAINTEXT_NOT_ALLOWED', ms: 0 });
  const error = lastError?.code === 'BACKEND_UNAVAILABLE' || !lastError
    ? new KeychainCacheError('BACKEND_UNAVAILABLE', `No encrypted token cache is available. ${why}`, { cause: lastError })
    : lastError;
  return { attempts, error };
}

function warnPlaintext(logger: Logger, persistence: Persistence, why: string): void {
  logger.warning(`Tokens are stored UNENCRYPTED in ${persistence.cachePath} because ${why}. ` +
    'Anyone who can read that file can use them. allowPlaintextFallback is true.');
}

/**
 * Picks, opens and verifies the platform's secret store (or the backend named in `backend`). Falls back
 * to a plaintext file only with `allowPlaintextFallback: true`, and then logs a warning every time.
 * Throws BACKEND_UNAVAILABLE naming the cause and the fix when nothing usable is left.
 */
export async function createPersistence(options: PersistenceOptions): Promise<Persistence> {
  const resolved = resolvePersistenceOptions(options);
  const selection = await selectPersistence(resolved, createLogger(resolved.loggerOptions));
  if (selection.persistence) return selection.persistence;
  throw selection.error;
}
