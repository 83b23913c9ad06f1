// Start-up verifies with the work the start needs anyway (issue 13): a stored cache that loads is the proof that
// the backend works, and the first read reuses that text. Observed for real: the plaintext store's directory is
// watched (inotify) for the throwaway file, the Secret Service's calls are counted on the bus with dbus-monitor,
// and a child process's syscalls with strace. No timings here: the benchmark measures the start-up.
import { execFileSync, spawn } from 'node:child_process';
import { watch } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPersistence } from '../src/index.js';
import { sessionBus } from '../src/persistence/dbus.js';
import {
  createTokenEndpoint, findAccount, forChild, isLinux, newClient, repoRoot, runFixture, scopes, signIn, storeOptions, tempDir,
} from './helpers.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The names that appeared in `directory` while `run` ran (inotify, through fs.watch). */
async function namesSeenDuring(directory: string, run: () => Promise<unknown>): Promise<string[]> {
  const names = new Set<string>();
  const watcher = watch(directory, (_event, name) => { if (name) names.add(name.toString()); });
  try {
    await run();
    await sleep(100); // inotify events are delivered through the event loop
  } finally {
    watcher.close();
  }
  return [...names];
}

/**
 * The Secret Service method calls this test made while `run` ran, by member name (dbus-monitor). Other test files
 * share the private Secret Service, so only calls from the connections that named `serviceName` in some call (a
 * search or a created item's attributes), and this process's own, are counted.
 */
