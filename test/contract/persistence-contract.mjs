// The contract every backend passes before its own tests. Plain JavaScript with node:assert, so the
// same cases run under vitest (test/contract.test.ts) and inside a Windows build of Node under Wine
// (test/windows/lane.mjs), where vitest cannot run.
//
// A case gets `lib` (the package's API, from src or dist, plus msal-node) and `makeSubject()`, which
// returns a fresh location for the backend under test:
//   { options, encrypted, directory, atRest, corruptModes, corrupt(mode) }
// - options: PersistenceOptions for createPersistence / createCachePlugin (a quiet logger included);
// - directory: the folder that holds cachePath; atRest: more folders where the backend keeps data;
// - corrupt(mode): damages the stored cache the way `mode` says ('garbage', 'truncate', 'flip', 'empty').
// A case with `posixOnly` is not run on Windows; its runner reports it as not run there.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

const scopes = ['User.Read'];

function sampleCache(marker, size = 0) {
  // Shaped like an MSAL cache, with a recognisable secret and non-ASCII text.
  const cache = {
    AccessToken: { [`key-${marker}`]: { secret: `secret-${marker}`, note: 'Grüße, 東京, emoji 🔐' } },
    Account: {}, IdToken: {}, RefreshToken: {}, AppMetadata: {},
  };
  if (size > 0) cache.AccessToken.padding = { secret: 'x'.repeat(size) };
  return JSON.stringify(cache);
}

async function filesUnder(directory) {
  const found = [];
  let entries;
  try {
    entries = await readdir(directory, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) found.push(...await filesUnder(path));
    else if (entry.isFile()) found.push(path);
  }
  return found;
}

/** A msal-node public client over `plugin`, answered by `endpoint`. */
export function client(lib, plugin, endpoint) {
  return new lib.PublicClientApplication({
    auth: { clientId: 'contract-client', authority: lib.testAuthority },
    cache: { cachePlugin: plugin },
    system: { networkClient: endpoint.networkClient },
  });
}

function signIn(app, user) {
  return app.acquireTokenByCode({ code: user, scopes, redirectUri: 'http://localhost' });
}

/**
 * Damages a cache file in place (not atomically: this is the damage, not a write of ours): random bytes of
 * the same length, cut in half, emptied, or one byte flipped in the middle.
 */
export async function damageFile(path, mode) {
  const bytes = await readFile(path);
  switch (mode) {
    case 'garbage': await writeFile(path, randomBytes(bytes.length)); break;
    case 'truncate': await truncate(path, Math.floor(bytes.length / 2)); break;
    case 'empty': await truncate(path, 0); break;
    case 'flip': bytes[Math.floor(bytes.length / 2)] ^= 0x55; await writeFile(path, bytes); break;
    default: throw new Error(`unknown damage ${mode}`);
  }
}

function recording(options) {
  const lines = [];
  return {
    lines,
    options: { ...options, loggerOptions: { loggerCallback: (level, message) => { lines.push({ level, message }); }, logLevel: 3 } },
  };
}

