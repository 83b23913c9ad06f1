import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { ICachePlugin, TokenCacheContext } from '@azure/msal-node';
import { selectPersistence } from './create-persistence.js';
import { accountsIn, type CachedAccount, mergeCaches, replaceMemory } from './cache-json.js';
import { asKeychainCacheError, isKeychainCacheError, KeychainCacheError } from './errors.js';
import { acquireFileLock, type LockOptions, type ReleaseLock } from './file-lock.js';
import { createLogger, type Logger, type LoggerOptions } from './logger.js';
import { type CachePluginOptions, checkLoggerOptions, checkPersistence, pluginKeys, resolveLockOptions, resolvePersistenceOptions } from './options.js';
import type { Persistence } from './persistence/types.js';

const emptyCache = '{}';

interface HeldWrite {
  releaseFile: ReleaseLock;
  releaseLocal: () => void;
  /** The stored cache and its change token as reloaded under the lock: what MSAL's write is based on. */
  baseText: string;
  baseToken: string;
}

/** What one msal TokenCache was last given by us: msal-node keeps its merge snapshot per TokenCache. */
interface SyncState {
  token: string | undefined;
  text: string | undefined;
  /** Writes of this TokenCache between beforeCacheAccess and afterCacheAccess: reads then leave its memory alone. */
  writing: number;
}

/**
 * The longest a read reuses the change token an earlier read of the same turn of the event loop got (see
 * #readToken). Longer than a silent call's own work (~0.1 ms) and shorter than starting any program (a few
 * ms), so that a program run synchronously (execFileSync) that changes the store is seen after it.
 */
const tokenReuseMs = 1;

// A save whose fence keeps failing (the lock taken again and again while this process is stopped) gives up.
const maxSaveAttempts = 5;

/** What changed in the stored cache's accounts, and whether this process or another one changed it. */
export interface CacheChange {
  added: CachedAccount[];
  removed: CachedAccount[];
  origin: 'this-process' | 'another-process';
}

export type CacheChangeListener = (change: CacheChange) => void;

/**
 * msal-node's ICachePlugin over a {@link Persistence}, safe across processes:
 * - reads take no lock (every write is an atomic replace) and reload only when the store's change token moved;
 * - writes (`cacheHasChanged` in beforeCacheAccess) take an in-process mutex and the cross-process lockfile,
 *   reload the latest stored cache under the lock, let MSAL modify it, save, and unlock in afterCacheAccess;
 * - unreadable stored bytes are moved aside and the app carries on with an empty cache.
 */
