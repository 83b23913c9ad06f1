// Mistakes in the options of msal-keychain-cache/distributed fail at creation, typed (INVALID_OPTION, UNSAFE_PATH,
// ACCESS_DENIED), with a message that names what failed and the fix, and leave nothing behind: a misspelt option
// name, a relative or '~' store directory, a directory this user cannot write (as another user, through setpriv:
// the tests run as root, and root passes every permission check), a partition key built from a missing id.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as distributed from '../src/distributed/index.js';
import {
  createBlobCipher, createFileStore, createPartitionedCachePlugin, createPostgresStore, createRedisStore, createSessionStore, keyFromPersistence,
  partitionKeys, type PartitionStore,
} from '../src/distributed/index.js';
import { KeychainCacheError } from '../src/index.js';
import { isLinux, repoRoot, tempDir } from './helpers.js';

const nobody = 65534;
const key = randomBytes(32);
const cipher = createBlobCipher({ keys: { k1: key }, currentKeyId: 'k1' });
const redisClient = { sendCommand: async () => null };
const pool = { query: async () => ({ rows: [], rowCount: 0 }) };
/** A store that keeps nothing: enough for the plugin's checks, which run before any access. */
const nullStore: PartitionStore = { get: async () => null, compareAndSet: async () => null, delete: async () => false };
// Every method a persistence has, doing nothing: what keyFromPersistence checks before it uses one.
const persistenceShape = {
  load: async () => null, save: async () => undefined, delete: async () => false, changeToken: async () => 'x',
  quarantine: async () => '', verify: async () => undefined, kind: 'plaintext-file', encrypted: false, location: 'nowhere',
};

/** An app's own persistence (as createPersistence returns one), its file in a fresh directory. */
async function appPersistence() {
  const directory = await tempDir();
  return {
    kind: 'plaintext-file' as const, encrypted: true, cachePath: join(directory, 'key.json'), location: 'an app store',
    load: async () => null, save: async () => undefined, delete: async () => false, changeToken: async () => 'token',
    quarantine: async () => '', verify: async () => undefined,
  };
}