async function secretServiceCallsDuring(serviceName: string, run: () => Promise<unknown>): Promise<Map<string, number>> {
  const monitor = spawn('dbus-monitor', ['--session', "type='method_call',destination='org.freedesktop.secrets'"],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  monitor.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
  try {
    // dbus-monitor reports its own NameAcquired signal once it is listening.
    const deadline = Date.now() + 10_000;
    while (!output.includes('NameAcquired')) {
      if (Date.now() > deadline) throw new Error(`dbus-monitor did not start: ${output.slice(0, 500)}`);
      await sleep(20);
    }
    await run();
    // Then a Ping from this process: every call `run` made was routed (it was answered) before it, so once the
    // monitor has printed the Ping it has printed them all, however long a loaded machine keeps it waiting.
    const connection = await sessionBus(process.env);
    await connection.call({ destination: 'org.freedesktop.secrets', path: '/org/freedesktop/secrets', interface: 'org.freedesktop.DBus.Peer', member: 'Ping' })
      .catch(() => undefined); // answered or refused, the call itself crossed the bus
    const pinged = new RegExp(`^method call .*sender=${connection.uniqueName.replace(/\./g, '\\.')} .*member=Ping$`, 'm');
    const printedBy = Date.now() + 20_000;
    while (!pinged.test(output)) {
      if (Date.now() > printedBy) throw new Error(`dbus-monitor did not print this process's Ping: ${output.slice(-500)}`);
      await sleep(20);
    }
  } finally {
    monitor.kill();
  }
  const messages = output.split(/^(?=method call |signal |method return |error )/m)
    .map((text) => ({ text, sender: /sender=(\S+)/.exec(text)?.[1], member: /^method call .* member=(\w+)/.exec(text)?.[1] }))
    .filter(({ member }) => member !== 'Ping');
  // Plus this process's own connection: a client that remembers its item reads it by path, naming no service.
  const ours = new Set([...messages.filter((m) => m.text.includes(serviceName)).map((m) => m.sender),
    (await sessionBus(process.env)).uniqueName]);
  const calls = new Map<string, number>();
  for (const { sender, member } of messages) if (member && ours.has(sender)) calls.set(member, (calls.get(member) ?? 0) + 1);
  return calls;
}

describe.runIf(isLinux)('verify by load: plaintext-file', () => {
  it('a stored cache that loads is the check: no throwaway file is made; an empty store still gets the round trip', async () => {
    const options = await storeOptions('plaintext-file');
    const { client } = await newClient(options, createTokenEndpoint());
    await signIn(client, 'stored');
    const withCache = await namesSeenDuring(dirname(options.cachePath), () => createPersistence(options));
    expect(withCache.filter((name) => name.includes('.verify-'))).toEqual([]);

    const empty = await storeOptions('plaintext-file');
    await mkdir(dirname(empty.cachePath), { recursive: true, mode: 0o700 });
    const withoutCache = await namesSeenDuring(dirname(empty.cachePath), () => createPersistence(empty));
    // The probe, and the temp file it is written through.
    expect(withoutCache.filter((name) => name.includes('.verify-')).length).toBeGreaterThan(0);
    expect(await readdir(dirname(empty.cachePath))).toEqual([]);
  });

  it('a process that creates the plugin and reads the cache opens the cache file once (strace)', async () => {
    const options = forChild(await storeOptions('plaintext-file'));
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    await signIn(client, 'reader');
    const log = join(await tempDir(), 'strace.log');
    const script = `
      import { PublicClientApplication } from '@azure/msal-node';
      import { createCachePlugin } from ${JSON.stringify(join(repoRoot, 'dist/esm/index.js'))};
      import { createTokenEndpoint, testAuthority } from ${JSON.stringify(join(repoRoot, 'dist/esm/testing.js'))};
      const endpoint = createTokenEndpoint();
      endpoint.refuse = true;
      const plugin = await createCachePlugin(${JSON.stringify(options)});
      const client = new PublicClientApplication({ auth: { clientId: 'test-client-id', authority: testAuthority },
        cache: { cachePlugin: plugin }, system: { networkClient: endpoint.networkClient } });
      const [account] = await client.getTokenCache().getAllAccounts();
      const result = await client.acquireTokenSilent({ account, scopes: ['User.Read'] });
      console.log(result.accessToken ? 'TOKEN' : 'NONE');`;
    const output = execFileSync('strace', ['-f', '-qq', '-e', 'trace=open,openat', '-o', log, process.execPath,
      '--input-type=module', '-e', script], { cwd: repoRoot, encoding: 'utf8' });
    expect(output.trim()).toBe('TOKEN');
    const opens = (await readFile(log, 'utf8')).split('\n').filter((line) => line.includes(`"${options.cachePath}"`));
    expect(opens).toHaveLength(1);
  });

  it('a corrupt stored cache still loads as the check and is then moved aside by the plugin, which carries on', async () => {
    const options = await storeOptions('plaintext-file');
    await mkdir(dirname(options.cachePath), { recursive: true, mode: 0o700 });
    await writeFile(options.cachePath, '{"Account": {"truncated', { mode: 0o600 });
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    expect(await client.getTokenCache().getAllAccounts()).toEqual([]);
    expect((await readdir(dirname(options.cachePath))).filter((name) => name.includes('.corrupt-'))).toHaveLength(1);
    await signIn(client, 'after-corruption');
    const fresh = await newClient(options, endpoint);
    expect(findAccount(await fresh.client.getTokenCache().getAllAccounts(), endpoint, 'after-corruption')).toBeDefined();
  });

  it('a cache that cannot be decrypted (another safeStorage key) gets the round trip and is moved aside by the plugin', async () => {
    const sealed = await storeOptions('safe-storage');
    const { client } = await newClient(sealed, createTokenEndpoint());
    await signIn(client, 'other-key');
    const other = await storeOptions('safe-storage', { cachePath: sealed.cachePath });
    const names = await namesSeenDuring(dirname(sealed.cachePath), async () => {
      const { client: reader } = await newClient(other, createTokenEndpoint());
      expect(await reader.getTokenCache().getAllAccounts()).toEqual([]);
    });
    expect(names.filter((name) => name.includes('.verify-')).length).toBeGreaterThan(0);
    expect((await readdir(dirname(sealed.cachePath))).filter((name) => name.includes('.corrupt-'))).toHaveLength(1);
  });

  it('the first read after creation sees a write another process made in between, not the text loaded at creation', async () => {
    const { endpoint, reader } = await createdThenWrittenElsewhere('plaintext-file');
    const accounts = await reader.getTokenCache().getAllAccounts();
    expect(findAccount(accounts, endpoint, 'first')).toBeDefined();
    expect(findAccount(accounts, endpoint, 'in-between')).toBeDefined();
  });

  // Root ignores permission bits: a read-only mount is what makes the directory unwritable here.
  // A directory already read-only at creation is refused there (test/creation-mistakes.test.ts, issue 12); one that
  // becomes read-only after it is what the first write meets.
  it.runIf(process.getuid?.() === 0)('a store that reads but cannot be written fails the first write, typed, and loses nothing; created then, it fails at creation', async () => {
    const mountPoint = join(await tempDir(), 'ro');
    await mkdir(mountPoint);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mountPoint]);
    try {
      const options = await storeOptions('plaintext-file', { cachePath: join(mountPoint, 'msal-cache.json') });
      const endpoint = createTokenEndpoint();
      const { client } = await newClient(options, endpoint);
      await signIn(client, 'kept');
      const stored = await readFile(options.cachePath, 'utf8');
      const { client: readOnly } = await newClient(options, endpoint);
      execFileSync('mount', ['-o', 'remount,ro', mountPoint]);
      expect(findAccount(await readOnly.getTokenCache().getAllAccounts(), endpoint, 'kept')).toBeDefined();
      await expect(signIn(readOnly, 'refused')).rejects.toMatchObject({ code: 'STORE_FAILED' });
      expect(await readFile(options.cachePath, 'utf8')).toBe(stored);
      await expect(newClient(options, endpoint)).rejects.toMatchObject({ code: 'STORE_FAILED', message: expect.stringContaining('read-only file system') });
      execFileSync('mount', ['-o', 'remount,rw', mountPoint]);
      const fresh = await newClient(options, endpoint);
      const accounts = await fresh.client.getTokenCache().getAllAccounts();
      expect(findAccount(accounts, endpoint, 'kept')).toBeDefined();
      expect(findAccount(accounts, endpoint, 'refused')).toBeUndefined();
    } finally {
      execFileSync('umount', [mountPoint]);
      await rm(mountPoint, { recursive: true, force: true });
    }
  });
});

