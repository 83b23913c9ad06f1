// Cache directories and files (issue 10): a directory owned by another user or writable by others is refused
// at creation and at every load; the handle actually opened is checked, so a file swapped in later is not
// read; a directory deleted while the app runs is created again; temp names do not collide between copies of
// the code in one process. Other users are real: chown (tests run as root in CI) and setpriv.
import { execFileSync } from 'node:child_process';
import { chmod, chown, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { createCachePlugin, createPersistence } from '../src/index.js';
import {
  createTokenEndpoint, findAccount, forChild, isLinux, newClient, processBackends, repoRoot, signIn, storeOptions, tempDir,
} from './helpers.js';

const nobody = 65534;
const sampleCache = (tag: string) => JSON.stringify({ AccessToken: {}, Account: {}, IdToken: {}, RefreshToken: {}, AppMetadata: {}, tag });

/** A cachePath in a directory that exists already, with the given mode and owner. */
async function existingDirectory(backend: (typeof processBackends)[number], mode: number, owner?: number) {
  const options = await storeOptions(backend);
  const directory = dirname(options.cachePath);
  await mkdir(directory, { recursive: true });
  await chmod(directory, mode);
  if (owner !== undefined) await chown(directory, owner, owner);
  return options;
}

// Another user's files are made with chown, which needs root: CI runs as root, and root gets no exemption
// from these checks (see ownUid in src/files.ts).
describe.runIf(isLinux)('the cache directory must be ours and not writable by others', () => {
  for (const backend of processBackends) {
    describe(backend, () => {
      it('a directory owned by another user is refused at creation', async () => {
        const options = await existingDirectory(backend, 0o700, nobody);
        await expect(createPersistence(options)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
        await expect(createCachePlugin(options)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
      });

      for (const mode of [0o707, 0o702, 0o777, 0o757]) {
        it(`a directory of mode ${mode.toString(8)} (writable by others, not sticky) is refused`, async () => {
          const options = await existingDirectory(backend, mode);
          await expect(createPersistence(options)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
        });
      }

      for (const mode of [0o770, 0o720]) {
        it(`a directory of mode ${mode.toString(8)} is refused when its group is shared (nogroup), accepted when it is our private group`, async () => {
          const shared = await existingDirectory(backend, mode);
          await chown(dirname(shared.cachePath), 0, nobody);
          await expect(createPersistence(shared)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
          // root's group here is "root", gid 0, no other member: a user private group, as Debian and Ubuntu give
          // every user (with umask 002, so other tools make 0775 directories).
          const own = await existingDirectory(backend, mode);
          expect((await stat(dirname(own.cachePath))).gid).toBe(process.getegid!());
          await createPersistence(own);
        });
      }

      it('a sticky directory of ours is accepted, even writable by everyone (mode 1777)', async () => {
        const options = await existingDirectory(backend, 0o1777);
        const endpoint = createTokenEndpoint();
        const { client } = await newClient(options, endpoint);
        await signIn(client, 'sticky-user');
        const fresh = await newClient(options, endpoint);
        expect(findAccount(await fresh.client.getTokenCache().getAllAccounts(), endpoint, 'sticky-user')).toBeDefined();
      });

      it('a sticky directory of another user is refused', async () => {
        const options = await existingDirectory(backend, 0o1777, nobody);
        await expect(createPersistence(options)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
      });

      it('a directory that turns foreign, or writable by others, after creation is refused at the next load', async () => {
        for (const change of ['owner', 'others-writable', 'shared-group-writable'] as const) {
          const options = await storeOptions(backend);
          const persistence = await createPersistence(options);
          await persistence.save(sampleCache('before'));
          const directory = dirname(options.cachePath);
          if (change === 'owner') await chown(directory, nobody, nobody);
          else if (change === 'others-writable') await chmod(directory, 0o703);
          else { await chown(directory, 0, nobody); await chmod(directory, 0o770); }
          await expect(persistence.load(), change).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
        }
      });
    });
  }

  it('an unprivileged user (setpriv) is refused a directory another user owns, and uses its own', async () => {
    const base = await tempDir();
    await chown(base, nobody, nobody);
    const foreign = join(base, 'foreign');
    const own = join(base, 'own');
    await mkdir(foreign, { mode: 0o700 });
    await chown(foreign, nobody - 1, nobody - 1);
    const script = `
      import { createPersistence } from ${JSON.stringify(join(repoRoot, 'dist/esm/index.js'))};
      const open = (directory) => createPersistence({ cachePath: directory + '/msal-cache.json', backend: 'plaintext-file',
        allowPlaintextFallback: true, loggerOptions: { loggerCallback() {} } });
      const results = [];
      for (const directory of ${JSON.stringify([foreign, own])}) {
        try {
          const persistence = await open(directory);
          await persistence.save('{"x":1}');
          results.push((await persistence.load()) === '{"x":1}' ? 'ok' : 'wrong');
        } catch (error) { results.push(error.code ?? String(error)); }
      }
      console.log(JSON.stringify(results));`;
    const output = execFileSync('setpriv', ['--reuid', String(nobody), '--regid', String(nobody), '--clear-groups',
      process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(output.trim())).toEqual(['UNSAFE_PATH', 'ok']);
    expect((await stat(join(own, 'msal-cache.json'))).uid).toBe(nobody);
  });
});

describe.runIf(isLinux)('the file opened at load is checked, not only the path at creation', () => {
  for (const backend of ['plaintext-file', 'safe-storage'] as const) {
    it(`${backend}: a cache file replaced by another user's file after creation is refused at load and not read`, async () => {
      const options = await storeOptions(backend);
      const endpoint = createTokenEndpoint();
      const { client } = await newClient(options, endpoint);
      await signIn(client, 'owner-user');
      // Created while everything was ours: what follows is caught at load, not at creation.
      const persistence = await createPersistence({ ...options, verify: false });
      const fresh = await newClient(options, endpoint);
      const ours = await readFile(options.cachePath);
      // Another user's file with the same bytes swapped in by rename (what a writable directory would allow):
      // only its owner differs, so only the handle's owner check can refuse it.
      const planted = join(dirname(options.cachePath), 'planted');
      await writeFile(planted, ours, { mode: 0o644 });
      await chown(planted, nobody, nobody);
      await rename(planted, options.cachePath);
      await expect(persistence.load()).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
      await expect(fresh.client.getTokenCache().getAllAccounts()).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
      // Refused, not treated as corruption: nothing moved aside, the file is where it was.
      expect((await readdir(dirname(options.cachePath))).filter((name) => name.includes('.corrupt-'))).toEqual([]);
      expect((await lstat(options.cachePath)).uid).toBe(nobody);
    });
  }

  it('a FIFO swapped in for the cache file is refused without blocking', async () => {
    const options = await storeOptions('plaintext-file');
    const persistence = await createPersistence(options);
    await persistence.save(sampleCache('before-fifo'));
    await rm(options.cachePath);
    execFileSync('mkfifo', ['-m', '600', options.cachePath]);
    await expect(persistence.load()).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });

  it('a symlink swapped in for the cache file is refused at load', async () => {
    const options = await storeOptions('plaintext-file');
    const persistence = await createPersistence(options);
    await persistence.save(sampleCache('before-link'));
    const elsewhere = join(await tempDir(), 'elsewhere.json');
    await writeFile(elsewhere, sampleCache('elsewhere'), { mode: 0o600 });
    await rm(options.cachePath);
    execFileSync('ln', ['-s', elsewhere, options.cachePath]);
    await expect(persistence.load()).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });

  it('a file of ours readable by others (0644, as msal-node-extensions may leave it) still loads', async () => {
    const options = await storeOptions('plaintext-file');
    const persistence = await createPersistence(options);
    await persistence.save(sampleCache('shared-mode'));
    await chmod(options.cachePath, 0o644);
    expect(await persistence.load()).toBe(sampleCache('shared-mode'));
    await persistence.save(sampleCache('rewritten'));
    expect((await stat(options.cachePath)).mode & 0o777).toBe(0o600);
  });
});

describe('a cache directory deleted while the app runs is created again', () => {
  for (const backend of processBackends) {
    describe.runIf(backend !== 'libsecret' || isLinux)(backend, () => {
      it('by the next sign-in through the plugin and msal client, 0700, with nothing lost from that sign-in', async () => {
        const options = await storeOptions(backend);
        const endpoint = createTokenEndpoint();
        const { client } = await newClient(options, endpoint);
        await signIn(client, 'before-delete');
        const directory = dirname(options.cachePath);
        await rm(directory, { recursive: true });
        await signIn(client, 'after-delete');
        const created = await stat(directory);
        expect(created.isDirectory()).toBe(true);
        if (process.platform !== 'win32') expect(created.mode & 0o777).toBe(0o700);
        endpoint.refuse = true;
        const fresh = await newClient(options, endpoint);
        const accounts = await fresh.client.getTokenCache().getAllAccounts();
        expect(findAccount(accounts, endpoint, 'after-delete')).toBeDefined();
        const silent = await fresh.client.acquireTokenSilent({ account: findAccount(accounts, endpoint, 'after-delete')!, scopes: ['User.Read'] });
        expect(silent.accessToken).toBeTruthy();
      });

      it('by a plain save, and a load in between reads no cache instead of failing', async () => {
        const options = await storeOptions(backend);
        const persistence = await createPersistence(options);
        await persistence.save(sampleCache('first'));
        await rm(dirname(options.cachePath), { recursive: true });
        if (backend !== 'libsecret') expect(await persistence.load()).toBeNull();
        await persistence.save(sampleCache('second'));
        expect(await persistence.load()).toBe(sampleCache('second'));
      });
    });
  }
});

describe('temp names do not collide between copies of the code in one process', () => {
  it('8 worker threads (one pid, each its own copy of the module) save to one path at once: every save succeeds', async () => {
    const options = forChild(await storeOptions('plaintext-file'));
    const source = `
      import { workerData, parentPort } from 'node:worker_threads';
      const { createPersistence } = await import(workerData.entry);
      const persistence = await createPersistence(workerData.options);
      const failures = [];
      for (let i = 0; i < 40; i++) {
        try { await persistence.save(JSON.stringify({ worker: workerData.id, i })); }
        catch (error) { failures.push(error.code ?? String(error)); }
      }
      parentPort.postMessage(failures);`;
    const entry = pathToFileURL(join(repoRoot, 'dist', 'esm', 'index.js')).href;
    const results = await Promise.all(Array.from({ length: 8 }, (_, id) => new Promise<string[]>((resolve, reject) => {
      const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(source)}`), { workerData: { entry, options, id } });
      worker.once('message', resolve);
      worker.once('error', reject);
    })));
    expect(results.flat()).toEqual([]);
    expect((await readdir(dirname(options.cachePath))).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    expect(JSON.parse(await readFile(options.cachePath, 'utf8'))).toHaveProperty('worker');
  });
});