/** What `run` threw (or rejected with); fails the test when it did not. */
async function failure(run: () => unknown): Promise<KeychainCacheError> {
  let caught: unknown;
  try {
    await run();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a KeychainCacheError').toBeInstanceOf(KeychainCacheError);
  return caught as KeychainCacheError;
}

interface Factory {
  name: string;
  /** Calls the factory with valid options and `extra` on top. */
  call(extra: Record<string, unknown>): Promise<unknown>;
  /** Its option names, as the error lists them. */
  options: string[];
  /** Misspellings, each with the option it was meant to be. */
  typos: [string, string][];
  /** Its numeric options, and values below the lowest they take. */
  numbers: [string, unknown[]][];
}

const wrongNumbers = [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '100', 0.5, null];

/** Every exported factory that takes an options object. */
const factories: Factory[] = [
  {
    name: 'createPartitionedCachePlugin',
    call: async (extra) => createPartitionedCachePlugin({ store: nullStore, cipher, partitionKey: 'p', ...extra }),
    options: ['store', 'partitionKey', 'cipher', 'allowPlaintext', 'ttlMs', 'maxAttempts', 'memoryEntries', 'loggerOptions'],
    typos: [['ttlMS', 'ttlMs'], ['partitionkey', 'partitionKey'], ['maxAttempt', 'maxAttempts'], ['allowPlainText', 'allowPlaintext']],
    numbers: [['ttlMs', [...wrongNumbers, 999]], ['maxAttempts', wrongNumbers], ['memoryEntries', [-1, Number.NaN, Number.POSITIVE_INFINITY, '100', 0.5, null]]],
  },
  {
    name: 'createSessionStore',
    call: async (extra) => createSessionStore({ request: { session: {} }, ...extra }),
    options: ['request', 'field', 'maxBytes', 'tombstoneTtlMs'],
    typos: [['maxbytes', 'maxBytes'], ['fields', 'field']],
    numbers: [['maxBytes', [...wrongNumbers, 255]], ['tombstoneTtlMs', [...wrongNumbers, 999]]],
  },
  {
    name: 'createRedisStore',
    call: async (extra) => createRedisStore({ client: redisClient, ...extra }),
    options: ['client', 'keyPrefix', 'timeoutMs', 'tombstoneTtlMs'],
    typos: [['keyprefix', 'keyPrefix'], ['timeoutms', 'timeoutMs'], ['timeout', 'timeoutMs']],
    numbers: [['timeoutMs', [...wrongNumbers, 2 ** 31]], ['tombstoneTtlMs', [...wrongNumbers, 999]]],
  },
  {
    name: 'createPostgresStore',
    call: async (extra) => createPostgresStore({ pool, ...extra }),
    options: ['pool', 'table', 'tombstoneTtlMs'],
    typos: [['tabel', 'table'], ['Table', 'table']],
    numbers: [['tombstoneTtlMs', [...wrongNumbers, 999]]],
  },
  {
    name: 'createFileStore',
    call: async (extra) => createFileStore({ directory: join(await tempDir(), 'store'), ...extra }),
    options: ['directory', 'tombstoneTtlMs', 'platform'],
    typos: [['tombstoneTTLMs', 'tombstoneTtlMs'], ['directoy', 'directory']],
    numbers: [['tombstoneTtlMs', [...wrongNumbers, 999]]],
  },
  {
    name: 'createBlobCipher',
    call: async (extra) => createBlobCipher({ keys: { a: key, b: randomBytes(32) }, currentKeyId: 'a', ...extra }),
    options: ['keys', 'currentKeyId'],
    typos: [['currentKeyID', 'currentKeyId'], ['key', 'keys']],
    numbers: [],
  },
  {
    name: 'keyFromPersistence',
    call: async (extra) => keyFromPersistence(await appPersistence(), extra),
    options: ['allowUnencrypted'],
    typos: [['allowUnEncrypted', 'allowUnencrypted'], ['allowUnencrypt', 'allowUnencrypted']],
    numbers: [],
  },
];

describe('every /distributed factory refuses an option name it does not know (INVALID_OPTION, at creation)', () => {
  it('the table covers every function msal-keychain-cache/distributed exports that takes options', () => {
    // Not factories of options: a class, and a function of two cache texts.
    const others = ['BlobUnreadableError', 'mergeCaches'];
    const exported = Object.entries(distributed).filter(([name, value]) => typeof value === 'function' && !others.includes(name)).map(([name]) => name);
    expect(exported.sort()).toEqual(factories.map((factory) => factory.name).sort());
  });

  for (const factory of factories) {
    describe(factory.name, () => {
      it('works with valid options (the base every case below adds one mistake to)', async () => {
        await expect(factory.call({})).resolves.toBeDefined();
      });

      it('an unknown or misspelt option name: named, the likely one suggested, every valid one listed', async () => {
        for (const [typo, meant] of factory.typos) {
          const error = await failure(() => factory.call({ [typo]: 5 }));
          expect(error.code).toBe('INVALID_OPTION');
          expect(error.message).toContain(`Unknown ${factory.name} option '${typo}'.`);
          expect(error.message).toContain(`Did you mean '${meant}'?`);
          expect(error.message).toContain(`Valid options: ${factory.options.join(', ')}.`);
        }
        const unrelated = await failure(() => factory.call({ somethingElseEntirely: true }));
        expect(unrelated).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringContaining("option 'somethingElseEntirely'") });
        expect(unrelated.message).not.toContain('Did you mean');
      });

      it('options that are not an object: INVALID_OPTION saying what it needs, never a TypeError', async () => {
        const call = factory.name === 'keyFromPersistence'
          ? async (options: unknown) => keyFromPersistence(await appPersistence(), options as never)
          : (options: unknown) => (distributed[factory.name as keyof typeof distributed] as (options: unknown) => unknown)(options);
        // keyFromPersistence's options may be left out; every other factory needs its object.
        for (const options of [...(factory.name === 'keyFromPersistence' ? [] : [undefined]), null, 'options', 42, []]) {
          const error = await failure(() => call(options));
          expect(error.code).toBe('INVALID_OPTION');
          expect(error.message).toMatch(new RegExp(`^${factory.name} needs an options object: .*; got (undefined|null|the string 'options'|42|an array)\\.$`));
        }
      });

      if (factory.numbers.length > 0) {
        it('numeric options take whole milliseconds (or counts) in range only: 0, -1, NaN, Infinity, \'100\', 0.5, null', async () => {
          for (const [option, values] of factory.numbers) {
            for (const value of values) {
              const error = await failure(() => factory.call({ [option]: value }));
              expect(error.code, `${option}: ${String(value)}`).toBe('INVALID_OPTION');
              expect(error.message).toMatch(new RegExp(`^${option} must be a whole number .*; got `));
            }
          }
        });
      }
    });
  }

  it('memoryEntries 0 (off), and the smallest value of every other numeric option, are accepted', async () => {
    await factories[0]!.call({ memoryEntries: 0, ttlMs: 1000, maxAttempts: 1 });
    await factories[1]!.call({ maxBytes: 256, tombstoneTtlMs: 1000 });
    await factories[2]!.call({ timeoutMs: 1, tombstoneTtlMs: 1000 });
    await factories[3]!.call({ tombstoneTtlMs: 1000 });
    await factories[4]!.call({ tombstoneTtlMs: 1000 });
  });

  it('flags take true or false only, other values of the wrong type say what they got (with the right article)', async () => {
    for (const [call, pattern] of [
      [() => createPartitionedCachePlugin({ store: nullStore, partitionKey: 'p', allowPlaintext: 'true' as never }), /^allowPlaintext must be true or false; got the string 'true'\.$/],
      [async () => keyFromPersistence(await appPersistence(), { allowUnencrypted: 1 as never }), /^allowUnencrypted must be true or false; got 1\.$/],
      [() => createRedisStore({ client: redisClient, keyPrefix: 5 as never }), /^keyPrefix must be a string, .*; got a number\.$/],
      [() => createRedisStore({ client: redisClient, keyPrefix: {} as never }), /got an object\.$/],
      [() => createRedisStore({ client: 'redis://localhost' as never }), /^createRedisStore needs \{ client \}: .*; got a string\.$/],
      [() => createRedisStore({ client: {} as never }), /got an object with none of sendCommand and call\.$/],
      [() => createPostgresStore({ pool, table: 7 as never }), /^table must be a plain SQL identifier .*; got 7\.$/],
      [() => createPostgresStore({ pool, table: 'x; drop table y' }), /got the string 'x; drop table y'\.$/],
      [() => createPartitionedCachePlugin({ store: { ...nullStore, version: 5 as never }, cipher, partitionKey: 'p' }), /^store\.version must be a function .*; got a number\.$/],
      [() => createPartitionedCachePlugin({ store: { ...nullStore, touch: {} as never }, cipher, partitionKey: 'p' }), /got an object\.$/],
      [() => createPartitionedCachePlugin({ store: nullStore, cipher, partitionKey: 'p', loggerOptions: { logleve: 3 } as never }), /Unknown loggerOptions option 'logleve'/],
      [async () => keyFromPersistence({ load: async () => null, save: async () => undefined } as never), /^keyFromPersistence needs a persistence .*; got an object without delete, changeToken, quarantine, verify\.$/],
      [async () => keyFromPersistence({ ...persistenceShape, cachePath: 'key.json' } as never), /^keyFromPersistence needs a persistence .*; got one whose cachePath is not an absolute path\.$/],
      [async () => keyFromPersistence(undefined as never), /^keyFromPersistence needs a persistence .*; got undefined\.$/],
    ] as [() => unknown, RegExp][]) {
      const error = await failure(call);
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toMatch(pattern);
    }
  });
});

