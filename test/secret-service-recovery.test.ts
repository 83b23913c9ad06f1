// Cases the adversarial review of the Secret Service client found (issue 13), against a real private
// gnome-keyring: a daemon restart that renumbers items, a stalled daemon at creation, UTF-8 bus addresses.
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createPersistence } from '../src/index.js';
import { sessionBus, sessionBusSockets } from '../src/persistence/dbus.js';
import { secretServiceItems } from '../src/persistence/libsecret.js';
import { SecretServiceClient } from '../src/persistence/secret-service.js';
import { startPrivateKeyring } from '../scripts/private-keyring.mjs';
import { isLinux, repoRoot, tempDir } from './helpers.js';

const run = promisify(execFile);

/** keytar in a fresh process (a different client, as another app is). */
async function keytarIn(env: NodeJS.ProcessEnv, code: string): Promise<string> {
  const { stdout } = await run(process.execPath, ['-e', `const k=require('keytar');(async()=>{${code}})()`], { env, cwd: repoRoot, timeout: 60_000 });
  return stdout.trim();
}

async function secretServicePid(env: NodeJS.ProcessEnv): Promise<number> {
  const bus = await sessionBus(env);
  const [pid] = await bus.call({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
    member: 'GetConnectionUnixProcessID', signature: 's', body: ['org.freedesktop.secrets'] });
  return Number(pid);
}

describe.runIf(isLinux)('Secret Service recovery: restarted and stalled daemons [linux only]', () => {
  it('a remembered item path is not trusted after the daemon restarted: saving account A never overwrites account B', async () => {
    const keyring = await startPrivateKeyring({ provider: 'gnome-keyring' });
    try {
      const env = { ...process.env, ...keyring.env };
      const items = secretServiceItems(new SecretServiceClient({ env, promptTimeoutMs: 5_000 }));
      const service = `review-reuse-${process.pid}`;
      await keytarIn(env, `await k.setPassword('${service}','A','token-of-A-v1')`);
      expect(await items.get(service, 'A')).toBe('token-of-A-v1'); // remembers A's item path (/collection/login/1)
      // Another app signs A out; the keyring daemon restarts (log out and in, a crash); another app signs B in.
      await keytarIn(env, `await k.deletePassword('${service}','A')`);
      await keyring.restartUnlocked();
      await keytarIn(env, `await k.setPassword('${service}','B','token-of-B')`);
      // This process, still running, saves A.
      await items.set(service, 'A', 'token-of-A-v2');
      const a = await keytarIn(env, `console.log(await k.getPassword('${service}','A'))`);
      const b = await keytarIn(env, `console.log(await k.getPassword('${service}','B'))`);
      // Before the fix: { a: 'null', b: 'token-of-A-v2' } (the remembered path /collection/login/1 had become B's).
      expect({ a, b }).toEqual({ a: 'token-of-A-v2', b: 'token-of-B' });
    } finally {
      await keyring.stop();
    }
  });

  // gnome-keyring: on KeePassXC 2.7.4, keytar's replace of an item another client created waits for an access
  // dialog forever (its issue #9255; our client writes with SetSecret instead).
  it('a read by the remembered item path sees other processes replace, delete and re-create the item', async () => {
    const keyring = await startPrivateKeyring({ provider: 'gnome-keyring' });
    try {
      const env = { ...process.env, ...keyring.env };
      const items = secretServiceItems(new SecretServiceClient({ env, promptTimeoutMs: 5_000 }));
      const service = `remembered-${process.pid}`;
      await keytarIn(env, `await k.setPassword('${service}','A','v1')`);
      expect(await items.get(service, 'A')).toBe('v1'); // found by search; the path is remembered
      await keytarIn(env, `await k.setPassword('${service}','A','v2')`); // replaced in place
      expect(await items.get(service, 'A')).toBe('v2');
      await keytarIn(env, `await k.deletePassword('${service}','A')`);
      expect(await items.get(service, 'A')).toBeNull(); // the path is gone: searched again, nothing
      await keytarIn(env, `await k.setPassword('${service}','A','v3')`); // a new item, a new path
      expect(await items.get(service, 'A')).toBe('v3');
      await keytarIn(env, `await k.setPassword('${service}','other','x')`);
      expect(await items.get(service, 'A')).toBe('v3');
    } finally {
      await keyring.stop();
    }
  });

  it('createPersistence against a stalled Secret Service fails STORE_FAILED after the read, without a probe write or delete', async () => {
    const keyring = await startPrivateKeyring({ provider: 'gnome-keyring' });
    const directory = await tempDir();
    const env = { ...process.env, ...keyring.env };
    const pid = await secretServicePid(env);
    // What our process asks the stalled service, seen on the bus (each unanswered call waits the 25 s call timeout).
    const monitor = spawn('dbus-monitor', ['--address', env.DBUS_SESSION_BUS_ADDRESS!], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    monitor.stdout.on('data', (chunk: Buffer) => { seen += chunk.toString(); });
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.kill(pid, 'SIGSTOP');
    try {
      const error = await createPersistence({ cachePath: join(directory, 'c.json'), backend: 'libsecret', env }).catch((e: unknown) => e);
      expect((error as { code?: string }).code).toBe('STORE_FAILED');
      expect((error as Error).message).toMatch(/did not answer.*restart it/);
      // The read met the silence; the throwaway write and its clean-up (two more timeouts) were not attempted.
      const asked = seen.split('\n').filter((line) => line.startsWith('method call') && line.includes('destination=org.freedesktop.secrets'))
        .map((line) => /member=(\w+)/.exec(line)?.[1]);
      expect(asked.length).toBeGreaterThan(0);
      expect(asked.filter((member) => ['CreateItem', 'SetSecret', 'Delete'].includes(member!))).toEqual([]);
      // The read's calls once each: before the fix the probe write and its clean-up asked the same again (3 timeouts).
      expect(asked, asked.join(', ')).toEqual([...new Set(asked)]);
    } finally {
      monitor.kill();
      process.kill(pid, 'SIGCONT');
      await keyring.stop();
    }
  });
});

describe('D-Bus address escapes', () => {
  it('percent-escapes in a unix path are UTF-8 bytes (as dbus-daemon writes them), not Latin-1 characters', () => {
    // dbus-daemon --print-address for a socket in /tmp/bé prints unix:path=/tmp/b%c3%a9/sock
    const { sockets } = sessionBusSockets({ DBUS_SESSION_BUS_ADDRESS: 'unix:path=/tmp/b%c3%a9/sock,guid=0123456789abcdef0123456789abcdef' });
    // Before the fix: ['/tmp/bÃ©/sock'], so ENOENT, so BACKEND_UNAVAILABLE (and a plaintext fallback) beside a live bus.
    expect(sockets).toEqual(['/tmp/bé/sock']);
    expect(sessionBusSockets({ DBUS_SESSION_BUS_ADDRESS: 'unix:path=/tmp/%F0%9F%94%90-😀/s%2c' }).sockets).toEqual(['/tmp/🔐-😀/s,']);
  });
});