export class KeychainCachePlugin implements ICachePlugin {
  readonly persistence: Persistence;
  readonly #logger: Logger;
  readonly #lockOptions: LockOptions;
  readonly #lockPath: string;
  // Per msal TokenCache (one per client application): what the store looked like when that cache last got
  // it from us, and the text it was given. Any number of clients may share one plugin, created at any time.
  readonly #synced = new WeakMap<object, SyncState>();
  // The change token of the store as this plugin last saw it, for the idle watcher.
  #lastSeenToken: string | undefined;
  // Only contexts whose beforeCacheAccess took the lock appear here: msal-node calls afterCacheAccess
  // in a `finally` even when beforeCacheAccess threw, and that must never release someone else's lock.
  readonly #held = new WeakMap<TokenCacheContext, HeldWrite>();
  #localTail: Promise<void> = Promise.resolve();
  // cacheChanged: the accounts last seen in the store (by home account id + environment), the listeners,
  // and the watcher that notices other processes' writes while this one is idle.
  #accounts: Map<string, CachedAccount> | undefined;
  readonly #listeners = new Set<CacheChangeListener>();
  #watcher: FSWatcher | undefined;
  #checkTimer: NodeJS.Timeout | undefined;
  // Writes of this process in flight: the watcher leaves the store alone meanwhile (it would see our own
  // save before we do and report it as another process's).
  #writing = 0;
  // The change token a read got in this turn of the event loop, while it may stand for later reads (#readToken).
  #recent: { token: string; at: number } | undefined;
  #turn = 0;
  #turnEndPending = false;
  readonly #endTurn = (): void => {
    this.#turnEndPending = false;
    this.#turn++;
    this.#recent = undefined;
  };

  constructor(persistence: Persistence, options: { lockOptions?: LockOptions; loggerOptions?: LoggerOptions } = {}) {
    this.persistence = persistence;
    this.#logger = createLogger(options.loggerOptions);
    this.#lockOptions = resolveLockOptions(options);
    this.#lockPath = `${persistence.cachePath}.lockfile`;
  }

  async beforeCacheAccess(context: TokenCacheContext): Promise<void> {
    try {
      if (!context.cacheHasChanged) {
        // The hot path: at most one stat per turn of the event loop, nothing else, when no other writer has been here.
        const state = this.#state(context);
        const token = this.#reusableToken() ?? await this.#readToken();
        // A read that lands inside a write of the same client (msal-node runs them concurrently) must not replace
        // the memory that write is filling: the write reloaded under the lock and saves the latest in a moment.
        if (token !== state.token && state.writing === 0) await this.#beforeRead(context, token);
        return;
      }
      const held = await this.#lock();
      try {
        const base = await this.#syncUnderLock(context);
        this.#held.set(context, { ...held, baseText: base.text, baseToken: base.token });
      } catch (error) {
        await this.#unlock(held);
        throw error;
      }
      this.#state(context).writing++;
      this.#writing++;
    } catch (error) {
      // One error identity for the app, whatever failed underneath (a persistence passed in, msal's own parser).
      throw asKeychainCacheError(error, 'Reading the token cache');
    }
  }

  async afterCacheAccess(context: TokenCacheContext): Promise<void> {
    // A read (msal-node fixes cacheHasChanged when it creates the context) never holds anything. Checked first: a
    // WeakMap lookup keyed by the fresh context object would give it an identity hash on every silent call.
    if (!context.cacheHasChanged) return;
    const held = this.#held.get(context);
    if (!held) return; // a read, or a write whose beforeCacheAccess failed: nothing to save or release
    this.#held.delete(context);
    let saveError: KeychainCacheError | undefined;
    try {
      const text = await this.#fencedSave(context.tokenCache.serialize(), held);
      // msal-node rebuilds its memory from the last deserialized string on every silent call
      // (TokenCache.overwriteCache), so hand it what we just saved or it forgets this write. Done before the
      // lock is released, so that nothing (a failed release included) can come between the save and MSAL.
      replaceMemory(context, text);
      Object.assign(this.#state(context), { text, token: held.baseToken });
      this.#logger.verbose(`Saved the token cache (${text.length} characters) to ${this.persistence.kind}.`);
      this.#notify(text, 'this-process');
    } catch (error) {
      saveError = asKeychainCacheError(error, 'Saving the token cache');
      throw saveError;
    } finally {
      this.#state(context).writing--;
      this.#writing--;
      // A failed release after a failed save must not replace the save's error, which says what was lost.
      await this.#unlock(held).catch((error: unknown) => { if (!saveError) throw asKeychainCacheError(error, 'Releasing the cache lock'); });
    }
  }

  /**
   * The store's change token for a read. Another thread or process can only tell this one about a change it made
   * through the event loop (a message, a child's exit, a timer): a callback that starts a new turn. So a token
   * read in this turn stands for the reads after it until control returns to the event loop (a nextTick ends
   * the turn), for at most tokenReuseMs (a synchronous wait, e.g. execFileSync of a program that signs in, is
   * seen after it). Writes through any plugin in this thread (ESM or CJS, any copy) end the turn too: they take
   * the lockfile with asynchronous I/O. A changeToken() that does real asynchronous work resolves in a later
   * turn and is not reused: every read asks it again.
   */
  async #readToken(): Promise<string> {
    if (!this.#turnEndPending) {
      this.#turnEndPending = true;
      process.nextTick(this.#endTurn);
    }
    const turn = this.#turn;
    const at = performance.now();
    const token = await this.persistence.changeToken();
    if (this.#turn === turn) this.#recent = { token, at };
    return token;
  }

  #reusableToken(): string | undefined {
    const recent = this.#recent;
    if (recent === undefined || performance.now() - recent.at >= tokenReuseMs) return undefined;
    return recent.token;
  }

  /**
   * Saves `text` only while this write still holds the lock and the store is what it reloaded under it. A
   * holder stopped for longer than staleAfterMs (SIGSTOP, a debugger, a paused VM) has had its lock broken
   * and another writer may have saved meanwhile: it takes the lock again, reloads, re-applies its own changes
   * on top of the newer cache (entity by entity, as msal-node's own merge does), and saves that instead.
   * Returns the text that was saved.
   */
  async #fencedSave(text: string, held: HeldWrite): Promise<string> {
    const lost = new KeychainCacheError('LOCK_TIMEOUT', `The cache lock ${this.#lockPath} was taken from this process before it could save.`);
    // Checked before the save (for a persistence that ignores beforeCommit) and again at its commit point
    // (right before the rename, or the keychain write), so only that last step is left unfenced.
    const fence = async (): Promise<void> => {
      if (!await held.releaseFile.stillHeld() || await this.persistence.changeToken() !== held.baseToken) throw lost;
    };
    for (let attempt = 1; ; attempt++) {
      let saved = false;
      try {
        await fence();
        await this.persistence.save(text, { beforeCommit: fence });
        saved = true;
      } catch (error) {
        if (error !== lost) throw error;
      }
      if (saved) {
        const token = await this.persistence.changeToken();
        // Stopped between the fence and the commit: the lock may have been broken and a newer write may land
        // on top of ours. Checked again; if so, the loop re-applies our changes to whatever is stored now.
        if (await held.releaseFile.stillHeld()) {
          this.#lastSeenToken = token;
          held.baseText = text;
          held.baseToken = token;
          return text;
        }
      }
      if (attempt >= maxSaveAttempts) {
        throw new KeychainCacheError('LOCK_TIMEOUT', `The cache lock ${this.#lockPath} was taken from this process ` +
          `${attempt} times while it was saving (it was stopped for longer than lockOptions.staleAfterMs each time). ` +
          'Nothing was written over the newer cache. Raise lockOptions.staleAfterMs if this process is paused for long.');
      }
      this.#logger.warning(`The cache lock ${this.#lockPath} was taken from this process while it was stopped, or the ` +
        'store changed under it; reloading and re-applying this write on top of the newer cache.');
      await held.releaseFile();
      held.releaseFile = await acquireFileLock(this.#lockPath, this.#lockOptions, this.#logger);
      const latest = await this.#loadUnderLock();
      text = mergeCaches(held.baseText, text, latest.text);
      held.baseText = latest.text;
      held.baseToken = latest.token;
    }
  }

  /**
   * The stored cache and its change token, under the lock. Content is compared, not timestamps: exact whatever
   * the file system's clock granularity. Unreadable bytes are moved aside, and the cache is then empty.
   */
  async #loadUnderLock(): Promise<{ text: string; token: string }> {
    const token = await this.persistence.changeToken();
    const { text, problem } = await this.#load();
    if (problem === undefined) return { text: text ?? emptyCache, token };
    await this.#quarantine(problem);
    return { text: emptyCache, token: await this.persistence.changeToken() };
  }

  async #beforeRead(context: TokenCacheContext, token: string): Promise<void> {
    // Token first, then content: a write landing in between only causes one extra reload later.
    const { text, problem } = await this.#load();
    // A write of this client may have begun while we loaded: its memory is not ours to replace.
    if (this.#state(context).writing > 0) return;
    if (problem === undefined) {
      try {
        this.#apply(context, text ?? emptyCache, token);
        return;
      } catch {
        // MSAL could not read it: handled under the lock below.
      }
    }
    // Moving bytes aside must happen under the lock, after re-reading: a writer may just have fixed them.
    const held = await this.#lock();
    try {
      await this.#syncUnderLock(context);
    } finally {
      await this.#unlock(held);
    }
  }

  /** Loads the stored cache into MSAL under the lock; returns the text MSAL now has and the token it came with. */
  async #syncUnderLock(context: TokenCacheContext): Promise<{ text: string; token: string }> {
    const { text, token } = await this.#loadUnderLock();
    try {
      this.#apply(context, text, token);
      return { text, token };
    } catch (error) {
      // One parse, MSAL's own: invalid JSON and JSON MSAL cannot read are equally unreadable. The
      // error's message is not used: JSON.parse quotes the input, which may hold tokens.
      this.#logger.verbose(`MSAL could not deserialize the stored cache: ${error instanceof Error ? error.name : 'error'}.`);
      const size = text.length;
      await this.#quarantine(error instanceof SyntaxError
        ? `it is not valid JSON: truncated or garbage (${size} bytes)` : `it is JSON, but not an MSAL token cache (${size} bytes)`);
      const emptied = await this.persistence.changeToken();
      this.#apply(context, emptyCache, emptied);
      return { text: emptyCache, token: emptied };
    }
  }

  /** The stored text and, when it cannot be used, why (bytes that do not decrypt count as unreadable). */
  async #load(): Promise<{ text: string | null; problem?: string }> {
    let text: string | null;
    try {
      text = await this.persistence.load();
    } catch (error) {
      if (!isKeychainCacheError(error, 'DECRYPT_FAILED')) throw error;
      this.#logger.verbose(`DECRYPT_FAILED: ${error.message}`);
      return { text: null, problem: 'it could not be decrypted (DECRYPT_FAILED: another user or machine, a different key or entropy, or damaged bytes)' };
    }
    return text === null ? { text } : { text, problem: cacheProblem(text) };
  }

  #state(context: TokenCacheContext): SyncState {
    let state = this.#synced.get(context.tokenCache);
    if (!state) {
      state = { token: undefined, text: undefined, writing: 0 };
      this.#synced.set(context.tokenCache, state);
    }
    return state;
  }

  #apply(context: TokenCacheContext, text: string, token: string): void {
    const state = this.#state(context);
    if (text !== state.text) {
      state.text = undefined;
      replaceMemory(context, text);
      this.#logger.verbose(`Loaded the token cache (${text.length} characters) from ${this.persistence.kind}.`);
      this.#notify(text, 'another-process');
    }
    state.text = text;
    state.token = token;
    this.#lastSeenToken = token;
  }

  /**
   * Calls `listener` whenever accounts are added to or removed from the stored cache, by this process or
   * by any other process sharing it (noticed through a watch on `cachePath`, also while this process is
   * idle). Returns a function that unsubscribes. Accounts are the app's own data: they are handed to the
   * listener, never logged. Costs one parse of the cache per change, only while someone listens.
   */
  onCacheChanged(listener: CacheChangeListener): () => void {
    if (typeof listener !== 'function') throw new KeychainCacheError('INVALID_OPTION', 'onCacheChanged needs a function.');
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#startWatching();
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stopWatching();
    };
  }

  #startWatching(): void {
    // The baseline: the accounts stored now. Changes before it is known are not reported.
    void this.persistence.load().then(
      (text) => { if (this.#accounts === undefined) this.#accounts = accountsIn(text ?? emptyCache) ?? new Map(); },
      () => { this.#accounts ??= new Map(); },
    );
    const name = basename(this.persistence.cachePath);
    try {
      this.#watcher = watch(dirname(this.persistence.cachePath), { persistent: false }, (_event, changed) => {
        if (changed === null || changed === name) this.#scheduleCheck();
      });
      this.#watcher.on('error', () => this.#stopWatching());
    } catch (error) {
      this.#logger.warning(`Cannot watch ${dirname(this.persistence.cachePath)} for other processes' changes ` +
        `(${error instanceof Error ? error.message : String(error)}); they are reported at this process's next cache access.`);
    }
  }

  #stopWatching(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    clearTimeout(this.#checkTimer);
    this.#accounts = undefined;
  }

  #scheduleCheck(): void {
    // A write is a burst of events (temp file, rename); look once it has settled.
    clearTimeout(this.#checkTimer);
    this.#checkTimer = setTimeout(() => { void this.#checkStore(); }, 15);
    this.#checkTimer.unref();
  }

  async #checkStore(): Promise<void> {
    try {
      if (this.#writing > 0) { this.#scheduleCheck(); return; }
      const token = await this.persistence.changeToken();
      if (token === this.#lastSeenToken || this.#listeners.size === 0) return;
      const { text, problem } = await this.#load();
      if (problem === undefined) this.#notify(text ?? emptyCache, 'another-process');
    } catch (error) {
      this.#logger.verbose(`Could not check the store for changes: ${error instanceof Error ? error.name : 'error'}.`);
    }
  }

  #notify(text: string, origin: CacheChange['origin']): void {
    if (this.#listeners.size === 0) return;
    const now = accountsIn(text);
    if (now === undefined) return;
    const before = this.#accounts;
    this.#accounts = now;
    if (before === undefined) return;
    const added = [...now].filter(([key]) => !before.has(key)).map(([, account]) => account);
    const removed = [...before].filter(([key]) => !now.has(key)).map(([, account]) => account);
    if (added.length === 0 && removed.length === 0) return;
    for (const listener of [...this.#listeners]) {
      try {
        listener({ added, removed, origin });
      } catch (error) {
        this.#logger.warning(`A cacheChanged listener threw (${error instanceof Error ? error.name : 'error'}); the others still ran.`);
      }
    }
  }

  async #quarantine(reason: string): Promise<void> {
    const where = await this.persistence.quarantine();
    this.#logger.warning(`The stored token cache (${this.persistence.location}) could not be read: ${reason}. ` +
      `Its bytes were moved aside to ${where} and the cache starts empty; users sign in again.`);
  }

  async #lock(): Promise<{ releaseFile: ReleaseLock; releaseLocal: () => void }> {
    // In-process first, so that concurrent calls in one process queue here instead of polling the lockfile.
    let releaseLocal!: () => void;
    const previous = this.#localTail;
    this.#localTail = new Promise<void>((resolve) => { releaseLocal = resolve; });
    await previous;
    try {
      const releaseFile = await acquireFileLock(this.#lockPath, this.#lockOptions, this.#logger);
      return { releaseFile, releaseLocal };
    } catch (error) {
      releaseLocal();
      throw error;
    }
  }

  async #unlock(held: { releaseFile: ReleaseLock; releaseLocal: () => void }): Promise<void> {
    try {
      // Never throws: a lockfile that cannot be removed yet is logged and retried by the lock itself.
      await held.releaseFile();
    } finally {
      held.releaseLocal();
    }
  }
}