describe('createBlobCipher says what a wrong key is, in English, never what it holds', () => {
  it.each([
    [{ a: {} }, "Key 'a' is an object;"],
    [{ a: [] }, "Key 'a' is an array;"],
    [{ a: null }, "Key 'a' is null;"],
    [{ a: 12345 }, "Key 'a' is a number;"],
    [{ a: true }, "Key 'a' is a boolean;"],
    [{ a: undefined }, "Key 'a' is undefined (is the environment variable or secret that holds it set?);"],
  ])('%j', (keys, start) => {
    let caught: unknown;
    try { createBlobCipher({ keys: keys as never, currentKeyId: 'a' }); } catch (error) { caught = error; }
    expect(caught).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringContaining(start) });
    expect((caught as Error).message).toContain('each key must be 32 bytes');
    expect((caught as Error).message).not.toContain('12345');
  });

  it('keys that are not an object, none at all, and a currentKeyId that is not a string', () => {
    for (const [options, pattern] of [
      [{ keys: [key], currentKeyId: '0' }, /^keys must be an object of key id → 32-byte key, .*; got an array\.$/],
      [{ keys: 'base64', currentKeyId: 'a' }, /got a string\.$/],
      [{ currentKeyId: 'a' }, /got undefined\.$/],
      [{ keys: {}, currentKeyId: 'a' }, /^keys is empty/],
      [{ keys: { a: key } }, /^currentKeyId must be the id \(a string\) of the key new blobs are sealed with, one of a; got undefined\.$/],
      [{ keys: { 5: key }, currentKeyId: 5 }, /one of 5; got 5\.$/],
      [{ keys: { a: key }, currentKeyId: 'b' }, /^currentKeyId 'b' is not one of the keys \(a\)\.$/],
    ] as [unknown, RegExp][]) {
      expect(() => createBlobCipher(options as never), JSON.stringify(options)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(pattern) }));
    }
  });
});

