// A Secret Service client (org.freedesktop.Secret.*) over our own D-Bus layer: sessions with the
// dh-ietf1024-sha256-aes128-cbc-pkcs7 algorithm (plain where a service offers nothing else, as libsecret
// does), search, read, create-or-replace, delete, unlock and prompts with a bounded wait.
// Spec: https://specifications.freedesktop.org/secret-service-spec/latest/
import {
  createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPair as generateKeyPairOnThreadPool, hkdfSync,
  type KeyObject, randomBytes,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DBusError, type DBusConnection, hasSessionBus, sessionBus, type Variant } from './dbus.js';

const bus = 'org.freedesktop.secrets';
const servicePath = '/org/freedesktop/secrets';
const serviceInterface = 'org.freedesktop.Secret.Service';
const itemInterface = 'org.freedesktop.Secret.Item';
const promptInterface = 'org.freedesktop.Secret.Prompt';
const noObject = '/';
const defaultAliasPath = '/org/freedesktop/secrets/aliases/default';
// An object path as the D-Bus specification defines it: a bus drops a client whose message carries a malformed one.
const objectPath = /^\/(?:[A-Za-z0-9_]+(?:\/[A-Za-z0-9_]+)*)?$/;
const dhAlgorithm = 'dh-ietf1024-sha256-aes128-cbc-pkcs7';

/** A failure the caller maps to a typed error: what kind, and the D-Bus error behind it. */
export class SecretServiceError extends Error {
  constructor(
    readonly reason: 'locked' | 'dismissed' | 'prompt-timeout' | 'no-collection',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SecretServiceError';
  }
}

interface Session { path: string; key?: Buffer; algorithm: TransportAlgorithm }

export interface SecretServiceOptions {
  env: NodeJS.ProcessEnv;
  /** How long a prompt (unlock, confirm) may stay unanswered before it is dismissed. */
  promptTimeoutMs: number;
  /** How long any other call may go unanswered. Default 25 s. */
  callTimeoutMs?: number;
  /** Tests only: open a `plain` session without trying the encrypted one first. */
  plainOnly?: boolean;
}

export interface StoredSecret { value: Buffer; contentType: string; item: string }

/** What the session algorithm in use is; the self-test reports it. */
export type TransportAlgorithm = typeof dhAlgorithm | 'plain';

/**
 * Per connection: the open sessions, one per mode, shared by every client of this thread (a process that creates
 * many persistences, one per request say, must not leave a session object per client in the service); and how
 * many times the service's owner changed. A Secret Service restarted on the same bus (gnome-keyring started
 * again at login, KeePassXC reopened) knows none of our sessions and may have given our item paths to other
 * items: KeePassXC 2.7.4 answers a CreateItem on a session it does not know with a prompt it dismisses, so a
 * long-running app could never write again. The bus says so (NameOwnerChanged), and everything is forgotten.
 */
interface ServiceState { sessions: Map<'any' | 'plain', Promise<Session>>; restarts: number }
const states = new WeakMap<DBusConnection, ServiceState>();

function serviceState(connection: DBusConnection): ServiceState {
  let state = states.get(connection);
  if (state) return state;
  const created: ServiceState = { sessions: new Map(), restarts: 0 };
  states.set(connection, state = created);
  connection.onSignal((message) => {
    if (message.member !== 'NameOwnerChanged' || message.interface !== 'org.freedesktop.DBus' || message.body[0] !== bus) return;
    created.restarts++;
    created.sessions.clear();
  });
  // Not awaited: the bus applies it before any later call of ours is routed (one connection's messages are
  // handled in order), so a start pays no round trip for it.
  connection.call({
    destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'AddMatch',
    signature: 's', body: [`type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${bus}'`],
  }).catch(() => undefined);
  return state;
}

export class SecretServiceClient {
  readonly #options: SecretServiceOptions;
  /** The algorithm of the session this client last used; the self-test reports it. */
  algorithm: TransportAlgorithm | undefined;

  // The key pair for this client's first session, generated from its creation on (off the main thread) when this
  // thread has no bus connection yet: a CLI's start then does its file checks while it is computed. Used once.
  #firstKeyPair: Promise<KeyPair> | undefined;

