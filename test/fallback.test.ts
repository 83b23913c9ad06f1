// The plaintext fallback never destroys (issue 10): it keeps its own file beside the encrypted store's, it is
// taken only when the store is absent (BACKEND_UNAVAILABLE), and a user who runs the same app from a desktop
// session and over SSH loses nothing of either, shown with real processes, the real msal-node client and the
// private Secret Service (a second private one where the test locks it).
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateKeyring, type PrivateKeyring } from '../scripts/private-keyring.mjs';
import { createSafeStorageStandIn } from '../scripts/safe-storage-stand-in.mjs';
import { plaintextFallbackPath } from '../src/create-persistence.js';
import { createPersistence, type CachePluginOptions } from '../src/index.js';
import { createTokenEndpoint, isLinux, newClient, recordingLogger, runFixture, signIn, tempDir } from './helpers.js';

const quiet = { loggerCallback: () => undefined };

interface RunResult {
  ok: boolean; kind?: string; encrypted?: boolean; cachePath?: string; accounts?: string[]; code?: string; message?: string;
  warnings: string[];
}

async function run(options: Partial<CachePluginOptions> & { standIn?: object }, env: NodeJS.ProcessEnv, signInUsers: string[] = [],
  extra: object = {}): Promise<RunResult> {
  const result = await runFixture('fallback-run', { options, signIn: signInUsers, ...extra }, { env });
  const line = result.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`fallback-run printed no result (exit ${result.code}): ${result.stderr}`);
  return JSON.parse(line.slice('RESULT '.length)) as RunResult;
}

/** An SSH login: no session bus (unset, or an address nothing listens on) and an empty runtime directory. */
async function sshEnv(kind: 'unset' | 'dead'): Promise<NodeJS.ProcessEnv> {
  const { DBUS_SESSION_BUS_ADDRESS: _bus, ...rest } = process.env;
  const runtime = await tempDir();
  return kind === 'unset' ? { ...rest, XDG_RUNTIME_DIR: runtime }
    : { ...rest, XDG_RUNTIME_DIR: runtime, DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(runtime, 'no-bus-here')}` };
}

async function location() {
  const directory = join(await tempDir(), 'cache');
  return { directory, cachePath: join(directory, 'msal-cache.json'), serviceName: `mkc-fallback-${randomBytes(6).toString('hex')}` };
}

/** What a file is right now, to prove a run did not touch it: bytes, inode and modification time. */
async function snapshot(path: string): Promise<string> {
  const [bytes, info] = await Promise.all([readFile(path), stat(path)]);
  return `${bytes.toString('base64')} ${info.ino} ${info.mtimeMs}`;
}

describe('the plaintext fallback has its own file', () => {
  it('falls back to <cachePath>.plaintext, names that file in a warning that does not contradict itself, and leaves the encrypted cache byte-for-byte', async () => {
    // win32 on this machine: DPAPI is unavailable, so selection falls back. A DPAPI cache written by a
    // Windows desktop session lies at cachePath and must survive.
    const { directory, cachePath } = await location();
    await mkdir(directory, { recursive: true });
    const dpapiBytes = randomBytes(300);
    await writeFile(cachePath, dpapiBytes);
    const log = recordingLogger();
    const endpoint = createTokenEndpoint();
    const { client, plugin } = await newClient({ cachePath, platform: 'win32', allowPlaintextFallback: true, loggerOptions: log.loggerOptions }, endpoint);
    expect(plugin.persistence).toMatchObject({ kind: 'plaintext-file', encrypted: false, cachePath: plaintextFallbackPath(cachePath) });
    expect(plaintextFallbackPath(cachePath)).toBe(`${cachePath}.plaintext`);
    await signIn(client, 'ann');
    await signIn(client, 'ben');

    expect(await readFile(cachePath)).toEqual(dpapiBytes);
    expect(JSON.parse(await readFile(plaintextFallbackPath(cachePath), 'utf8'))).toHaveProperty('Account');
    // The lock follows the fallback's own path, and is gone after the writes.
    expect((await readdir(directory)).sort()).toEqual(['msal-cache.json', 'msal-cache.json.plaintext']);
    const warnings = log.lines.filter((l) => l.level === 1).map((l) => l.message);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`UNENCRYPTED in ${plaintextFallbackPath(cachePath)}: `);
    expect(warnings[0]).toContain(`${cachePath} stays the encrypted store's`);
    expect(warnings[0]).not.toMatch(/pass allowPlaintextFallback/);
  });

  it("backend: 'plaintext-file' chosen explicitly stays at cachePath (msal-node-extensions' FilePersistence layout)", async () => {
    const { cachePath } = await location();
    const persistence = await createPersistence({ cachePath, backend: 'plaintext-file', allowPlaintextFallback: true, loggerOptions: quiet });
    expect(persistence.cachePath).toBe(cachePath);
  });

  it('without the flag the error still offers it; with the flag an unavailable store is recorded as such', async () => {
    const { cachePath } = await location();
    await expect(createPersistence({ cachePath, platform: 'win32', loggerOptions: quiet }))
      .rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining('allowPlaintextFallback: true') });
    await expect(stat(plaintextFallbackPath(cachePath))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('Electron safeStorage never available (no keyring) with the flag: the fallback file, and the safeStorage cache at cachePath untouched', async () => {
    const { cachePath } = await location();
    const keyringPassword = randomBytes(8).toString('hex');
    const desktop = { cachePath, safeStorage: createSafeStorageStandIn({ keyringPassword }).safeStorage, allowPlaintextFallback: true, loggerOptions: quiet };
    const endpoint = createTokenEndpoint();
    await signIn((await newClient(desktop, endpoint)).client, 'desk');
    const before = await snapshot(cachePath);

    const noKeyring = { ...desktop, safeStorage: createSafeStorageStandIn({ keyringPassword, backend: 'unknown' }).safeStorage, safeStorageWaitMs: 50 };
    const ssh = await newClient(noKeyring, endpoint);
    expect(ssh.plugin.persistence).toMatchObject({ kind: 'plaintext-file', cachePath: plaintextFallbackPath(cachePath) });
    await signIn(ssh.client, 'remote');
    expect(await snapshot(cachePath)).toBe(before);

    endpoint.refuse = true;
    const names = async (options: CachePluginOptions) =>
      (await (await newClient(options, endpoint)).client.getTokenCache().getAllAccounts()).map((a) => a.username).sort();
    expect(await names(desktop)).toEqual(['desk@example.test']);
    expect(await names(noKeyring)).toEqual(['remote@example.test']);
  });
});

