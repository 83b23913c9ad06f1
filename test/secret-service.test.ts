// Our Secret Service client against the real service the run started (gnome-keyring, or KeePassXC in the
// keepassxc project) and against keytar, the native client msal-node-extensions uses: the items are the same
// items, each reads and replaces the other's, and every failure is bounded and typed.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createPersistence, isKeychainCacheError } from '../src/index.js';
import { DBusError, marshal, sessionBus, sessionBusSockets, unmarshal, type Variant } from '../src/persistence/dbus.js';
import { explainSecretServiceError, keytarItem, secretServiceItems } from '../src/persistence/libsecret.js';
import { SecretServiceClient, SecretServiceError } from '../src/persistence/secret-service.js';
import { startPrivateKeyring } from '../scripts/private-keyring.mjs';
import {
  createTokenEndpoint, findAccount, isLinux, keytarProcess, newClient, repoRoot, signIn, storeOptions, tempDir,
} from './helpers.js';

const randomName = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

/** The item's D-Bus properties a reader sees, without its timestamps. */
async function itemProperties(path: string): Promise<Record<string, unknown>> {
  const bus = await sessionBus(process.env);
  const [properties] = await bus.call({
    destination: 'org.freedesktop.secrets', path, interface: 'org.freedesktop.DBus.Properties', member: 'GetAll',
    signature: 's', body: ['org.freedesktop.Secret.Item'],
  }) as [Map<string, Variant>];
  const seen: Record<string, unknown> = {};
  for (const [name, { value }] of properties) {
    // Timestamps, and KeePassXC's own entry id (it also exposes Title, UserName, ... as attributes), are per item.
    if (name === 'Created' || name === 'Modified') continue;
    seen[name] = value instanceof Map ? Object.fromEntries([...value.entries()].filter(([key]) => key !== 'Uuid').sort()) : value;
  }
  return seen;
}

async function onlyItem(client: SecretServiceClient, service: string, account: string): Promise<string> {
  const found = await client.search(keytarItem(service, account).attributes);
  expect(found.locked).toEqual([]);
  expect(found.unlocked).toHaveLength(1);
  return found.unlocked[0]!;
}