  constructor(options: SecretServiceOptions) {
    this.#options = options;
    if (hasSessionBus(options.env)) return;
    if (!options.plainOnly) {
      this.#firstKeyPair = generateKeyPair();
      this.#firstKeyPair.catch(() => undefined);
    }
    // Connecting from creation on too: the bus daemon answers the handshake while the caller checks its files.
    // A failure is met again, and reported, by the first call (a failed connection is not kept).
    sessionBus(options.env, options.callTimeoutMs, true).catch(() => undefined);
  }

  #bus(): Promise<DBusConnection> {
    return sessionBus(this.#options.env, this.#options.callTimeoutMs);
  }

  /** The service's restarts this client has caught up with (its remembered paths are from after the last). */
  #restartsSeen: number | undefined;

  /** Forgets remembered paths when the service restarted since this client last looked; the restart count. */
  async #catchUp(): Promise<number> {
    const { restarts } = serviceState(await this.#bus());
    if (this.#restartsSeen !== undefined && this.#restartsSeen !== restarts) {
      this.#items.clear();
      this.#collection = undefined;
    }
    this.#restartsSeen = restarts;
    return restarts;
  }

  /**
   * Runs one operation; when it fails and the service restarted meanwhile (its objects, our session and the
   * prompt it answered belong to the old one), once more from scratch on the new service.
   */
  async #acrossRestart<T>(operation: () => Promise<T>): Promise<T> {
    const before = await this.#catchUp();
    try {
      return await operation();
    } catch (error) {
      if ((await this.#catchUp()) === before) throw error;
      return operation();
    }
  }

  async #call(path: string, iface: string, member: string, signature?: string, body?: unknown[]): Promise<unknown[]> {
    const connection = await this.#bus();
    return connection.call({
      destination: bus, path, interface: iface, member, timeoutMs: this.#options.callTimeoutMs,
      ...(signature ? { signature, body: body ?? [] } : {}),
    });
  }