describe('the fallback is only for a store that is absent', () => {
  it.runIf(isLinux)('UNSAFE_PATH (the marker path is a symlink) is thrown with the flag, and no fallback file appears', async () => {
    const { directory, cachePath, serviceName } = await location();
    await mkdir(directory, { recursive: true, mode: 0o700 });
    await writeFile(join(directory, 'elsewhere'), '');
    await symlink(join(directory, 'elsewhere'), cachePath);
    await expect(createPersistence({ cachePath, serviceName, allowPlaintextFallback: true, loggerOptions: quiet }))
      .rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    await expect(stat(plaintextFallbackPath(cachePath))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it("Electron 'basic_text' without the flag is PLAINTEXT_NOT_ALLOWED, not a reason to use another plaintext file", async () => {
    const { cachePath } = await location();
    const { safeStorage } = createSafeStorageStandIn({ backend: 'basic_text' });
    await expect(createPersistence({ cachePath, safeStorage, platform: 'linux', loggerOptions: quiet }))
      .rejects.toMatchObject({ code: 'PLAINTEXT_NOT_ALLOWED' });
    await expect(stat(plaintextFallbackPath(cachePath))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe.runIf(isLinux)('a locked keyring is KEYRING_LOCKED, with or without the flag [linux only]', () => {
  let keyring: PrivateKeyring;
  beforeAll(async () => { keyring = await startPrivateKeyring(); });
  afterAll(async () => { await keyring?.stop(); });

  it('a real Secret Service, its default collection locked over D-Bus: throws KEYRING_LOCKED, moves and writes nothing; unlocked again, every account is there', async () => {
    const env = { ...process.env, ...keyring.env };
    const { directory, cachePath, serviceName } = await location();
    // A bounded unlock prompt: KeePassXC's dialog is never answered here (gnome-keyring's cannot be shown).
    const options = { cachePath, serviceName, allowPlaintextFallback: true, promptTimeoutMs: 2_000 };
    const first = await run(options, env, ['ann', 'ben']);
    expect(first).toMatchObject({ ok: true, kind: 'libsecret', cachePath, accounts: ['ann', 'ben'] });
    const marker = await snapshot(cachePath);

    await keyring.lockCollection();
    // Selection's round trip meets the lock (libsecret: "Cannot create an item in a locked collection").
    expect(await run(options, env)).toMatchObject({ ok: false, code: 'KEYRING_LOCKED' });
    // Without the round trip, the read meets it: a locked item reads as "not found", the marker says otherwise.
    expect(await run({ ...options, verify: false }, env)).toMatchObject({ ok: false, code: 'KEYRING_LOCKED' });
    expect(await run({ ...options, verify: false }, env, ['cat'])).toMatchObject({ ok: false, code: 'KEYRING_LOCKED' });
    // A delete meets it too (libsecret answers "nothing to delete" for a locked item): no sign-out is reported.
    expect(await run({ ...options, verify: false }, env, [], { delete: true })).toMatchObject({ ok: false, code: 'KEYRING_LOCKED' });
    expect(await snapshot(cachePath)).toBe(marker);
    expect((await readdir(directory)).sort()).toEqual(['msal-cache.json']);

    await keyring.restartUnlocked();
    expect(await run(options, env)).toMatchObject({ ok: true, kind: 'libsecret', accounts: ['ann', 'ben'] });
  });
});

describe.runIf(isLinux)('desktop and SSH runs of one app, alternating, lose nothing of each other [linux only]', () => {
  it('libsecret on the desktop, the fallback file over SSH: 3 alternations x 2 sign-ins each, read back by fresh processes of each kind', async () => {
    const { directory, cachePath, serviceName } = await location();
    const options = { cachePath, serviceName, allowPlaintextFallback: true };
    const desktopUsers: string[] = [];
    const sshUsers: string[] = [];
    for (let round = 0; round < 3; round++) {
      const desk = [`desk-${round}-a`, `desk-${round}-b`];
      const desktop = await run(options, process.env, desk);
      desktopUsers.push(...desk);
      expect(desktop).toMatchObject({ ok: true, kind: 'libsecret', cachePath, warnings: [] });
      expect(desktop.accounts).toEqual([...desktopUsers].sort());
      const marker = await snapshot(cachePath);

      const remote = [`ssh-${round}-a`, `ssh-${round}-b`];
      const ssh = await run(options, await sshEnv(round % 2 === 0 ? 'unset' : 'dead'), remote);
      sshUsers.push(...remote);
      expect(ssh).toMatchObject({ ok: true, kind: 'plaintext-file', cachePath: plaintextFallbackPath(cachePath) });
      expect(ssh.accounts).toEqual([...sshUsers].sort());
      expect(ssh.warnings).toHaveLength(1);
      // The SSH run never writes where the desktop keeps its marker.
      expect(await snapshot(cachePath)).toBe(marker);
    }
    expect(await run(options, process.env)).toMatchObject({ ok: true, accounts: [...desktopUsers].sort() });
    expect(await run(options, await sshEnv('unset'))).toMatchObject({ ok: true, accounts: [...sshUsers].sort() });
    expect((await readdir(directory)).filter((n) => n.includes('.corrupt-') || n.endsWith('.lockfile'))).toEqual([]);
  });

  it('safeStorage on the desktop, no keyring over SSH (safeStorage never available): the fallback file, 3 alternations', async () => {
    const { cachePath } = await location();
    const keyringPassword = randomBytes(8).toString('hex');
    const desktopOptions = { cachePath, allowPlaintextFallback: true, standIn: { keyringPassword } };
    const sshOptions = { cachePath, allowPlaintextFallback: true, safeStorageWaitMs: 50, standIn: { keyringPassword, backend: 'unknown' } };
    const desktopUsers: string[] = [];
    const sshUsers: string[] = [];
    for (let round = 0; round < 3; round++) {
      const desk = [`desk-${round}`];
      desktopUsers.push(...desk);
      expect(await run(desktopOptions, process.env, desk)).toMatchObject({ ok: true, kind: 'safe-storage', cachePath, accounts: [...desktopUsers].sort() });
      const sealed = await snapshot(cachePath);
      const remote = [`ssh-${round}`];
      sshUsers.push(...remote);
      expect(await run(sshOptions, await sshEnv('unset'), remote))
        .toMatchObject({ ok: true, kind: 'plaintext-file', cachePath: plaintextFallbackPath(cachePath), accounts: [...sshUsers].sort() });
      expect(await snapshot(cachePath)).toBe(sealed);
    }
    expect(await run(desktopOptions, process.env)).toMatchObject({ ok: true, accounts: [...desktopUsers].sort() });
    expect(await run(sshOptions, await sshEnv('unset'))).toMatchObject({ ok: true, accounts: [...sshUsers].sort() });
  });

  it("safeStorage in 'basic_text' over SSH (flag on) meets the desktop's keyring-sealed cache: BACKEND_UNAVAILABLE, the cache byte-for-byte, nothing moved", async () => {
    const { directory, cachePath } = await location();
    const keyringPassword = randomBytes(8).toString('hex');
    const desktop = await run({ cachePath, allowPlaintextFallback: true, standIn: { keyringPassword } }, process.env, ['desk']);
    expect(desktop).toMatchObject({ ok: true, kind: 'safe-storage', encrypted: true });
    const sealed = await snapshot(cachePath);
    const ssh = await run({ cachePath, allowPlaintextFallback: true, standIn: { keyringPassword, backend: 'basic_text' } }, await sshEnv('unset'), ['remote']);
    expect(ssh).toMatchObject({ ok: false, code: 'BACKEND_UNAVAILABLE' });
    expect(await snapshot(cachePath)).toBe(sealed);
    expect((await readdir(directory)).filter((n) => n !== 'msal-cache.json')).toEqual([]);
    expect(await run({ cachePath, standIn: { keyringPassword } }, process.env)).toMatchObject({ ok: true, accounts: ['desk'] });
  });
});

it('fallback path helper keeps the fallback in the same directory', () => {
  expect(dirname(plaintextFallbackPath('/x/y/msal-cache.bin'))).toBe('/x/y');
});