describe.runIf(isLinux)('our Secret Service client and keytar write the same items [linux only]', () => {
  const client = new SecretServiceClient({ env: process.env, promptTimeoutMs: 10_000 });
  const ours = secretServiceItems(client);

  it('an item keytar wrote and one we wrote have the same label, attributes, type, content type and bytes; each reads the other', async () => {
    const kt = await keytarProcess();
    const service = randomName('interop-svc');
    const secret = '{"Account":{},"note":"ünïcödé ✓"}';
    await kt.setPassword(service, 'by-keytar', secret);
    await ours.set(service, 'by-us', secret);

    const theirsPath = await onlyItem(client, service, 'by-keytar');
    const oursPath = await onlyItem(client, service, 'by-us');
    const theirs = await itemProperties(theirsPath);
    const mine = await itemProperties(oursPath);
    // Only the account differs, in the label and the attribute.
    expect(JSON.parse(JSON.stringify(mine).replaceAll('by-us', 'by-keytar'))).toEqual(theirs);
    expect(mine).toMatchObject({ Label: `${service}/by-us`, Attributes: { account: 'by-us', service, 'xdg:schema': 'org.freedesktop.Secret.Generic' } });

    const rawTheirs = await client.lookup(keytarItem(service, 'by-keytar').attributes);
    const rawOurs = await client.lookup(keytarItem(service, 'by-us').attributes);
    expect(rawOurs!.contentType).toBe(rawTheirs!.contentType);
    expect(rawOurs!.value.equals(rawTheirs!.value)).toBe(true);
    expect(rawOurs!.value.equals(Buffer.from(secret, 'utf8'))).toBe(true);

    expect(await kt.getPassword(service, 'by-us')).toBe(secret);
    expect(await ours.get(service, 'by-keytar')).toBe(secret);
    expect(await ours.delete(service, 'by-keytar')).toBe(true);
    expect(await kt.deletePassword(service, 'by-us')).toBe(true);
    expect(await kt.getPassword(service, 'by-keytar')).toBeNull();
    expect(await ours.get(service, 'by-us')).toBeNull();
    expect(await ours.delete(service, 'by-us')).toBe(false);
  });

  it('each replaces the other\'s item in place: one item per service and account, whoever wrote last', async () => {
    const kt = await keytarProcess();
    const service = randomName('replace-svc');
    await kt.setPassword(service, 'acct', 'one');
    const first = await onlyItem(client, service, 'acct');
    await ours.set(service, 'acct', 'two');
    expect(await onlyItem(client, service, 'acct')).toBe(first);
    expect(await kt.getPassword(service, 'acct')).toBe('two');
    await kt.setPassword(service, 'acct', 'three');
    expect(await onlyItem(client, service, 'acct')).toBe(first);
    expect(await ours.get(service, 'acct')).toBe('three');
    await ours.delete(service, 'acct');
  });

  it('large and unusual secrets cross both ways intact: 2 MiB (KeePassXC: 64 KB), control characters, emoji, CJK and RTL text, a JSON of 1000 accounts', async () => {
    const kt = await keytarProcess();
    const service = randomName('size-svc');
    // KeePassXC 2.7.4 crashes under later writes once an entry holds ~0.5 MB (keytar's too): 64 KB there.
    const large = JSON.stringify({ blob: 'x'.repeat(process.env.MKC_SECRET_SERVICE === 'keepassxc' ? 64 * 1024 : 2 * 1024 * 1024) });
    const unusual = 'tab\there\nnew line "quotes" \\ emoji 😀 CJK 漢字 RTL עברית \u00a0\u2028';
    const accounts = JSON.stringify(Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`home-${i}`, { username: `user${i}@contoso.com` }])));
    for (const [name, secret] of [['large', large], ['unusual', unusual], ['accounts', accounts]] as const) {
      await ours.set(service, name, secret);
      expect(await kt.getPassword(service, name), name).toBe(secret);
      await kt.setPassword(service, `${name}-kt`, secret);
      expect(await ours.get(service, `${name}-kt`), name).toBe(secret);
      await ours.delete(service, name);
      await ours.delete(service, `${name}-kt`);
    }
  });

  it('the plain transport (for a service that offers nothing else) round-trips with the real service, and keytar reads it', async () => {
    const plain = new SecretServiceClient({ env: process.env, promptTimeoutMs: 10_000, plainOnly: true });
    const service = randomName('plain-svc');
    await secretServiceItems(plain).set(service, 'acct', 'over a plain session');
    expect(plain.algorithm).toBe('plain');
    expect(await (await keytarProcess()).getPassword(service, 'acct')).toBe('over a plain session');
    expect(await ours.get(service, 'acct')).toBe('over a plain session');
    expect(client.algorithm).toBe('dh-ietf1024-sha256-aes128-cbc-pkcs7');
    await ours.delete(service, 'acct');
  });

  it('a CLI that reads through the Secret Service exits on its own: the idle connection does not keep it alive', async () => {
    const directory = await tempDir();
    const script = `
      const { createPersistence } = require(${JSON.stringify(join(repoRoot, 'dist', 'cjs', 'index.js'))});
      createPersistence({ cachePath: ${JSON.stringify(join(directory, 'marker.json'))}, backend: 'libsecret',
        serviceName: ${JSON.stringify(randomName('exit-svc'))} })
        .then(async (p) => { await p.save('{"a":1}'); console.log(await p.load()); await p.delete(); });`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(stdout.trim()).toBe('{"a":1}');
  });
});