  async #openSession(): Promise<Session> {
    const connection = await this.#bus();
    const mode = this.#options.plainOnly ? 'plain' : 'any';
    const open = serviceState(connection).sessions;
    let opening = open.get(mode);
    if (!opening) {
      const created = this.#createSession(connection, mode);
      opening = created;
      open.set(mode, created);
      created.catch(() => { if (open.get(mode) === created) open.delete(mode); });
    }
    const session = await opening;
    this.algorithm = session.algorithm;
    return session;
  }

  async #createSession(connection: DBusConnection, mode: 'any' | 'plain'): Promise<Session> {
    const openSession = async (algorithm: string, input: Variant) => connection.call({
      destination: bus, path: servicePath, interface: serviceInterface, member: 'OpenSession', signature: 'sv',
      body: [algorithm, input], timeoutMs: this.#options.callTimeoutMs,
    });
    if (mode === 'any') {
      const early = this.#firstKeyPair;
      this.#firstKeyPair = undefined;
      const ours = await (early ?? generateKeyPair());
      try {
        const [output, path] = await openSession(dhAlgorithm, { signature: 'ay', value: ours.publicValue });
        const theirs = (output as Variant).value;
        if (!Buffer.isBuffer(theirs) || theirs.length === 0) throw new Error('The Secret Service sent no public key');
        // HKDF-SHA256 with no salt and no info over the shared secret gives the AES-128 key.
        const key = Buffer.from(hkdfSync('sha256', ours.sharedSecret(theirs), Buffer.alloc(0), Buffer.alloc(0), 16));
        return { path: String(path), key, algorithm: dhAlgorithm };
      } catch (error) {
        if (!(error instanceof DBusError) || error.dbusName !== 'org.freedesktop.DBus.Error.NotSupported') throw error;
      }
    }
    // A service without the encrypted transport: the secret then crosses the local socket (only this user can
    // reach it) in the clear, as libsecret and keytar do in this case. It is still encrypted at rest.
    const [, path] = await openSession('plain', { signature: 's', value: '' });
    return { path: String(path), algorithm: 'plain' };
  }

  /**
   * `use` on the item remembered for these attributes, once, with the session as it is; undefined when nothing is
   * remembered or the path may no longer be this item (deleted, locked away, or the service restarted: gnome-keyring
   * then gives a deleted item's number to the next new one, and our session is gone too, so the call fails instead
   * of reaching another account's item). Such a failure forgets every remembered path: the caller searches.
   */
  async #viaRemembered<T>(attributes: Record<string, string>, use: (item: string, session: Session) => Promise<T>): Promise<T | undefined> {
    const known = this.#remembered(attributes);
    if (!known) return undefined;
    try {
      return await use(known, await this.#openSession());
    } catch (error) {
      if (!(error instanceof DBusError) || !/NoSession|UnknownObject|NoSuchObject|InvalidArgs|IsLocked|UnknownMethod/.test(error.dbusName)) {
        throw error;
      }
      this.#items.clear();
      if (!isLockedError(error)) await this.#forgetSessionIfStale(error);
      return undefined;
    }
  }

  /** After an error that says the service forgot our session (it restarted), the next call opens a new one. */
  async #forgetSessionIfStale(error: DBusError): Promise<void> {
    if (!/NoSession|UnknownObject|InvalidArgs/.test(error.dbusName)) return;
    serviceState(await this.#bus()).sessions.clear();
  }

  /** Forgets a session the service no longer knows, so the next call opens a new one. */
  async #forgetSession(session: Session): Promise<void> {
    // A restarted service may have given our remembered item paths to other items: find items by search again.
    this.#items.clear();
    const open = serviceState(await this.#bus()).sessions;
    for (const [mode, opening] of open) {
      if ((await opening.catch(() => undefined)) === session) open.delete(mode);
    }
  }

  /**
   * Which program answers as the Secret Service (its process name, from /proc where there is one) and the
   * session algorithm, for the self-test. Best effort: undefined when it cannot tell.
   */
  async describe(): Promise<string | undefined> {
    try {
      const connection = await this.#bus();
      const [pid] = await connection.call({
        destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
        member: 'GetConnectionUnixProcessID', signature: 's', body: [bus], timeoutMs: this.#options.callTimeoutMs,
      });
      await this.#openSession();
      // The program's file name from its command line (comm is cut at 15 characters: "gnome-keyring-d").
      const name = await readFile(`/proc/${Number(pid)}/cmdline`, 'utf8')
        .then((text) => text.split('\0')[0]?.split('/').pop() || undefined, () => undefined);
      const transport = this.algorithm === 'plain'
        ? 'plain session: the service offers no encrypted transport, so secrets cross the local bus socket unencrypted (they are still encrypted at rest)'
        : `${this.algorithm} session`;
      return `Secret Service ${name ?? 'process'} (pid ${Number(pid)}), ${transport}`;
    } catch {
      return undefined;
    }
  }

  /** Unlocked and locked items whose attributes include all of `attributes`, across every collection. */
  async search(attributes: Record<string, string>): Promise<{ unlocked: string[]; locked: string[] }> {
    // KeePassXC (2.7.4, UnlockBeforeSearch on by default) answers a Service.SearchItems only once a human has
    // unlocked its database: headless, never. So a locked default collection is unlocked first, with the
    // bounded prompt, and stays KEYRING_LOCKED if it cannot be; gnome-keyring would have answered anyway.
    await this.#unlockDefaultCollection();
    const [unlocked, locked] = await this.#call(servicePath, serviceInterface, 'SearchItems', 'a{ss}', [attributes]);
    const found = { unlocked: unlocked as string[], locked: locked as string[] };
    this.#remember(attributes, found.unlocked[0]);
    return found;
  }

  /** The item a search or read last found for these attributes: a write goes straight to it (Item.SetSecret). */
  #items = new Map<string, string>();

  #remember(attributes: Record<string, string>, item: string | undefined): void {
    const key = JSON.stringify(Object.entries(attributes).sort());
    if (item) this.#items.set(key, item);
    else this.#items.delete(key);
  }

  #remembered(attributes: Record<string, string>): string | undefined {
    return this.#items.get(JSON.stringify(Object.entries(attributes).sort()));
  }

  /** Unlocks the default collection if it is locked (KEYRING_LOCKED when it stays so); nothing if there is none. */
  async #unlockDefaultCollection(): Promise<void> {
    const locked = async (path: string) => ((await this.#call(path, 'org.freedesktop.DBus.Properties', 'Get', 'ss',
      ['org.freedesktop.Secret.Collection', 'Locked']))[0] as Variant).value === true;
    for (let attempt = 0; ; attempt++) {
      // The collection's own path, resolved once per client: KeePassXC 2.7.4 crashed (SIGSEGV) on a property read
      // at the alias path right after an item was deleted.
      const collection = await this.#defaultPath();
      // No default collection at all: nothing to unlock here (a search still finds items elsewhere; a write will
      // say there is no default keyring).
      if (!collection) return;
      try {
        if (await locked(collection)) await this.unlock([collection]);
        return;
      } catch (error) {
        // The alias moved (the collection was deleted or replaced): resolve it again, once.
        if (!isNoSuchObject(error) || attempt > 0) throw error;
        this.#collection = undefined;
      }
    }
  }

  /** What the `default` alias names, or null when it names nothing; cached per client. */
  #defaultPath(): Promise<string | null> {
    const resolving = this.#collection ??= this.#call(servicePath, serviceInterface, 'ReadAlias', 's', ['default'])
      .then(([path]) => (path === noObject ? null : String(path)));
    resolving.catch(() => { if (this.#collection === resolving) this.#collection = undefined; });
    return resolving;
  }

  #collection: Promise<string | null> | undefined;

  /**
   * The secret of the first item matching `attributes`, or null when no item matches. A match that is locked is
   * unlocked (which may prompt); one that stays locked throws SecretServiceError('locked'), never null.
   */
  lookup(attributes: Record<string, string>, hint?: string): Promise<StoredSecret | null> {
    return this.#acrossRestart(() => this.#lookup(attributes, hint));
  }

  async #lookup(attributes: Record<string, string>, hint: string | undefined): Promise<StoredSecret | null> {
    // The item this client last found or wrote for these attributes: one GetSecret instead of a lock check, a
    // search and a GetSecret (a long-running app rereads after every other process's write).
    const remembered = await this.#viaRemembered(attributes, async (item, session) =>
      storedSecret(session, item, await this.#call(item, itemInterface, 'GetSecret', 'o', [session.path])));
    if (remembered) return remembered;
    if (hint !== undefined && objectPath.test(hint)) {
      const hinted = await this.#viaHint(attributes, hint);
      if (hinted) return hinted;
    }
    // The session is opened beside the search, not after it: a CLI's first read pays one round trip less. The
    // search goes first, so its call is on the wire while the session's key pair is computed.
    const searching = this.search(attributes);
    this.#openSession().catch(() => undefined);
    const found = await searching;
    let items = found.unlocked;
    if (items.length === 0 && found.locked.length > 0) items = await this.unlock(found.locked);
    for (const item of items) {
      try {
        return await this.#getSecret(item);
      } catch (error) {
        // Deleted between the search and the read: try the next, or report nothing stored.
        if (!isNoSuchObject(error)) throw error;
      }
    }
    return null;
  }

  /**
   * The secret of `item`, an object path another process of ours wrote down (the change marker), provided the item
   * there still has `attributes` both before and after its secret is read; undefined otherwise, and when the service
   * answers with any error of its own (deleted, locked, a restarted service that gave the number to another item):
   * the caller then searches, which also unlocks. The first attribute check goes out beside the session's opening,
   * the second beside the read, so a CLI's first read pays two round trips after Hello instead of four.
   */
  async #viaHint(attributes: Record<string, string>, item: string): Promise<StoredSecret | undefined> {
    const hasAttributes = async () => {
      const [found] = await this.#call(item, 'org.freedesktop.DBus.Properties', 'Get', 'ss', [itemInterface, 'Attributes']);
      const value = (found as Variant).value;
      return value instanceof Map && Object.entries(attributes).every(([key, wanted]) => value.get(key) === wanted);
    };
    try {
      const before = hasAttributes();
      before.catch(() => undefined);
      const session = await this.#openSession();
      // Answered before the session (one service answers in order): no round trip of its own, and another
      // item's secret is never even fetched (KeePassXC may notify or ask about an access to it).
      if (!await before) return undefined;
      const [reply, matchedAfter] = await Promise.all([
        this.#call(item, itemInterface, 'GetSecret', 'o', [session.path]), hasAttributes(),
      ]);
      if (!matchedAfter) return undefined;
      this.#remember(attributes, item);
      return storedSecret(session, item, reply);
    } catch (error) {
      // A service that does not answer, or a dropped connection, is the answer for the search too.
      if (!(error instanceof DBusError) || /NoReply|Timeout|Disconnected/.test(error.dbusName)) throw error;
      return undefined;
    }
  }

  async #getSecret(item: string): Promise<StoredSecret> {
    return this.#withSession(async (session) => {
      const read = () => this.#call(item, itemInterface, 'GetSecret', 'o', [session.path]);
      let reply: unknown[];
      try {
        reply = await read();
      } catch (error) {
        if (!isLockedError(error)) throw error;
        await this.unlock([item]);
        reply = await read();
      }
      return storedSecret(session, item, reply);
    });
  }

  /**
   * Runs `work` with the session; once more with a new session when the service no longer knows it (the
   * service restarted on the same bus, so its objects and our session are gone).
   */
  async #withSession<T>(work: (session: Session) => Promise<T>): Promise<T> {
    const session = await this.#openSession();
    try {
      return await work(session);
    } catch (error) {
      if (!(error instanceof DBusError) || !/NoSession|UnknownObject|NoSuchObject|InvalidArgs/.test(error.dbusName)) throw error;
      await this.#forgetSession(session);
      return work(await this.#openSession());
    }
  }

  /**
   * Replaces the secret of the item with these attributes (Item.SetSecret: label and attributes stay as its writer
   * made them), or creates one in the default collection. Not CreateItem(replace): KeePassXC 2.7.4 answers that,
   * from any client but the item's creator (every new process of an app is a new client), with an access dialog
   * even when access confirmation is off (its issue #9255): headless, a write that never ends.
   */
  store(label: string, attributes: Record<string, string>, value: Buffer, contentType: string): Promise<string> {
    return this.#acrossRestart(() => this.#store(label, attributes, value, contentType));
  }

  async #store(label: string, attributes: Record<string, string>, value: Buffer, contentType: string): Promise<string> {
    this.#openSession().catch(() => undefined);
    const setSecret = (item: string) => this.#withSession(async (session) => {
      const set = () => this.#call(item, itemInterface, 'SetSecret', '(oayays)', [encryptedSecret(session, value, contentType)]);
      try {
        await set();
      } catch (error) {
        if (!isLockedError(error)) throw error;
        await this.unlock([item]);
        await set();
      }
      return item;
    });
    const remembered = await this.#viaRemembered(attributes, async (item, session) => {
      await this.#call(item, itemInterface, 'SetSecret', '(oayays)', [encryptedSecret(session, value, contentType)]);
      return item;
    });
    if (remembered) return remembered;
    const found = await this.search(attributes);
    const existing = found.unlocked[0] ?? (found.locked.length > 0 ? (await this.unlock(found.locked))[0] : undefined);
    if (existing) return setSecret(existing);

    const properties = new Map<string, Variant>([
      [`${itemInterface}.Label`, { signature: 's', value: label }],
      [`${itemInterface}.Attributes`, { signature: 'a{ss}', value: attributes }],
    ]);
    const createIn = (collection: string) => this.#withSession(async (session) => await this.#call(collection,
      'org.freedesktop.Secret.Collection', 'CreateItem', 'a{sv}(oayays)b',
      // replace=false: the search just found no such item (and writers hold the cache lock). With replace=true,
      // KeePassXC 2.7.4 crashed (SIGSEGV) creating an item whose predecessor had just been deleted.
      [properties, encryptedSecret(session, value, contentType), false]) as [string, string]);
    let reply: [string, string];
    try {
      // The alias's object path, as libsecret does for SECRET_COLLECTION_DEFAULT.
      reply = await createIn((await this.#defaultPath().catch(() => null)) ?? defaultAliasPath);
    } catch (error) {
      if (isLockedError(error)) {
        const collection = await this.defaultCollection();
        await this.unlock([collection]);
        reply = await createIn(collection);
      } else if (isNoSuchObject(error)) {
        // A service that serves no object at the alias path: resolve the alias (none → no default collection).
        reply = await createIn(await this.defaultCollection());
      } else {
        throw error;
      }
    }
    const [item, prompt] = reply;
    let created = item;
    if (created === noObject) {
      if (prompt === noObject) throw new DBusError('org.freedesktop.DBus.Error.Failed', 'CreateItem returned neither an item nor a prompt');
      created = String((await this.prompt(prompt, 'confirm storing the item')).value);
    }
    this.#remember(attributes, created);
    return created;
  }

  /** Deletes every item matching `attributes`; false when there was none. Locked matches are unlocked first. */
  delete(attributes: Record<string, string>): Promise<boolean> {
    return this.#acrossRestart(() => this.#delete(attributes));
  }

  async #delete(attributes: Record<string, string>): Promise<boolean> {
    const found = await this.search(attributes);
    const items = [...found.unlocked];
    if (found.locked.length > 0) items.push(...await this.unlock(found.locked));
    let deleted = false;
    for (const item of items) {
      let prompt: string;
      try {
        [prompt] = await this.#call(item, itemInterface, 'Delete') as [string];
      } catch (error) {
        if (isNoSuchObject(error)) continue; // deleted by someone else meanwhile
        throw error;
      }
      if (prompt !== noObject) await this.prompt(prompt, 'confirm deleting the item');
      deleted = true;
    }
    this.#remember(attributes, undefined);
    return deleted;
  }

  /** The collection the `default` alias names (where libsecret's SECRET_COLLECTION_DEFAULT stores). */
  async defaultCollection(): Promise<string> {
    const [path] = await this.#call(servicePath, serviceInterface, 'ReadAlias', 's', ['default']);
    if (path !== noObject) return String(path);
    throw new SecretServiceError('no-collection',
      'the Secret Service has no default collection (its "default" alias names none)');
  }

  /** Unlocks `objects`; returns what is unlocked. Throws SecretServiceError('locked') when they stay locked. */
  async unlock(objects: string[]): Promise<string[]> {
    const [unlocked, prompt] = await this.#call(servicePath, serviceInterface, 'Unlock', 'ao', [objects]) as [string[], string];
    if (prompt === noObject) {
      if (unlocked.length === 0) throw new SecretServiceError('locked', 'the Secret Service left the collection locked');
      return unlocked;
    }
    let result: Variant;
    try {
      result = await this.prompt(prompt, 'unlock the keyring');
    } catch (error) {
      if (error instanceof SecretServiceError) throw new SecretServiceError('locked', error.message, { cause: error });
      throw error;
    }
    const after = [...unlocked, ...(Array.isArray(result.value) ? result.value.map(String) : [])];
    if (after.length === 0) throw new SecretServiceError('locked', 'the unlock prompt ended with nothing unlocked');
    return after;
  }

  /**
   * Shows a prompt and waits for its Completed signal, at most promptTimeoutMs; then dismisses it. A prompt
   * that is dismissed, cannot be shown, or times out throws SecretServiceError; it never waits forever.
   */
  async prompt(path: string, what: string): Promise<Variant> {
    const connection = await this.#bus();
    const match = `type='signal',sender='${bus}',interface='${promptInterface}',member='Completed',path='${path}'`;
    const busCall = (member: string, rule: string) => connection.call({
      destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member,
      signature: 's', body: [rule], timeoutMs: this.#options.callTimeoutMs,
    });
    const timeoutMs = this.#options.promptTimeoutMs;
    let stop = () => {};
    const completed = new Promise<Variant>((resolve, reject) => {
      const off = connection.onSignal((message) => {
        if (message.path !== path || message.member !== 'Completed' || message.interface !== promptInterface) return;
        const [dismissed, result] = message.body as [boolean, Variant];
        if (dismissed) reject(new SecretServiceError('dismissed', `the prompt to ${what} was dismissed or could not be shown`));
        else resolve(result);
      });
      const timer = setTimeout(() => reject(new SecretServiceError('prompt-timeout',
        `the prompt to ${what} was not answered within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      stop = () => { off(); clearTimeout(timer); };
    });
    completed.catch(() => undefined);
    try {
      await busCall('AddMatch', match);
      try {
        await connection.call({ destination: bus, path, interface: promptInterface, member: 'Prompt', signature: 's', body: [''],
          timeoutMs: this.#options.callTimeoutMs });
      } catch (error) {
        throw new SecretServiceError('dismissed', `the prompt to ${what} could not be shown`, { cause: error });
      }
      return await completed;
    } catch (error) {
      if (error instanceof SecretServiceError && error.reason === 'prompt-timeout') {
        await connection.call({ destination: bus, path, interface: promptInterface, member: 'Dismiss', timeoutMs: 2_000 }).catch(() => undefined);
      }
      throw error;
    } finally {
      stop();
      busCall('RemoveMatch', match).catch(() => undefined);
    }
  }
}

interface KeyPair { publicValue: Buffer; sharedSecret(peer: Buffer): Buffer }

/**
 * A Diffie-Hellman key pair in RFC 2409's second Oakley group (1024-bit MODP, generator 2), the group the
 * algorithm name's "ietf1024" means. Through KeyObjects: `crypto.getDiffieHellman('modp2')` checks the prime on
 * every call, 40 ms of a CLI's start; generating a key pair for the named group costs ~1 ms, on the thread pool.
 */
function generateKeyPair(): Promise<KeyPair> {
  // Node supports { group } for 'dh' key pairs; @types/node 20 does not declare that overload.
  const generate = generateKeyPairOnThreadPool as unknown as (type: 'dh', options: { group: string; publicKeyEncoding: { type: 'spki'; format: 'der' } },
    callback: (error: Error | null, publicKey: Buffer, privateKey: KeyObject) => void) => void;
  return new Promise((resolve, reject) => {
    generate('dh', { group: 'modp2', publicKeyEncoding: { type: 'spki', format: 'der' } }, (error, spki, privateKey) => {
      if (error) reject(error);
      else resolve(keyPairOf(spki, privateKey));
    });
  });
}

function keyPairOf(spki: Buffer, privateKey: KeyObject): KeyPair {
  // SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier (the group's p and g), BIT STRING { INTEGER y } }.
  const outer = derRead(spki, 0);
  const algorithm = derRead(spki, outer.contentStart);
  const bitString = derRead(spki, algorithm.end);
  const integer = derRead(spki, bitString.contentStart + 1); // after the unused-bits byte
  const publicValue = unsignedBytes(spki.subarray(integer.contentStart, integer.end));
  const algorithmBytes = spki.subarray(algorithm.start, algorithm.end);
  return {
    publicValue,
    sharedSecret(peer) {
      const y = unsignedBytes(peer);
      const integerBytes = derEncode(0x02, (y[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.of(0), y]) : y);
      const peerKey = createPublicKey({
        key: derEncode(0x30, Buffer.concat([algorithmBytes, derEncode(0x03, Buffer.concat([Buffer.of(0), integerBytes]))])),
        format: 'der', type: 'spki',
      });
      const secret = diffieHellman({ privateKey, publicKey: peerKey });
      // As wide as the prime (128 bytes), leading zeros kept: what the Secret Service side derives its key from.
      return secret.length >= 128 ? secret : Buffer.concat([Buffer.alloc(128 - secret.length), secret]);
    },
  };
}

function unsignedBytes(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return bytes.subarray(start);
}

function derRead(der: Buffer, start: number): { start: number; contentStart: number; end: number } {
  let at = start + 1;
  const first = der[at++]!;
  let length = first;
  if (first & 0x80) {
    length = 0;
    for (let count = first & 0x7f; count > 0; count--) length = length * 256 + der[at++]!;
  }
  return { start, contentStart: at, end: at + length };
}

function derEncode(tag: number, content: Buffer): Buffer {
  const length = content.length;
  const header = length < 0x80 ? Buffer.of(tag, length)
    : length < 0x100 ? Buffer.of(tag, 0x81, length) : Buffer.of(tag, 0x82, length >> 8, length & 0xff);
  return Buffer.concat([header, content]);
}

function encryptedSecret(session: Session, value: Buffer, contentType: string): [string, Buffer, Buffer, string] {
  if (!session.key) return [session.path, Buffer.alloc(0), value, contentType];
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-128-cbc', session.key, iv);
  return [session.path, iv, Buffer.concat([cipher.update(value), cipher.final()]), contentType];
}

/** A GetSecret reply `(oayays)` as the plain secret: decrypted with the session's key, if it has one. */
function storedSecret(session: Session, item: string, reply: unknown[]): StoredSecret {
  const [, parameters, value, contentType] = reply[0] as [string, Buffer, Buffer, string];
  return { value: session.key ? decrypt(session.key, parameters, value) : value, contentType, item };
}

function decrypt(key: Buffer, iv: Buffer, value: Buffer): Buffer {
  const decipher = createDecipheriv('aes-128-cbc', key, iv);
  return Buffer.concat([decipher.update(value), decipher.final()]);
}

function isLockedError(error: unknown): boolean {
  return error instanceof DBusError && error.dbusName === 'org.freedesktop.Secret.Error.IsLocked';
}

function isNoSuchObject(error: unknown): boolean {
  return error instanceof DBusError && /NoSuchObject|UnknownObject|UnknownMethod/.test(error.dbusName);
}
