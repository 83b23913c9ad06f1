/** The backends this package can store a cache in. */
export type BackendKind = 'dpapi-file' | 'keychain' | 'libsecret' | 'safe-storage' | 'plaintext-file';

/** Windows DPAPI scope: only this Windows user (default), or any user of this machine. */
export type DataProtectionScope = 'CurrentUser' | 'LocalMachine';

/**
 * The part of Electron's `safeStorage` (main process) this package uses: pass `safeStorage` from
 * `import { safeStorage } from 'electron'`. Either the synchronous methods (every Electron since 15) or the
 * asynchronous ones (Electron 42+; the synchronous ones are deprecated in 45 and removed in 46) must be present; when both
 * are, the asynchronous ones are used. The package never imports `electron` itself.
 */
export interface SafeStorageLike {
  isEncryptionAvailable?(): boolean;
  encryptString?(plainText: string): Buffer;
  decryptString?(encrypted: Buffer): string;
  isAsyncEncryptionAvailable?(): Promise<boolean>;
  encryptStringAsync?(plainText: string): Promise<Buffer>;
  decryptStringAsync?(encrypted: Buffer): Promise<{ shouldReEncrypt: boolean; result: string }>;
  /** Linux only: `basic_text` means a hard-coded key, which this package treats as plaintext. */
  getSelectedStorageBackend?(): string;
}

export interface SaveOptions {
  beforeCommit?: () => Promise<void>;
}

/**
 * One storage backend. Every backend stores the UTF-8 cache JSON in the layout msal-node-extensions
 * uses, so the two libraries can share a cache. Implementations never log or throw token text.
 */
export interface Persistence {
  readonly kind: BackendKind;
  /** True when the bytes at rest are protected by the OS secret store. */
  readonly encrypted: boolean;
  /** The file whose change tells other processes to reload; the lock is `${cachePath}.lockfile`. */
  readonly cachePath: string;
  /** Where the cache lives, for people (no secrets): a path, or a keyring item's attributes. */
  readonly location: string;
  /** The stored cache JSON, or null when nothing is stored. Throws typed errors; never returns bytes it could not read. */
  load(): Promise<string | null>;
  /**
   * Replaces the stored cache atomically: a concurrent reader sees the old or the new one. `beforeCommit`, when
   * given, runs as late as the backend allows before the new version becomes visible (before the rename, or the
   * keychain write); if it throws, nothing is stored and its error is thrown as it is.
   */
  save(contents: string, options?: SaveOptions): Promise<void>;
  /** Deletes the stored cache; false when there was none. */
  delete(): Promise<boolean>;
  /** A cheap token that changes whenever the stored cache changes (a stat, no secret-store call). */
  changeToken(): Promise<string>;
  /** Moves the stored bytes aside (they could not be parsed) and leaves the store empty; returns where they went. */
  quarantine(): Promise<string>;
  /** Proves the backend works with a round trip on a throwaway entry; throws a typed error naming the fix. */
  verify(): Promise<void>;
  /**
   * For people (the self-test): what serves this store, when the backend can tell (e.g. which Secret Service
   * process and which transport). No secrets. Never throws.
   */
  describeStore?(): Promise<string | undefined>;
}