describe('createFileStore takes an absolute directory only, as cachePath is taken (INVALID_OPTION), creating nothing', () => {
  it('a relative directory: refused, with the absolute path it would have been; nothing made in the working directory', async () => {
    const name = `rel-${randomBytes(4).toString('hex')}`;
    const error = await failure(() => createFileStore({ directory: `${name}/dir` }));
    expect(error.code).toBe('INVALID_OPTION');
    expect(error.message).toContain(`directory '${name}/dir' is relative, so every working directory would get a store of its own.`);
    expect(error.message).toContain(`Use an absolute path (e.g. '${resolve(name, 'dir')}')`);
    expect(existsSync(resolve(name))).toBe(false);
    for (const relative of ['.', './token-caches', '..', 'token-caches']) {
      expect((await failure(() => createFileStore({ directory: relative }))).message).toContain('is relative');
    }
  });

  it("a leading '~' (Node does not expand it): refused, the fix is path.join(os.homedir(), ...); no '~' folder made", async () => {
    const name = `tilde-${randomBytes(4).toString('hex')}`;
    for (const directory of [`~/${name}`, '~']) {
      const error = await failure(() => createFileStore({ directory }));
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toContain(`directory '${directory}' starts with '~', which Node does not expand`);
      expect(error.message).toContain('path.join(os.homedir(), ');
    }
    expect((await failure(() => createFileStore({ directory: `~/${name}` }))).message).toContain(`path.join(os.homedir(), "${name}")`);
    expect(existsSync(resolve('~', name))).toBe(false);
  });

  it('a missing, empty, non-string or NUL-holding directory, or an unknown platform', async () => {
    const base = await tempDir();
    for (const [options, pattern] of [
      [{}, /^createFileStore needs \{ directory \}: the absolute path of a folder .*; got undefined\.$/],
      [{ directory: '' }, /; got an empty string\.$/],
      [{ directory: '   ' }, /; got the string ' {3}'\.$/],
      [{ directory: 42 }, /; got 42\.$/],
      [{ directory: ['/var/lib/x'] }, /; got an array\.$/],
      [{ directory: `${base}/a\0b` }, /^directory contains a NUL character/],
      [{ directory: join(base, 'x'), platform: 'Linux' }, /^platform must be one of aix, .*linux.*; got the string 'Linux'\.$/],
    ] as [unknown, RegExp][]) {
      const error = await failure(() => createFileStore(options as never));
      expect(error.code, JSON.stringify(options)).toBe('INVALID_OPTION');
      expect(error.message).toMatch(pattern);
    }
    expect(await readdir(base)).toEqual([]);
  });

  it('an unknown option fails before the directory is made', async () => {
    const base = await tempDir();
    await failure(() => createFileStore({ directory: join(base, 'new', 'store'), tombstoneTTLMs: 5 } as never));
    expect(await readdir(base)).toEqual([]);
  });

  it.runIf(isLinux && process.geteuid?.() === 0)('a file, a symlink, a folder of another user or one others can write: refused at creation, the fix in terms of directory', async () => {
    const base = await tempDir();
    await writeFile(join(base, 'a-file'), '');
    await mkdir(join(base, 'real'), { mode: 0o700 });
    await symlink(join(base, 'real'), join(base, 'link'));
    await mkdir(join(base, 'foreign'), { mode: 0o700 });
    await chown(join(base, 'foreign'), nobody, nobody);
    await mkdir(join(base, 'open'), { mode: 0o700 });
    await chmod(join(base, 'open'), 0o777);
    const cases: [string, string, RegExp][] = [
      ['a-file', 'INVALID_OPTION', /a-file is a file, not a directory/],
      [join('a-file', 'store'), 'INVALID_OPTION', /a-file is a file, not a directory\. Choose a directory whose parents are all directories\./],
      ['link', 'UNSAFE_PATH', /Set directory to a real directory/],
      ['foreign', 'UNSAFE_PATH', /belongs to user id 65534.*Set directory to a folder you own, or give it to the user running this app/],
      ['open', 'UNSAFE_PATH', /its mode is 0777.*or set directory to a folder only you can write\./],
    ];
    for (const [directory, code, pattern] of cases) {
      const error = await failure(() => createFileStore({ directory: join(base, directory) }));
      expect(error.code, directory).toBe(code);
      expect(error.message).toMatch(pattern);
      expect(error.message).not.toMatch(/cachePath|defaultCachePath/);
    }
    // Nothing was added anywhere (no probe file, no store file, no folder).
    expect((await readdir(base)).sort()).toEqual(['a-file', 'foreign', 'link', 'open', 'real']);
    for (const folder of ['real', 'foreign', 'open']) expect(await readdir(join(base, folder))).toEqual([]);
  });

  it.runIf(isLinux && process.geteuid?.() === 0)('after creation too, a directory that turned foreign is refused with the fix in terms of directory', async () => {
    const directory = join(await tempDir(), 'store');
    const store = await createFileStore({ directory });
    await store.compareAndSet('account:a', Buffer.from('x'), null);
    await chown(directory, nobody, nobody);
    const error = await failure(() => store.get('account:a'));
    expect(error.code).toBe('UNSAFE_PATH');
    expect(error.message).toMatch(/belongs to user id 65534.*Set directory to a folder you own/);
    expect(error.message).not.toMatch(/cachePath/);
  });

  it('a creation that works leaves no probe file, and the store works', async () => {
    const directory = join(await tempDir(), 'new', 'store');
    const store = await createFileStore({ directory });
    expect(await readdir(directory)).toEqual([]);
    expect(await store.compareAndSet('account:a', Buffer.from('x'), null)).toEqual(expect.any(String));
    expect((await store.get('account:a'))?.value.toString()).toBe('x');
  });
});