describe.runIf(isLinux)('verify by load: libsecret (Secret Service)', () => {
  it('a stored cache that loads is the check: no throwaway item; the first read asks the store nothing more', async () => {
    const options = await storeOptions('libsecret');
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    await signIn(client, 'stored');
    let reader: Awaited<ReturnType<typeof newClient>>['client'] | undefined;
    const calls = await secretServiceCallsDuring(options.serviceName!, async () => {
      reader = (await newClient(options, endpoint)).client;
      const [account] = await reader.getTokenCache().getAllAccounts();
      endpoint.refuse = true;
      await reader.acquireTokenSilent({ account: account!, scopes });
      endpoint.refuse = false;
    });
    expect(calls.get('CreateItem') ?? 0).toBe(0);
    expect(calls.get('Delete') ?? 0).toBe(0);
    // One read of the secret, for creation and the first read together; no search and no lock check: the change
    // marker names the item (checked by its attributes, read beside the secret), as the last save left it.
    expect(calls.get('GetSecret') ?? 0).toBe(1);
    expect(calls.get('SearchItems') ?? 0).toBe(0);
    expect(calls.get('ReadAlias') ?? 0).toBe(0);
    expect(calls.get('Get') ?? 0).toBe(2);
  });

  it('a marker that names another account\'s item: its attributes are read, never its secret; this cache is found by search', async () => {
    const options = await storeOptions('libsecret');
    const other = { ...options, cachePath: join(dirname(options.cachePath), 'other.json'), accountName: 'Other' };
    const endpoint = createTokenEndpoint();
    await signIn((await newClient(options, endpoint)).client, 'stored');
    const theirs = await createPersistence(other);
    await theirs.save('{"who":"theirs"}');
    const theirItem = (JSON.parse(await readFile(other.cachePath, 'utf8')) as { item: string }).item;
    await writeFile(options.cachePath, JSON.stringify({ version: 'ab'.repeat(16), item: theirItem }));
    const calls = await secretServiceCallsDuring(options.serviceName!, async () => {
      const reader = (await newClient(options, endpoint)).client;
      expect(await reader.getTokenCache().getAllAccounts()).toHaveLength(1);
    });
    // One GetSecret: ours, after the search. The other item's secret never crossed the bus.
    expect(calls.get('GetSecret') ?? 0).toBe(1);
    expect(calls.get('SearchItems') ?? 0).toBe(1);
    await theirs.delete();
  });

  it('a marker that names no item (msal-node-extensions writes "{}", earlier versions a version only): one search, one read', async () => {
    const options = await storeOptions('libsecret');
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    await signIn(client, 'stored');
    for (const marker of ['{}', `{"version":"${'ab'.repeat(16)}"}`]) {
      await writeFile(options.cachePath, marker);
      const calls = await secretServiceCallsDuring(options.serviceName!, async () => {
        const reader = (await newClient(options, endpoint)).client;
        expect(await reader.getTokenCache().getAllAccounts()).toHaveLength(1);
      });
      expect(calls.get('SearchItems') ?? 0).toBe(1);
      expect(calls.get('GetSecret') ?? 0).toBe(1);
    }
  });

  it('an empty store still gets the throwaway round trip (one item created and deleted)', async () => {
    const options = await storeOptions('libsecret');
    const calls = await secretServiceCallsDuring(options.serviceName!, () => createPersistence(options));
    expect(calls.get('CreateItem')).toBe(1);
    expect(calls.get('Delete')).toBe(1);
  });

  it('a corrupt stored cache is the check, and the plugin moves it aside and carries on', async () => {
    const options = await storeOptions('libsecret');
    const writer = await createPersistence(options);
    await writer.save('not json at all');
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    expect(await client.getTokenCache().getAllAccounts()).toEqual([]);
    expect(await writer.load()).toBeNull();
    await signIn(client, 'after-corruption');
    const fresh = await newClient(options, endpoint);
    expect(findAccount(await fresh.client.getTokenCache().getAllAccounts(), endpoint, 'after-corruption')).toBeDefined();
  });

  it('the first read after creation sees a write another process made in between (a second lookup)', async () => {
    const { options, endpoint, reader } = await createdThenWrittenElsewhere('libsecret');
    const calls = await secretServiceCallsDuring(options.serviceName!, async () => {
      const accounts = await reader.getTokenCache().getAllAccounts();
      expect(findAccount(accounts, endpoint, 'first')).toBeDefined();
      expect(findAccount(accounts, endpoint, 'in-between')).toBeDefined();
    });
    expect(calls.get('GetSecret')).toBe(1);
  });
});

/** A cache with one sign-in, a client created on it (its load primed), then a sign-in by another process. */
async function createdThenWrittenElsewhere(backend: 'plaintext-file' | 'libsecret') {
  const options = await storeOptions(backend);
  const endpoint = createTokenEndpoint();
  const { client } = await newClient(options, endpoint);
  await signIn(client, 'first');
  const { client: reader } = await newClient(options, endpoint);
  const child = await runFixture('worker', { task: 'sign-in', options: forChild(options), users: ['in-between'] });
  expect(child.code).toBe(0);
  return { options, endpoint, reader };
}
