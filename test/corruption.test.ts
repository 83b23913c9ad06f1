import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startPrivateKeyring } from '../scripts/private-keyring.mjs';
import type { CachePluginOptions } from '../src/index.js';
import { backends, createTokenEndpoint, forChild, isLinux, keytarProcess, newClient, recordingLogger, repoRoot, runFixture, scopes, signIn, storeOptions } from './helpers.js';

const secretLikeText = 'rt.THIS-LOOKS-LIKE-A-REFRESH-TOKEN-0123456789';
const badStores: Record<string, string> = {
  garbage: `\u00ff\u00fe not json at all ${secretLikeText}`,
  'truncated JSON': `{"Account":{"x":{"home_account_id":"${secretLikeText}`,
  empty: '',
  'JSON that is not an object': '[1,2,3]',
};

async function writeRaw(options: CachePluginOptions, text: string): Promise<void> {
  if (options.backend === 'libsecret') {
    // secret-tool, not keytar: keytar refuses to store an empty secret.
    execFileSync('secret-tool', ['store', '--label=raw', 'xdg:schema', 'org.freedesktop.Secret.Generic',
      'service', options.serviceName!, 'account', options.accountName!], { input: text });
    await writeFile(options.cachePath, '{}');
  } else {
    await writeFile(options.cachePath, text);
  }
}

describe.each(backends)('corrupt store, %s backend', (backend) => {
  const runs = backend !== 'libsecret' || isLinux;

  it.runIf(runs).each(Object.keys(badStores))('%s: moved aside, warned about, and sign-in works again at once', async (kind) => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    await newClient(options, endpoint); // creates the directory
    await writeRaw(options, badStores[kind]!);
    const log = recordingLogger();
    const { client } = await newClient({ ...options, loggerOptions: log.loggerOptions }, endpoint);

    expect(await client.getTokenCache().getAllAccounts()).toEqual([]);
    const warnings = log.lines.filter((l) => l.level === 1 && /could not be read/.test(l.message));
    expect(warnings).toHaveLength(1);
    expect(JSON.stringify(log.lines)).not.toContain(secretLikeText);

    // The bytes are kept, not deleted.
    if (backend === 'plaintext-file') {
      const aside = (await readdir(dirname(options.cachePath))).filter((f) => f.startsWith(`${basename(options.cachePath)}.corrupt-`));
      expect(aside).toHaveLength(1);
      expect(await readFile(join(dirname(options.cachePath), aside[0]!), 'utf8')).toBe(badStores[kind]);
    } else if (kind === 'empty') {
      expect(warnings[0]!.message).toContain('(the item was empty, so it was deleted)');
      expect(await (await keytarProcess()).getPassword(options.serviceName!, options.accountName!)).toBeNull();
    } else {
      const account = /moved aside to Secret Service item \(service "[^"]+", account "([^"]+)"\)/.exec(warnings[0]!.message)![1]!;
      expect(account).toMatch(/^MSALCache\.corrupt-/);
      // keytar in a process of its own: in this one it would keep talking to a Secret Service that has restarted.
      const keytar = await keytarProcess();
      expect(await keytar.getPassword(options.serviceName!, account)).toBe(badStores[kind]);
      await keytar.deletePassword(options.serviceName!, account);
    }

    const signedIn = await signIn(client, 'after-corruption');
    endpoint.refuse = true;
    const fresh = await newClient(options, endpoint);
    const accounts = await fresh.client.getTokenCache().getAllAccounts();
    expect(accounts.map((a) => a.localAccountId)).toEqual([signedIn.account!.localAccountId]);
    expect((await fresh.client.acquireTokenSilent({ account: accounts[0]!, scopes })).accessToken).toBe(signedIn.accessToken);
  });

  it.runIf(runs)('a corrupt store met first by a write is moved aside too, and the write is kept', async () => {
    const options = await storeOptions(backend);
    const endpoint = createTokenEndpoint();
    await newClient(options, endpoint);
    await writeRaw(options, badStores.garbage!);
    const { client } = await newClient(options, endpoint);
    await signIn(client, 'writer-first');
    const fresh = await newClient(options, endpoint);
    expect(await fresh.client.getTokenCache().getAllAccounts()).toHaveLength(1);
  });
});