/** Runs `script` (an ES module, the /distributed entry of dist imported as `distributed`) as `uid`; returns its last line, parsed. */
function runAs(uid: number, script: string): unknown {
  const source = `const distributed = await import(${JSON.stringify(join(repoRoot, 'dist/esm/distributed/index.js'))});\n${script}`;
  const output = execFileSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', source],
    { encoding: 'utf8', env: { PATH: process.env.PATH }, timeout: 60_000 });
  return JSON.parse(output.trim().split('\n').at(-1)!);
}

/** createFileStore for each directory as `uid`, in one process: each outcome's code (or 'ok') and message. */
function createFileStoresAs(uid: number, directories: string[], umask?: number): { code: string; message: string }[] {
  return runAs(uid, `
    ${umask === undefined ? '' : `process.umask(${umask});`}
    const results = [];
    for (const directory of ${JSON.stringify(directories)}) {
      try {
        const store = await distributed.createFileStore({ directory });
        await store.compareAndSet('account:a', Buffer.from('x'), null);
        results.push({ code: 'ok', message: '' });
      } catch (error) { results.push({ code: error.code ?? String(error), message: error.message }); }
    }
    console.log(JSON.stringify(results));`) as { code: string; message: string }[];
}

// dist is what the other user runs: `npm test` builds it first (run `npm run build` before this file alone).
describe.runIf(isLinux && process.geteuid?.() === 0)('createFileStore on a directory this user cannot use fails at creation, not at the first sign-in (as uid 65534)', () => {
  it('read-only, untraversable, under a read-only parent, another user\'s: ACCESS_DENIED or UNSAFE_PATH naming the component and the fix', async () => {
    const base = await tempDir();
    await chmod(base, 0o755);
    await mkdir(join(base, 'read-only'), { mode: 0o500 });
    await mkdir(join(base, 'closed', 'inner'), { recursive: true, mode: 0o700 });
    await chmod(join(base, 'closed'), 0o600);
    await mkdir(join(base, 'own'), { mode: 0o700 });
    execFileSync('chown', ['-R', `${nobody}:${nobody}`, base]);
    await mkdir(join(base, 'roots'), { mode: 0o700 });
    const [readOnly, closed, under, roots, own] = createFileStoresAs(nobody, [
      join(base, 'read-only'),
      join(base, 'closed', 'inner'),
      join(base, 'read-only', 'new', 'deeper'),
      join(base, 'roots'),
      join(base, 'own'),
    ]);
    expect(readOnly).toMatchObject({ code: 'ACCESS_DENIED', message: expect.stringMatching(
      /^The cache directory .*read-only cannot be used: .*read-only \(mode 0500, owner user id 65534\) does not let this user \(user id 65534\) read and write files in it: the cache could never be saved.*Run chmod u\+rwx ".*read-only", or choose a directory you own, e\.g\. '\/var\/lib\/my-web-app\/token-caches'/) });
    expect(closed).toMatchObject({ code: 'ACCESS_DENIED', message: expect.stringMatching(/closed \(mode 0600, owner user id 65534\) does not let this user \(user id 65534\) enter it.*chmod u\+x/) });
    expect(under).toMatchObject({ code: 'ACCESS_DENIED', message: expect.stringMatching(/read-only \(mode 0500.*create .*read-only\/new in it.*chmod u\+wx/) });
    expect(roots).toMatchObject({ code: 'UNSAFE_PATH', message: expect.stringMatching(/roots: it belongs to user id 0.*Set directory to a folder you own/) });
    expect(own).toEqual({ code: 'ok', message: '' });
    for (const result of [readOnly, closed, under, roots]) expect(result!.message).not.toMatch(/cachePath|defaultCachePath/);
    // Nothing was made where creation failed; the probe file is gone where it worked.
    expect(await readdir(join(base, 'read-only'))).toEqual([]);
    expect((await readdir(join(base, 'own'))).filter((name) => name.startsWith('.probe'))).toEqual([]);
  }, 60_000);

  it('a creation that fails after making folders removes what it made, and only that', async () => {
    const base = await tempDir();
    await chmod(base, 0o755);
    await mkdir(join(base, 'kept'), { mode: 0o700 });
    await writeFile(join(base, 'kept', 'other-file'), 'x');
    execFileSync('chown', ['-R', `${nobody}:${nobody}`, base]);
    // A umask that takes the owner's write bit: every folder mkdir makes is 0500, so the one below it (or the probe
    // file) cannot be made: the kernel refuses after this call made folders of its own.
    const [nested, single, inKept] = createFileStoresAs(nobody, [
      join(base, 'made', 'deeper', 'store'),
      join(base, 'single'),
      join(base, 'kept', 'new', 'store'),
    ], 0o277);
    expect(nested).toMatchObject({ code: 'ACCESS_DENIED', message: expect.stringMatching(/made \(mode 0500.*create .*made\/deeper in it/) });
    expect(single).toMatchObject({ code: 'ACCESS_DENIED', message: expect.stringMatching(/single \(mode 0500.*read and write files in it/) });
    expect(inKept).toMatchObject({ code: 'ACCESS_DENIED' });
    expect((await readdir(base)).sort()).toEqual(['kept']);
    expect(await readdir(join(base, 'kept'))).toEqual(['other-file']);
  }, 60_000);
});

describe('partitionKeys helpers check their input: INVALID_OPTION naming the helper and the fix, never a TypeError or a shared key', () => {
  it.each([
    ['forAccount(undefined)', () => partitionKeys.forAccount(undefined as never), /^partitionKeys\.forAccount needs the signed-in account \(its AccountInfo\) or its homeAccountId, a non-empty string; got undefined\. No signed-in account\? Do not build a partition key before sign-in/],
    ['forAccount(null)', () => partitionKeys.forAccount(null as never), /got null\. No signed-in account\?/],
    ['forAccount({})', () => partitionKeys.forAccount({} as never), /^partitionKeys\.forAccount got an object with no homeAccountId: no signed-in account there\. Pass msal's AccountInfo/],
    ['forAccount({ homeAccountId: "" })', () => partitionKeys.forAccount({ homeAccountId: '' }), /needs the account's homeAccountId, a non-empty string; got an empty string\./],
    ['forAccount({ homeAccountId: 5 })', () => partitionKeys.forAccount({ homeAccountId: 5 } as never), /homeAccountId, a non-empty string; got 5\./],
    ["forAccount('')", () => partitionKeys.forAccount(''), /got an empty string\. No signed-in account\?/],
    ["forAccount(' ')", () => partitionKeys.forAccount(' '), /got the string ' '\./],
    ["forAccount('undefined')", () => partitionKeys.forAccount('undefined'), /got 'undefined', which holds what JavaScript writes for a missing value/],
    ["forAccount('oid.undefined')", () => partitionKeys.forAccount('oid.undefined'), /got 'oid\.undefined'/],
    ["forAccount('[object Object]')", () => partitionKeys.forAccount(String({})), /got '\[object Object\]'/],
    ['forAccount([])', () => partitionKeys.forAccount([] as never), /got an array\./],
    ['forApp()', () => (partitionKeys.forApp as () => string)(), /^partitionKeys\.forApp needs clientId, a non-empty string; got undefined\. Pass the app's client id and the tenant id/],
    ["forApp('id', undefined)", () => partitionKeys.forApp('id', undefined as never), /^partitionKeys\.forApp needs tenantId, a non-empty string; got undefined\./],
    ["forApp('', 'tenant')", () => partitionKeys.forApp('', 'tenant'), /needs clientId, a non-empty string; got an empty string/],
    ["forApp('id', 'null')", () => partitionKeys.forApp('id', 'null'), /needs tenantId.*got 'null'/],
    ['forOnBehalfOf(5)', () => partitionKeys.forOnBehalfOf(5 as never), /^partitionKeys\.forOnBehalfOf needs the incoming assertion \(the access token the API received\), a non-empty string; got 5\. Pass the bearer token/],
    ['forOnBehalfOf(undefined)', () => partitionKeys.forOnBehalfOf(undefined as never), /got undefined\./],
    ["forOnBehalfOf('')", () => partitionKeys.forOnBehalfOf(''), /got an empty string\./],
    ["forOnBehalfOf('undefined')", () => partitionKeys.forOnBehalfOf('undefined'), /got 'undefined'\./],
  ])('%s', (_name, call, pattern) => {
    let caught: unknown;
    try { call(); } catch (error) { caught = error; }
    expect(caught).toBeInstanceOf(KeychainCacheError);
    expect(caught).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringMatching(pattern) });
  });

  it('keys users already have keep their form', () => {
    expect(partitionKeys.forAccount('oid.tid')).toBe('account:oid.tid');
    expect(partitionKeys.forAccount({ homeAccountId: 'oid-b2c_1_susi.tid' })).toBe('account:oid-b2c_1_susi.tid');
    expect(partitionKeys.forApp('client', 'tenant')).toBe('app:client.tenant');
    expect(partitionKeys.forApp('client', 'contoso.onmicrosoft.com')).toBe('app:client.contoso.onmicrosoft.com');
    expect(partitionKeys.forOnBehalfOf('eyJ.assertion.sig')).toMatch(/^obo:[0-9a-f]{64}$/);
    expect(partitionKeys.forOnBehalfOf('eyJ.assertion.sig')).toBe(partitionKeys.forOnBehalfOf('eyJ.assertion.sig'));
  });

  it("a token's text is never in the message", () => {
    // Only the whole string is judged for an assertion: a real token passes, and nothing of it is shown.
    expect(() => partitionKeys.forOnBehalfOf('eyJ0eXAi.null.secret')).not.toThrow();
  });
});

describe('the plugin refuses a partition key built from a missing id, at creation and per request', () => {
  const plugin = (partitionKey: unknown) => () => createPartitionedCachePlugin({ store: nullStore, cipher, partitionKey: partitionKey as string });

  it.each([
    'account:undefined', 'app:undefined.undefined', 'app:id.undefined', 'account:null', 'account:[object Object]', 'obo:NaN',
    'undefined', 'account:', 'app:id.', 'user:42:undefined:x',
  ])('%s', (partitionKey) => {
    expect(plugin(partitionKey)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION',
      message: expect.stringMatching(new RegExp(`^partitionKey '${partitionKey.replace(/[[\].]/g, '\\$&')}' cannot be used: .*share one partition\\. Use partitionKeys\\.forAccount\\(account\\) for a signed-in user`)) }));
  });

  it('and one that is not a string, or empty', () => {
    for (const partitionKey of ['', '  ', 5, {}, null]) {
      expect(plugin(partitionKey), String(partitionKey)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(/^partitionKey .*cannot be used: it is (empty|a number, not a string|an object, not a string|null, not a string)\./) }));
    }
  });

  it('keeps every key that was valid before: its own formats, and words that merely contain null or undefined', () => {
    for (const partitionKey of ['p', 'user:rotate', 'user:hostile', 'account:oid.tid', 'tenant:a.b', 'account:nullable-user', 'undefinedness',
      'app:client.tenant', `obo:${'0'.repeat(64)}`, 'user:42', 'a::b']) {
      expect(plugin(partitionKey), partitionKey).not.toThrow();
    }
  });

  it('per request: a sign-in (no partitionKey) whose account has a placeholder or empty homeAccountId is not filed under it', async () => {
    const signInPlugin = createPartitionedCachePlugin({ store: nullStore, cipher });
    for (const homeAccountId of ['undefined', '', 'oid.null']) {
      const cache = JSON.stringify({ Account: { one: { home_account_id: homeAccountId, environment: 'login', realm: 't', username: 'u' } } });
      const context = { cacheHasChanged: true, tokenCache: { serialize: () => cache, deserialize: () => undefined } };
      const error = await failure(() => signInPlugin.afterCacheAccess(context as never));
      expect(error.code, homeAccountId).toBe('INVALID_OPTION');
      expect(error.message).toMatch(/^Not saved: no partitionKey was given and the account this request wrote has an empty or placeholder homeAccountId.*Give the plugin a partitionKey\.$/);
    }
  });
});