/** @type {{ name: string, posixOnly?: boolean, run: (context: { lib: any, makeSubject: () => Promise<any> }) => Promise<void> }[]} */
export const contractCases = [
  {
    name: 'an empty store loads as null and its change token holds still',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const persistence = await lib.createPersistence(subject.options);
      assert.equal(await persistence.load(), null);
      assert.equal(await persistence.changeToken(), await persistence.changeToken());
      assert.equal(persistence.encrypted, subject.encrypted);
    },
  },
  {
    name: 'a saved cache loads back exactly, here and in a second instance (non-ASCII, 1 MB)',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const first = await lib.createPersistence(subject.options);
      const small = sampleCache('round-trip');
      await first.save(small);
      assert.equal(await first.load(), small);
      const big = sampleCache('big', 1024 * 1024);
      await first.save(big);
      const second = await lib.createPersistence(subject.options);
      assert.equal(await second.load(), big);
    },
  },
  {
    name: 'a save by another instance moves the change token; reads alone do not',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const reader = await lib.createPersistence(subject.options);
      const writer = await lib.createPersistence(subject.options);
      const tokens = [await reader.changeToken()];
      for (let i = 0; i < 5; i++) {
        await writer.save(sampleCache(`change-${i}`));
        tokens.push(await reader.changeToken());
        await reader.load();
        assert.equal(await reader.changeToken(), tokens.at(-1), 'a load moved the change token');
      }
      assert.equal(new Set(tokens).size, tokens.length, `every save must give a new token: ${tokens.join(' ')}`);
    },
  },
  {
    name: 'same-size saves, and a delete followed by the same save, each move the change token',
    async run({ lib, makeSubject }) {
      // Same length every time, so the size never tells two versions apart; the file system may hand the
      // freed inode to the next version within one timestamp tick.
      const sameSize = (i) => sampleCache(`same-size-${String(i).padStart(6, '0')}`);
      const subject = await makeSubject();
      const writer = await lib.createPersistence(subject.options);
      const reader = await lib.createPersistence(subject.options);
      const tokens = [await reader.changeToken()];
      for (let i = 0; i < 20; i++) {
        await writer.save(sameSize(i));
        tokens.push(await reader.changeToken());
        assert.notEqual(tokens.at(-1), tokens.at(-2), `save ${i} left the change token where it was`);
      }
      for (let i = 0; i < 10; i++) {
        await writer.delete();
        await writer.save(sameSize(0));
        tokens.push(await reader.changeToken());
        assert.notEqual(tokens.at(-1), tokens.at(-2), `delete and save ${i} left the change token where it was`);
      }
    },
  },
  {
    name: 'a cache directory deleted while the app runs is created again by the next save (0700 on POSIX)',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const persistence = await lib.createPersistence(subject.options);
      await persistence.save(sampleCache('before-rm'));
      await rm(subject.directory, { recursive: true, force: true });
      await persistence.save(sampleCache('after-rm'));
      assert.equal(await persistence.load(), sampleCache('after-rm'));
      const again = await lib.createPersistence(subject.options);
      assert.equal(await again.load(), sampleCache('after-rm'));
      if (process.platform !== 'win32') assert.equal((await stat(subject.directory)).mode & 0o777, 0o700);
    },
  },
  {
    // Windows has no mode bits here: the profile's ACL protects the folder. Not run there (and reported as not run).
    name: 'a cache directory others can write is refused at creation and at load with UNSAFE_PATH [posix only]',
    posixOnly: true,
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const persistence = await lib.createPersistence(subject.options);
      await persistence.save(sampleCache('modes-refused'));
      await chmod(subject.directory, 0o777);
      await assert.rejects(persistence.load(), { code: 'UNSAFE_PATH' });
      await assert.rejects(lib.createPersistence(subject.options), { code: 'UNSAFE_PATH' });
      await chmod(subject.directory, 0o700);
      assert.equal(await persistence.load(), sampleCache('modes-refused'));
    },
  },
  {
    name: 'delete removes the cache, and deleting again reports false',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const persistence = await lib.createPersistence(subject.options);
      await persistence.save(sampleCache('delete'));
      assert.equal(await persistence.delete(), true);
      assert.equal(await persistence.load(), null);
      assert.equal(await persistence.delete(), false);
      const again = await lib.createPersistence(subject.options);
      assert.equal(await again.load(), null);
    },
  },
  {
    name: 'concurrent saves and loads never see a torn cache and leave no temporary files',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const writers = await Promise.all([1, 2, 3].map(() => lib.createPersistence(subject.options)));
      const reader = await lib.createPersistence(subject.options);
      const versions = Array.from({ length: 12 }, (_, i) => sampleCache(`atomic-${i}`, 64 * 1024 + i * 997));
      const valid = new Set(versions);
      await writers[0].save(versions[0]);
      const seen = [];
      let writing = true;
      const reads = (async () => {
        while (writing) {
          seen.push(await reader.load());
          // A reader that yields between reads, as the plugin does. On Windows, MoveFileEx cannot replace a
          // file that is open, and under Wine on a loaded machine an open takes milliseconds: a reader that
          // reopens at once keeps it open nearly all the time and starved the 3 s rename retry in CI runs.
          // There the reader pauses 2 ms between reads (still dozens of reads during the saves).
          await new Promise((resolve) => (process.platform === 'win32' ? setTimeout(resolve, 2) : setImmediate(resolve)));
        }
      })();
      try {
        await Promise.all(versions.map((version, i) => writers[i % writers.length].save(version)));
      } finally {
        writing = false;
        await reads;
      }
      assert.ok(seen.length > 0);
      for (const text of seen) assert.ok(valid.has(text), `a load returned ${text === null ? 'null' : `${text.length} chars that are no saved version`}`);
      assert.ok(valid.has(await reader.load()));
      const leftovers = (await readdir(subject.directory)).filter((name) => name.endsWith('.tmp'));
      assert.deepEqual(leftovers, []);
    },
  },
  {
    name: 'the cache file is 0600 in a 0700 directory (POSIX; on Windows the profile ACL applies)',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const persistence = await lib.createPersistence(subject.options);
      await persistence.save(sampleCache('modes'));
      const file = await stat(persistence.cachePath);
      assert.ok(file.isFile());
      if (process.platform !== 'win32') {
        assert.equal(file.mode & 0o777, 0o600);
        assert.equal((await stat(dirname(persistence.cachePath))).mode & 0o777, 0o700);
      }
    },
  },
  {
    name: 'no token text at rest for encrypted kinds (and the check finds it for plaintext)',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const persistence = await lib.createPersistence(subject.options);
      const marker = randomBytes(12).toString('hex');
      await persistence.save(sampleCache(marker));
      const needles = [Buffer.from(`secret-${marker}`), Buffer.from(`secret-${marker}`, 'utf16le'), Buffer.from(marker)];
      const files = [...await filesUnder(subject.directory), ...(await Promise.all(subject.atRest.map(filesUnder))).flat()];
      assert.ok(files.length > 0, 'nothing found at rest to inspect');
      const holding = [];
      for (const file of files) {
        // A store's own temporary file (gnome-keyring's .temp-*) can be renamed over its keyring file between the
        // listing and this read: the file it became is in the list too.
        const bytes = await readFile(file).catch((error) => { if (error.code === 'ENOENT') return Buffer.alloc(0); throw error; });
        if (needles.some((needle) => bytes.includes(needle))) holding.push(file);
      }
      if (subject.encrypted) assert.deepEqual(holding, [], 'token text found in plain on disk');
      else assert.ok(holding.includes(persistence.cachePath), 'the plaintext backend should hold the text in cachePath');
    },
  },
  {
    name: 'verify passes and leaves nothing behind',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const persistence = await lib.createPersistence({ ...subject.options, verify: false });
      await persistence.save(sampleCache('verify'));
      const before = (await readdir(subject.directory)).sort();
      await persistence.verify();
      assert.deepEqual((await readdir(subject.directory)).sort(), before);
      assert.equal(await persistence.load(), sampleCache('verify'));
    },
  },
  {
    name: 'MSAL round trip: a sign-in persists and a fresh client gets the token silently from the store',
    async run({ lib, makeSubject }) {
      const subject = await makeSubject();
      const endpoint = lib.createTokenEndpoint();
      const first = client(lib, await lib.createCachePlugin(subject.options), endpoint);
      const signedIn = await signIn(first, 'contract-user');
      await signIn(first, 'contract-user-2');
      endpoint.refuse = true;
      const fresh = client(lib, await lib.createCachePlugin(subject.options), endpoint);
      const accounts = await fresh.getTokenCache().getAllAccounts();
      assert.equal(accounts.length, 2);
      const account = accounts.find((a) => a.localAccountId === endpoint.objectIdFor('contract-user'));
      assert.ok(account);
      const silent = await fresh.acquireTokenSilent({ account, scopes });
      assert.equal(silent.accessToken, signedIn.accessToken);
      await fresh.getTokenCache().removeAccount(account);
      const after = client(lib, await lib.createCachePlugin(subject.options), endpoint);
      assert.equal((await after.getTokenCache().getAllAccounts()).length, 1);
    },
  },
  {
    name: 'damaged stored bytes (every way this backend can be damaged) are moved aside; the app signs in again',
    async run({ lib, makeSubject }) {
      for (const mode of (await makeSubject()).corruptModes) {
        const subject = await makeSubject();
        const endpoint = lib.createTokenEndpoint();
        await signIn(client(lib, await lib.createCachePlugin(subject.options), endpoint), 'before-damage');
        await subject.corrupt(mode);
        const log = recording(subject.options);
        const app = client(lib, await lib.createCachePlugin(log.options), endpoint);
        assert.deepEqual(await app.getTokenCache().getAllAccounts(), [], `${mode}: damaged cache must read as empty`);
        const warnings = log.lines.filter((l) => l.level === 1 && l.message.includes('moved aside'));
        assert.equal(warnings.length, 1, `${mode}: expected one warning about the move, got ${JSON.stringify(log.lines.map((l) => l.message))}`);
        assert.ok(!warnings[0].message.includes('secret-'), `${mode}: the warning quoted cache text`);
        await signIn(app, 'after-damage');
        endpoint.refuse = true;
        const fresh = client(lib, await lib.createCachePlugin(subject.options), endpoint);
        const accounts = await fresh.getTokenCache().getAllAccounts();
        assert.deepEqual(accounts.map((a) => a.localAccountId), [endpoint.objectIdFor('after-damage')], mode);
      }
    },
  },
];