/**
 * Makes MSAL's memory exactly `text`. msal-node's deserialize() adds to its memory and never removes, so an
 * account another process (or client) signed out would stay in this client's memory and be written back by its
 * next save: a completed sign-out undone. msal-node empties its memory itself the same way before it reloads
 * (TokenCache.overwriteCache: storage.clear()), but offers no public call for it; where a future msal-node
 * lacks it, deserialize() alone remains (the test of removals racing sign-ins then fails).
 */

/**
 * Why stored text cannot be a cache, by its shape alone (no parse: MSAL's deserialize is the one parse,
 * and its failure is handled by the caller); undefined when it may be fine. Never quotes the text.
 */
function cacheProblem(text: string): string | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return `it is empty (${text.length} bytes)`;
  if (!trimmed.startsWith('{') || !trimmed.endsWith('}')) {
    return `it is not a JSON object: truncated, garbage, or another JSON type (${text.length} bytes)`;
  }
  return undefined;
}

/**
 * Creates the persistence (see createPersistence) and the plugin over it; or wraps a persistence you
 * already have: `createCachePlugin({ persistence })`.
 */
export async function createCachePlugin(
  options: CachePluginOptions | { persistence: Persistence; lockOptions?: LockOptions; loggerOptions?: LoggerOptions },
): Promise<KeychainCachePlugin> {
  if (typeof options === 'object' && options !== null && 'persistence' in options && options.persistence !== undefined) {
    const { persistence, lockOptions, loggerOptions } = options;
    for (const key of Object.keys(options)) {
      if (!['persistence', 'lockOptions', 'loggerOptions'].includes(key)) {
        throw new KeychainCacheError('INVALID_OPTION', `Option '${key}' does not apply when a persistence is passed in: ` +
          'set it on createPersistence instead.');
      }
    }
    checkPersistence(persistence, 'createCachePlugin({ persistence })', ' Or pass the createPersistence options to createCachePlugin itself.');
    checkLoggerOptions(loggerOptions);
    return new KeychainCachePlugin(persistence, { lockOptions: resolveLockOptions({ lockOptions }), loggerOptions });
  }
  const pluginOptions = options as CachePluginOptions;
  const resolved = resolvePersistenceOptions(pluginOptions, pluginKeys);
  const lockOptions = resolveLockOptions(pluginOptions);
  const logger = createLogger(resolved.loggerOptions);
  const selection = await selectPersistence(resolved, logger);
  if (!selection.persistence) throw selection.error;
  return new KeychainCachePlugin(selection.persistence, { lockOptions, loggerOptions: resolved.loggerOptions });
}