describe.runIf(isLinux)('the connection opened ahead of use [linux only]', () => {
  it('a persistence made and never used does not keep the process alive, even on a bus that accepts and never answers', async () => {
    const directory = await tempDir();
    const socketPath = join(directory, 'silent-bus');
    const held: Socket[] = [];
    const silent = createServer((socket) => { held.push(socket); });
    await new Promise<void>((resolve) => silent.listen(socketPath, resolve));
    try {
      const script = `
        const { createPersistence } = require(${JSON.stringify(join(repoRoot, 'dist', 'cjs', 'index.js'))});
        createPersistence({ cachePath: ${JSON.stringify(join(directory, 'c', 'marker.json'))}, backend: 'libsecret',
          serviceName: 'unused', verify: false }).then(() => console.log('created'));`;
      // The handshake's own timeout is 25 s: a process that waited for it would be killed here first.
      const { stdout } = await promisify(execFile)(process.execPath, ['-e', script],
        { encoding: 'utf8', timeout: 20_000, env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: `unix:path=${socketPath}` } });
      expect(stdout.trim()).toBe('created');
      expect(held.length).toBe(1);
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

describe.runIf(isLinux)('one connection and one session per thread [linux only]', () => {
  // Five on KeePassXC: each new store is a create and a delete (the throwaway round trip), and KeePassXC 2.7.4
  // crashes at random under that churn (docs/secret-service-providers.md).
  const count = process.env.MKC_SECRET_SERVICE === 'keepassxc' ? 5 : 20;
  it(`${count} persistences in one process, each reading and writing, leave one Secret Service session, not ${count}`, async () => {
    const keyring = await startPrivateKeyring();
    try {
      const env = { ...process.env, ...keyring.env };
      const directory = await tempDir();
      for (let i = 0; i < count; i++) {
        const persistence = await createPersistence({ cachePath: join(directory, `c${i}.json`), backend: 'libsecret', env,
          serviceName: 'sessions-svc', accountName: `a${i}` });
        await persistence.save(`{"n":${i}}`);
        expect(await persistence.load()).toBe(`{"n":${i}}`);
      }
      const bus = await sessionBus(env);
      const [xml] = await bus.call({ destination: 'org.freedesktop.secrets', path: '/org/freedesktop/secrets/session',
        interface: 'org.freedesktop.DBus.Introspectable', member: 'Introspect' }) as [string];
      expect(xml.match(/<node name="/g) ?? []).toHaveLength(1);
    } finally {
      await keyring.stop();
    }
  });
});

describe.runIf(isLinux)('the item named in the change marker [linux only]', () => {
  // That a new process reads through it, with no search: test/verify-by-load.test.ts (counted with dbus-monitor).
  it('a marker naming the item of another account (a restarted gnome-keyring reuses numbers), a deleted one or a malformed path: the read finds this cache, the other is untouched', async () => {
    const options = await storeOptions('libsecret');
    const other = { ...options, cachePath: join(dirname(options.cachePath!), 'other.json'), accountName: 'Other' };
    const ours = await createPersistence(options);
    await ours.save('{"who":"ours"}');
    const theirs = await createPersistence(other);
    await theirs.save('{"who":"theirs"}');
    const theirItem = (JSON.parse(await readFile(other.cachePath, 'utf8')) as { item: string }).item;
    const ourItem = (JSON.parse(await readFile(options.cachePath!, 'utf8')) as { item: string }).item;
    expect(theirItem).not.toBe(ourItem);
    const client = new SecretServiceClient({ env: process.env, promptTimeoutMs: 10_000 });
    expect(ourItem).toBe(await onlyItem(client, options.serviceName!, 'MSALCache'));
    const hints = [theirItem, `${ourItem}9999`, '/org/freedesktop/secrets/collection/nothing/1', 'not a path', '/a//b', '/a/',
      `/${'x'.repeat(300)}`, 7, null];
    for (const item of hints) {
      await writeFile(options.cachePath!, JSON.stringify({ version: randomBytes(16).toString('hex'), item }));
      expect(await (await createPersistence(options)).load(), `hint ${String(item)}`).toBe('{"who":"ours"}');
    }
    await writeFile(options.cachePath!, 'not json at all');
    expect(await (await createPersistence(options)).load()).toBe('{"who":"ours"}');
    expect(await (await createPersistence(other)).load()).toBe('{"who":"theirs"}');
    // The next save names the right item again.
    const again = await createPersistence(options);
    await again.save('{"who":"ours","n":2}');
    expect((JSON.parse(await readFile(options.cachePath!, 'utf8')) as { item: string }).item).toBe(ourItem);
    await again.delete();
    await theirs.delete();
  });
});

describe.runIf(isLinux)('failures of the Secret Service are bounded and typed [linux only]', () => {
  it('a stalled Secret Service (SIGSTOP) fails the call with STORE_FAILED after the call timeout; resumed, it works again', async () => {
    const keyring = await startPrivateKeyring();
    try {
      const env = { ...process.env, ...keyring.env };
      const client = new SecretServiceClient({ env, promptTimeoutMs: 5_000, callTimeoutMs: 1_500 });
      const items = secretServiceItems(client);
      await items.set('stall-svc', 'acct', 'before');
      const pid = await secretServicePid(env);
      process.kill(pid, 'SIGSTOP');
      try {
        const failure = await items.get('stall-svc', 'acct').catch((error: unknown) => error);
        expect(failure).toBeInstanceOf(DBusError);
        expect((failure as DBusError).dbusName).toBe('org.freedesktop.DBus.Error.NoReply');
        // What the backend makes of it: STORE_FAILED saying the service did not answer and to restart it.
        const typed = explainSecretServiceError(failure, 'read the item', env);
        expect(typed.code).toBe('STORE_FAILED');
        expect(typed.message).toMatch(/did not answer.*restart it/);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      expect(await items.get('stall-svc', 'acct')).toBe('before');
    } finally {
      await keyring.stop();
    }
  });

  // A long-running app (an Electron app, a daemon) outlives its keyring daemon: gnome-keyring is started again at
  // the next login, KeePassXC is closed and reopened, or crashes. The app's connection and session stay behind.
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`a Secret Service restarted under a running app (${signal}): the same process signs in, reads and replaces, with nothing lost`, async () => {
      const keyring = await startPrivateKeyring();
      try {
        const env = { ...process.env, ...keyring.env };
        const endpoint = createTokenEndpoint();
        const options = await storeOptions('libsecret', { env });
        const { client } = await newClient(options, endpoint);
        await signIn(client, 'before-restart');
        // The daemon this keyring started is the one serving the name: it is what the app loses.
        expect(await secretServicePid(env)).toBe(keyring.daemonPid());
        await keyring.killSecretService(signal);
        expect(keyring.isRunning()).toBe(false);
        await keyring.restartUnlocked();
        // First a new item (the app opens another cache), then the app's own client writes to the item it has.
        const other = await createPersistence({ ...options, accountName: 'another-item' });
        await other.save('{"kept":true}');
        await signIn(client, 'after-restart');
        endpoint.refuse = true;
        const fresh = await newClient(options, endpoint);
        const accounts = await fresh.client.getTokenCache().getAllAccounts();
        // SIGKILL gives the service no chance to save what it held only in memory; what it had saved must be there.
        expect(findAccount(accounts, endpoint, 'after-restart')).toBeDefined();
        if (signal === 'SIGTERM') expect(findAccount(accounts, endpoint, 'before-restart')).toBeDefined();
        expect(await other.load()).toBe('{"kept":true}');
      } finally {
        await keyring.stop();
      }
    });
  }

  it('a locked collection: reads, writes and deletes throw KEYRING_LOCKED within the prompt bound, never "missing"; unlocked, all is there', async () => {
    const keyring = await startPrivateKeyring();
    try {
      const env = { ...process.env, ...keyring.env };
      const client = new SecretServiceClient({ env, promptTimeoutMs: 3_000 });
      const items = secretServiceItems(client);
      await items.set('locked-svc', 'acct', 'kept');
      await keyring.lockCollection();
      for (const action of [() => items.get('locked-svc', 'acct'), () => items.set('locked-svc', 'acct', 'new'),
        () => items.delete('locked-svc', 'acct'), () => items.get('locked-svc', 'never-written')] as const) {
        const failure = await action().then((value) => ({ value }), (error: unknown) => error);
        // Searching for an item that was never written finds nothing, locked or not: that one may answer null.
        if (failure && typeof failure === 'object' && 'value' in failure) {
          expect(failure.value).toBeNull();
          continue;
        }
        expect(failure).toBeInstanceOf(SecretServiceError);
        expect((failure as SecretServiceError).reason).toBe('locked');
        expect(explainSecretServiceError(failure, 'use the item', env).code).toBe('KEYRING_LOCKED');
      }
      await keyring.restartUnlocked();
      expect(await items.get('locked-svc', 'acct')).toBe('kept');
    } finally {
      await keyring.stop();
    }
  });

  it('no session bus at all, and a bus without a Secret Service: BACKEND_UNAVAILABLE with the fix, at creation', async () => {
    const directory = await tempDir();
    const noBus = { ...process.env, DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(directory, 'no-bus')}` };
    const error = await createPersistence({ cachePath: join(directory, 'a.json'), backend: 'libsecret', env: noBus }).catch((e: unknown) => e);
    expect(isKeychainCacheError(error, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toContain('dbus-run-session');
    const keyring = await startPrivateKeyring({ withSecretService: false });
    try {
      const bare = await createPersistence({ cachePath: join(directory, 'b.json'), backend: 'libsecret', env: { ...process.env, ...keyring.env } })
        .catch((e: unknown) => e);
      expect(isKeychainCacheError(bare, 'BACKEND_UNAVAILABLE')).toBe(true);
      expect((bare as Error).message).toMatch(/no Secret Service/);
    } finally {
      await keyring.stop();
    }
  });
});

describe('D-Bus marshalling', () => {
  it('round-trips the Secret Service types, nested, with the alignment the specification requires', () => {
    const signature = 'ya{sv}(oayays)bsaoa{ss}tx';
    const values = [7, new Map<string, Variant>([['Label', { signature: 's', value: 'x/y' }],
      ['Attributes', { signature: 'a{ss}', value: new Map([['service', 's'], ['account', 'a']]) }]]),
    ['/org/freedesktop/secrets/session/1', Buffer.from([1, 2, 3]), Buffer.from('secret'), 'text/plain'],
    true, 'ünï', ['/a', '/b/c'], new Map([['k', 'v']]), 2n ** 63n, -5n];
    const body = marshal(signature, values);
    const back = unmarshal(signature, body);
    expect(back[0]).toBe(7);
    expect((back[1] as Map<string, Variant>).get('Label')).toEqual({ signature: 's', value: 'x/y' });
    expect(((back[1] as Map<string, Variant>).get('Attributes')!.value as Map<string, string>).get('account')).toBe('a');
    expect(back.slice(2)).toEqual(values.slice(2));
    // The struct after a{sv} starts on an 8-byte boundary; the byte at 0 and the array length at 4.
    expect(body.readUInt32LE(4)).toBeGreaterThan(0);
  });

  it('reads a big-endian message body as the specification lays it out', () => {
    // "s" then "u": length 3, "abc", NUL, pad to 4, then 0x01020304, all big-endian.
    const body = Buffer.from([0, 0, 0, 3, 0x61, 0x62, 0x63, 0, 1, 2, 3, 4]);
    expect(unmarshal('su', body, false)).toEqual(['abc', 0x01020304]);
  });

  it('writes the exact bytes of the specification: padding, little-endian numbers with the top bit set, UTF-8 lengths', () => {
    const long = 'x'.repeat(70_000);
    const body = marshal('yusgs', [0xab, 0xdeadbeef, 'é', 'a{sv}', long]);
    const expected = Buffer.concat([
      Buffer.from([0xab, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde, 2, 0, 0, 0, 0xc3, 0xa9, 0, 5]),
      Buffer.from('a{sv}\0', 'latin1'), Buffer.from([0, 0]), Buffer.from([0x70, 0x11, 0x01, 0x00]), Buffer.from(`${long}\0`, 'latin1'),
    ]);
    expect(body.equals(expected)).toBe(true);
    expect(unmarshal('yusgs', body)).toEqual([0xab, 0xdeadbeef, 'é', 'a{sv}', long]);
    expect(unmarshal('u', Buffer.from([0xff, 0xff, 0xff, 0xfe]), false)).toEqual([0xfffffffe]);
  });

  it('refuses malformed signatures and strings it cannot send', () => {
    expect(() => marshal('a{sv', [])).toThrow(TypeError);
    expect(() => marshal('a{vs}x(', [])).toThrow(TypeError);
    expect(() => marshal('s', ['nul\u0000inside'])).toThrow(TypeError);
    expect(() => marshal('g', ['y'.repeat(256)])).toThrow(TypeError);
    // A byte out of range is refused, not wrapped into another value (300 would have gone out as 44).
    // Nor is anything but a number made into one.
    for (const wrong of [256, 300, -1, 1.5, Number.NaN, null, '', '7', true, undefined]) expect(() => marshal('y', [wrong])).toThrow(/0-255/);
    expect(marshal('ay', [Buffer.from([0, 255])]).subarray(4)).toEqual(Buffer.from([0, 255]));
    // A byte array given as numbers: each is a byte, checked as one; anything else is refused.
    expect(marshal('ay', [[0, 7, 255]]).subarray(4)).toEqual(Buffer.from([0, 7, 255]));
    for (const wrong of [[300], [-1], [1.5], ['a'], 'text', 5]) expect(() => marshal('ay', [wrong])).toThrow(TypeError);
    expect(() => marshal('(oayays)', [['/o', [256], [0], 'text/plain']])).toThrow(/0-255/);
  });
});

async function secretServicePid(env: NodeJS.ProcessEnv): Promise<number> {
  const bus = await sessionBus(env);
  const [pid] = await bus.call({
    destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
    member: 'GetConnectionUnixProcessID', signature: 's', body: ['org.freedesktop.secrets'],
  });
  return Number(pid);
}

describe('session bus addresses', () => {
  it('reads unix path, abstract and runtime addresses, escapes and lists; skips transports it cannot use', () => {
    expect(sessionBusSockets({ DBUS_SESSION_BUS_ADDRESS: 'unix:path=/run/user/1000/bus' }).sockets).toEqual(['/run/user/1000/bus']);
    expect(sessionBusSockets({ DBUS_SESSION_BUS_ADDRESS: 'unix:abstract=/tmp/dbus-Ab12,guid=0123' }).sockets).toEqual(['\0/tmp/dbus-Ab12']);
    expect(sessionBusSockets({ DBUS_SESSION_BUS_ADDRESS: 'unix:runtime=yes', XDG_RUNTIME_DIR: '/run/user/7' }).sockets).toEqual(['/run/user/7/bus']);
    expect(sessionBusSockets({ DBUS_SESSION_BUS_ADDRESS: 'tcp:host=localhost,port=1;unix:path=/tmp/a%20b' }).sockets).toEqual(['/tmp/a b']);
    expect(sessionBusSockets({ DBUS_SESSION_BUS_ADDRESS: 'autolaunch:' }).sockets).toEqual([]);
    // Unset: the per-user bus in XDG_RUNTIME_DIR if there is one, as GDBus and sd-bus do; else nothing.
    expect(sessionBusSockets({ XDG_RUNTIME_DIR: '/nonexistent-runtime-dir' })).toEqual({ sockets: [], described: 'DBUS_SESSION_BUS_ADDRESS is not set' });
  });
});

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