describe('errors that are not corruption delete nothing', () => {
  it.runIf(isLinux && process.getuid?.() === 0)('an unreadable cache file throws ACCESS_DENIED and stays where it is', async () => {
    // Tests run as root here, which bypasses permissions: run the reader as an unprivileged user instead.
    const options = await storeOptions('plaintext-file');
    const endpoint = createTokenEndpoint();
    const { client } = await newClient(options, endpoint);
    await signIn(client, 'denied');
    const original = await readFile(options.cachePath, 'utf8');
    const directory = dirname(options.cachePath);
    for (const path of [dirname(directory), directory, options.cachePath]) chownSync(path, 65534, 65534);
    chmodSync(options.cachePath, 0o000);
    const childOptions = forChild(options);
    const script = `
      import { createCachePlugin } from ${JSON.stringify(join(repoRoot, 'dist/esm/index.js'))};
      const plugin = await createCachePlugin(${JSON.stringify(childOptions)});
      try {
        await plugin.beforeCacheAccess({ cacheHasChanged: false, tokenCache: { deserialize() {}, serialize() { return '{}'; } } });
        console.log('NO ERROR');
      } catch (error) { console.log('CODE', error.code); }`;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
    expect(output.trim()).toBe('CODE ACCESS_DENIED');
    chmodSync(options.cachePath, 0o600);
    expect(await readFile(options.cachePath, 'utf8')).toBe(original);
    expect((await readdir(directory)).filter((f) => f.includes('.corrupt-'))).toEqual([]);
  });

  it.runIf(isLinux)('a locked keyring throws KEYRING_LOCKED on read and write, and the item and marker stay', async () => {
    const keyring = await startPrivateKeyring();
    try {
      // A bounded unlock prompt: KeePassXC's dialog is never answered here (gnome-keyring's cannot be shown).
      const options = await storeOptions('libsecret', { promptTimeoutMs: 2_000 });
      const childOptions = forChild(options);
      const env = { ...process.env, ...keyring.env };
      const first = await runFixture('worker', { task: 'sign-in', options: childOptions, users: ['locked-user'] }, { env });
      expect(first.code).toBe(0);
      const marker = await readFile(options.cachePath, 'utf8');
      await keyring.lockCollection();

      const read = await runFixture('worker', { task: 'read', options: { ...childOptions, verify: false } }, { env });
      expect(read.code).not.toBe(0);
      expect(read.stderr).toContain('KEYRING_LOCKED');
      const write = await runFixture('worker', { task: 'sign-in', options: { ...childOptions, verify: false }, users: ['second'] }, { env });
      expect(write.stderr).toContain('KEYRING_LOCKED');
      expect(await readFile(options.cachePath, 'utf8')).toBe(marker);
      // gnome-keyring lists a locked item (SearchItems answers unlocked items, locked items). KeePassXC cannot
      // search a locked database (Service.SearchItems waits for an unlock dialog; the collection's own answers
      // nothing): there the item is looked for once the database is opened again.
      if (keyring.provider === 'keepassxc') await keyring.restartUnlocked();
      const reply = execFileSync('dbus-send', ['--session', '--print-reply', '--dest=org.freedesktop.secrets',
        '/org/freedesktop/secrets', 'org.freedesktop.Secret.Service.SearchItems',
        `dict:string:string:service,${options.serviceName},account,MSALCache`], { env, encoding: 'utf8' });
      // Our item is still there (item paths differ: gnome-keyring numbers them, KeePassXC uses entry UUIDs).
      expect(reply.match(/object path "\/org\/freedesktop\/secrets\/collection\/\w+\/\w+"/g)).toHaveLength(1);
      expect((await readdir(dirname(options.cachePath))).filter((f) => f.includes('.corrupt-'))).toEqual([]);
    } finally {
      await keyring.stop();
    }
  });
});
