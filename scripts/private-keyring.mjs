#!/usr/bin/env node
// @ts-check
// A private Secret Service for tests and for trying the self-test on a headless machine:
// its own dbus-daemon (no service activation, so nothing starts behind our back) and its own
// gnome-keyring-daemon, with HOME and XDG_RUNTIME_DIR in a temporary directory so a real user's
// keyring is never touched. See ../shared/recipes/headless-keyring.md for the facts behind it.
//
//   node scripts/private-keyring.mjs -- <command> [args...]   runs the command inside one
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const execFileAsync = promisify(execFile);

/** @param {string} socketDir */
const busConfig = (socketDir) => `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=${socketDir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;

/**
 * @typedef {{ env: Record<string, string>, root: string, stop: () => Promise<void>,
 *             lockCollection: () => Promise<void>, startSecretService: () => Promise<void>,
 *             restartUnlocked: () => Promise<void> }} PrivateKeyring
 */

/**
 * Starts a private session bus, and (unless `withSecretService` is false) an unlocked gnome-keyring on it.
 * @param {{ withSecretService?: boolean, password?: string }} [options]
 * @returns {Promise<PrivateKeyring>}
 */
export async function startPrivateKeyring(options = {}) {
  const { withSecretService = true, password = 'throwaway-test-password' } = options;
  const root = await mkdtemp(join(tmpdir(), 'mkc-keyring-'));
  const home = join(root, 'home');
  const runtimeDir = join(root, 'run');
  await mkdir(home, { mode: 0o700 });
  await mkdir(runtimeDir, { mode: 0o700 });
  const configPath = join(root, 'bus.conf');
  await writeFile(configPath, busConfig(runtimeDir));

  const { stdout } = await execFileAsync('dbus-daemon', [
    `--config-file=${configPath}`, '--fork', '--print-address=1', '--print-pid=1',
  ]);
  const [address, pidText] = stdout.trim().split('\n');
  const busPid = Number(pidText);
  if (!address || !Number.isInteger(busPid)) throw new Error(`dbus-daemon printed no address/pid: ${stdout}`);

  /** @type {Record<string, string>} */
  // MKC_USER_HOME keeps the real home for tools that need the user's own config, such as npm's ~/.npmrc
  // (its nodedir and cache): scripts/package-check.mjs runs npm with it. The keyring never sees it.
  const env = { HOME: home, XDG_RUNTIME_DIR: runtimeDir, DBUS_SESSION_BUS_ADDRESS: address,
    MKC_USER_HOME: process.env.MKC_USER_HOME ?? process.env.HOME ?? '' };
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let keyringDaemon;

  const startSecretService = async () => {
    keyringDaemon = spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    keyringDaemon.stdin?.end(password);
    await waitForCollection(env, 'login');
  };

  const stop = async () => {
    keyringDaemon?.kill('SIGTERM');
    try { process.kill(busPid, 'SIGTERM'); } catch { /* already gone */ }
    await rm(root, { recursive: true, force: true });
  };

  // Unlocking over D-Bus needs a prompt, which a headless keyring cannot show: what a user does at login
  // (the daemon started again with the password) is what this does. Items are kept on disk under HOME.
  const restartUnlocked = async () => {
    const previous = keyringDaemon;
    if (previous && previous.exitCode === null && previous.signalCode === null) {
      const exited = new Promise((resolve) => previous.once('exit', resolve));
      previous.kill('SIGTERM');
      await exited;
    }
    await startSecretService();
  };

  const lockCollection = async () => {
    await dbusSend(env, '/org/freedesktop/secrets', 'org.freedesktop.Secret.Service.Lock',
      'array:objpath:/org/freedesktop/secrets/collection/login');
  };

  try {
    if (withSecretService) await startSecretService();
  } catch (error) {
    await stop();
    throw error;
  }
  return { env, root, stop, lockCollection, startSecretService, restartUnlocked };
}

/** @param {Record<string, string>} env @param {string} path @param {string} method @param {...string} args */
async function dbusSend(env, path, method, ...args) {
  const { stdout } = await execFileAsync('dbus-send', [
    '--session', '--print-reply', '--dest=org.freedesktop.secrets', path, method, ...args,
  ], { env: { ...process.env, ...env } });
  return stdout;
}

/** @param {Record<string, string>} env @param {string} name */
async function waitForCollection(env, name) {
  const deadline = Date.now() + 10_000;
  let lastError;
  while (Date.now() < deadline) {
    try {
      const reply = await dbusSend(env, '/org/freedesktop/secrets', 'org.freedesktop.DBus.Properties.Get',
        'string:org.freedesktop.Secret.Service', 'string:Collections');
      if (reply.includes(`/collection/${name}`)) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`gnome-keyring did not offer the '${name}' collection within 10 s: ${lastError ?? 'no reply'}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const separator = process.argv.indexOf('--');
  const command = separator >= 0 ? process.argv.slice(separator + 1) : [];
  if (command.length === 0) {
    process.stderr.write('usage: node scripts/private-keyring.mjs -- <command> [args...]\n');
    process.exit(2);
  }
  const keyring = await startPrivateKeyring();
  const [program = '', ...programArgs] = command;
  const child = spawn(program, programArgs, { stdio: 'inherit', env: { ...process.env, ...keyring.env } });
  /** @type {number} */
  const code = await new Promise((resolve) => child.on('exit', (status, signal) => resolve(status ?? (signal ? 1 : 0))));
  await keyring.stop();
  process.exit(code);
}
