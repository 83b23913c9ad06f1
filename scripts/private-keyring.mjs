#!/usr/bin/env node
// @ts-check
// A private Secret Service for tests and for trying the self-test on a headless machine: its own
// dbus-daemon (no service activation, so nothing starts behind our back) and one of two real Secret
// Service implementations on it, with HOME and XDG_RUNTIME_DIR in a temporary directory so a real
// user's keyring is never touched:
//   gnome-keyring  gnome-keyring-daemon, unlocked with a throwaway password (CONTRIBUTING.md, "Headless Linux")
//   keepassxc      KeePassXC on the offscreen Qt platform with a throwaway database that exposes its root
//                  group (CONTRIBUTING.md, "KeePassXC as a second Secret Service")
// docs/secret-service-providers.md says how the two behave differently.
//
//   node scripts/private-keyring.mjs -- <command> [args...]   runs the command inside one;
//   MKC_SECRET_SERVICE=keepassxc picks the provider (default gnome-keyring)
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const execFileAsync = promisify(execFile);

/** @typedef {'gnome-keyring' | 'keepassxc'} SecretServiceProvider */
/** @type {readonly SecretServiceProvider[]} */
export const secretServiceProviders = ['gnome-keyring', 'keepassxc'];

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
 * @typedef {{ provider: SecretServiceProvider, env: Record<string, string>, root: string,
 *             stop: () => Promise<void>, lockCollection: () => Promise<void>,
 *             startSecretService: () => Promise<void>, restartUnlocked: () => Promise<void>,
 *             killSecretService: (signal: NodeJS.Signals) => Promise<void>, daemonPid: () => number | undefined,
 *             isRunning: () => boolean, isServing: () => Promise<boolean> }} PrivateKeyring
 */

/**
 * One provider: how to start its daemon on the bus in `env` (resolving once it is spawned; the caller
 * waits for its collection), given the directories and password of this keyring.
 * @typedef {(context: { root: string, home: string, env: Record<string, string>, password: string })
 *   => Promise<import('node:child_process').ChildProcess>} StartDaemon
 */

/** @type {StartDaemon} */
async function startGnomeKeyring({ env, password }) {
  const daemon = spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  daemon.stdin?.end(password);
  reportUnexpectedExit(daemon, 'gnome-keyring-daemon');
  return daemon;
}

/**
 * Its last words, for a death nobody asked for (a crash, a failed assertion): a test run then says why, instead of
 * only "ServiceUnknown" in every test after it.
 * @param {import('node:child_process').ChildProcess} daemon @param {string} name
 */
function reportUnexpectedExit(daemon, name) {
  let tail = '';
  daemon.stderr?.on('data', (chunk) => { tail = (tail + chunk).slice(-4000); });
  daemon.on('exit', (code, signal) => {
    if (!(/** @type {any} */ (daemon)).stoppedOnPurpose) {
      process.stderr.write(`[private-keyring] ${name} (pid ${daemon.pid}) exited unexpectedly: code ${code}, signal ${signal}. ` +
        `Its last output:\n${tail.split('\n').filter((line) => !/Maximum depth of replacement/.test(line)).slice(-20).join('\n')}\n`);
    }
  });
}

/** @type {StartDaemon} */
async function startKeePassXC({ root, home, env, password }) {
  const database = join(home, '.local', 'share', 'keepassxc', 'passwords.kdbx');
  const config = join(home, '.config', 'keepassxc', 'keepassxc.ini');
  const childEnv = {
    ...process.env, ...env,
    QT_QPA_PLATFORM: 'offscreen',
    // Its single-instance lock and socket live in the temp dir, keyed by user name: a private one lets a
    // test start its own KeePassXC while the run's shared one is up (and never meets a user's own).
    TMPDIR: join(root, 'tmp'),
  };
  if (!(await stat(database).catch(() => null))) await createExposedDatabase(database, config, password, childEnv);
  const daemon = spawn('keepassxc', ['--config', config, '--localconfig', join(home, '.cache', 'keepassxc', 'keepassxc.ini'),
    '--pw-stdin', database], { env: childEnv, stdio: ['pipe', 'ignore', 'pipe'] });
  daemon.stdin?.end(`${password}\n`);
  reportUnexpectedExit(daemon, 'KeePassXC');
  return daemon;
}

/**
 * A KeePassXC database whose root group is exposed over the Secret Service, and the settings that let
 * a headless KeePassXC serve it without dialogs. The exposed group is database custom data that only
 * the GUI sets, so: create, export to XML, add it, import (the recipe's step 3).
 * @param {string} database @param {string} config @param {string} password @param {NodeJS.ProcessEnv} env
 */
async function createExposedDatabase(database, config, password, env) {
  const directory = join(database, '..');
  await mkdir(directory, { recursive: true, mode: 0o700 });
  await mkdir(join(config, '..'), { recursive: true, mode: 0o700 });
  await mkdir(env.TMPDIR ?? '', { recursive: true, mode: 0o700 });
  await writeFile(config, [
    '[General]', 'ConfigVersion=2', 'SingleInstance=false', '',
    // ConfirmAccessItem=false: reads by any client without an access dialog; deletes without confirmation.
    '[FdoSecrets]', 'Enabled=true', 'ShowNotification=false', 'ConfirmAccessItem=false', 'ConfirmDeleteItem=false', '',
    '[GUI]', 'ShowTrayIcon=false', '',
  ].join('\n'));
  const blank = join(directory, 'blank.kdbx');
  const xml = join(directory, 'exposed.xml');
  try {
    await cli(['db-create', '--set-password', blank], `${password}\n${password}\n`, env);
    const exported = await cli(['export', '--format', 'xml', blank], `${password}\n`, env);
    // The root group's UUID is base64 of 16 bytes in the XML; the setting wants it as {8-4-4-4-12} hex.
    const rootGroup = /<Root>\s*<Group>\s*<UUID>([^<]+)<\/UUID>/.exec(exported)?.[1];
    if (!rootGroup || !exported.includes('</Meta>')) throw new Error('keepassxc-cli export printed no root group');
    const hex = Buffer.from(rootGroup, 'base64').toString('hex');
    const uuid = `{${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}}`;
    const customData = `<CustomData><Item><Key>FDO_SECRETS_EXPOSED_GROUP</Key><Value>${uuid}</Value></Item></CustomData>`;
    await writeFile(xml, exported.replace('</Meta>', `${customData}</Meta>`), { mode: 0o600 });
    await cli(['import', '--set-password', xml, database], `${password}\n${password}\n`, env);
  } finally {
    await rm(blank, { force: true });
    await rm(xml, { force: true });
  }
}

/** @param {string[]} args @param {string} input @param {NodeJS.ProcessEnv} env */
async function cli(args, input, env) {
  const child = execFileAsync('keepassxc-cli', args, { env, maxBuffer: 16 * 1024 * 1024 });
  child.child.stdin?.end(input);
  return (await child).stdout;
}

/** @type {Record<SecretServiceProvider, StartDaemon>} */
const startDaemon = { 'gnome-keyring': startGnomeKeyring, keepassxc: startKeePassXC };

/**
 * Starts a private session bus, and (unless `withSecretService` is false) the provider's Secret Service on
 * it with its default collection unlocked. The provider defaults to MKC_SECRET_SERVICE, else gnome-keyring:
 * a test that starts its own keyring inside the `keepassxc` project (whose env says keepassxc) gets a KeePassXC.
 * @param {{ withSecretService?: boolean, password?: string, provider?: SecretServiceProvider }} [options]
 * @returns {Promise<PrivateKeyring>}
 */
export async function startPrivateKeyring(options = {}) {
  const { withSecretService = true, password = 'throwaway-test-password',
    provider = /** @type {SecretServiceProvider} */ (process.env.MKC_SECRET_SERVICE || 'gnome-keyring') } = options;
  if (!secretServiceProviders.includes(provider)) {
    throw new Error(`unknown Secret Service provider '${provider}': use one of ${secretServiceProviders.join(', ')}`);
  }
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
  // MKC_SECRET_SERVICE tells tests and their children which provider they talk to.
  const env = { HOME: home, XDG_RUNTIME_DIR: runtimeDir, DBUS_SESSION_BUS_ADDRESS: address,
    MKC_USER_HOME: process.env.MKC_USER_HOME ?? process.env.HOME ?? '', MKC_SECRET_SERVICE: provider };
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let daemon;

  const startSecretService = async () => {
    const started = await startDaemon[provider]({ root, home, env, password });
    daemon = started;
    const exited = new Promise((resolve) => started.once('exit', (code, signal) => resolve(`${provider} exited (${signal ?? code})`)));
    await waitForUnlockedCollection(env, provider, exited);
  };

  const stop = async () => {
    if (daemon) await endProcess(daemon);
    try { process.kill(busPid, 'SIGTERM'); } catch { /* already gone */ }
    await rm(root, { recursive: true, force: true });
  };

  // Unlocking over D-Bus needs a prompt, which a headless provider cannot show: what a user does at login
  // (the daemon started again with the password) is what this does. Items are kept on disk under HOME.
  const restartUnlocked = async () => {
    if (daemon) await endProcess(daemon);
    await startSecretService();
  };

  // Service.Lock: gnome-keyring locks at once; KeePassXC answers with a prompt that locks when run.
  const lockCollection = async () => {
    const collection = await defaultCollection(env);
    const reply = await dbusSend(env, '/org/freedesktop/secrets', 'org.freedesktop.Secret.Service.Lock', `array:objpath:${collection}`);
    const prompt = objectPaths(reply).find((path) => path.includes('/prompt/'));
    if (prompt) await dbusSend(env, prompt, 'org.freedesktop.Secret.Prompt.Prompt', 'string:');
    await until(async () => (await isLocked(env, collection)) ? true : undefined, `${provider} did not lock ${collection}`);
  };

  try {
    if (withSecretService) await startSecretService();
  } catch (error) {
    await stop();
    throw error;
  }
  /** False once the daemon has exited (a crash: KeePassXC 2.7.4 dies at random under write churn). */
  const isRunning = () => daemon !== undefined && daemon.exitCode === null && daemon.signalCode === null;

  /** True while some process owns org.freedesktop.secrets on this bus (a crashing daemon may not have exited yet). */
  const isServing = async () => {
    const { stdout } = await execFileAsync('dbus-send', ['--session', '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
      'org.freedesktop.DBus.NameHasOwner', 'string:org.freedesktop.secrets'], { env: { ...process.env, ...env } });
    return /boolean true/.test(stdout);
  };

  /** A test's own kill of the daemon (a restart under a running app): awaited, and not reported as a crash. */
  const killSecretService = async (/** @type {NodeJS.Signals} */ signal) => {
    const running = daemon;
    if (!running || running.exitCode !== null || running.signalCode !== null) throw new Error(`${provider} is not running`);
    /** @type {any} */ (running).stoppedOnPurpose = true;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill(signal);
    await exited;
  };

  /** The pid of the daemon started last (the one serving the name, while it runs). */
  const daemonPid = () => daemon?.pid;

  return { provider, env, root, stop, lockCollection, startSecretService, restartUnlocked, killSecretService, daemonPid, isRunning, isServing };
}

/**
 * Ends a daemon and waits for it: SIGTERM lets KeePassXC save and gnome-keyring flush; a KeePassXC with a
 * dialog open (one nobody can answer offscreen) ignores it, so SIGKILL after a grace period.
 * @param {import('node:child_process').ChildProcess} child
 */
async function endProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  /** @type {any} */ (child).stoppedOnPurpose = true;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** @param {Record<string, string>} env @param {string} path @param {string} method @param {...string} args */
async function dbusSend(env, path, method, ...args) {
  const { stdout } = await execFileAsync('dbus-send', [
    '--session', '--print-reply', '--dest=org.freedesktop.secrets', path, method, ...args,
  ], { env: { ...process.env, ...env } });
  return stdout;
}

/** @param {string} reply */
const objectPaths = (reply) => [...reply.matchAll(/object path "([^"]+)"/g)].map((match) => match[1] ?? '');

/**
 * The collection the `default` alias names (where libsecret stores), else the first of the Service's
 * Collections: both providers resolve `default`, but a client should not rely on it.
 * @param {Record<string, string>} env
 */
async function defaultCollection(env) {
  const alias = objectPaths(await dbusSend(env, '/org/freedesktop/secrets', 'org.freedesktop.Secret.Service.ReadAlias', 'string:default'))[0];
  if (alias && alias !== '/') return alias;
  const collections = objectPaths(await dbusSend(env, '/org/freedesktop/secrets', 'org.freedesktop.DBus.Properties.Get',
    'string:org.freedesktop.Secret.Service', 'string:Collections'));
  if (!collections[0]) throw new Error('the Secret Service offers no collection');
  return collections[0];
}

/** @param {Record<string, string>} env @param {string} collection */
async function isLocked(env, collection) {
  const reply = await dbusSend(env, collection, 'org.freedesktop.DBus.Properties.Get',
    'string:org.freedesktop.Secret.Collection', 'string:Locked');
  return /boolean true/.test(reply);
}

/**
 * Polls until `probe` returns a value (errors count as "not yet"), for at most 20 s.
 * @template T @param {() => Promise<T | undefined>} probe @param {string} failure @param {Promise<string>} [gone]
 * @returns {Promise<T>}
 */
async function until(probe, failure, gone) {
  const deadline = Date.now() + 20_000;
  let lastError;
  let goneReason;
  gone?.then((reason) => { goneReason = reason; });
  while (Date.now() < deadline && goneReason === undefined) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const why = goneReason ?? (lastError instanceof Error ? lastError.message.trim() : 'no reply');
  throw new Error(`${failure} within 20 s: ${why}`);
}

/** @param {Record<string, string>} env @param {string} provider @param {Promise<string>} gone */
async function waitForUnlockedCollection(env, provider, gone) {
  await until(async () => {
    const collection = await defaultCollection(env);
    return (await isLocked(env, collection)) ? undefined : collection;
  }, `${provider} did not offer an unlocked collection on the private bus`, gone);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const separator = process.argv.indexOf('--');
  const command = separator >= 0 ? process.argv.slice(separator + 1) : [];
  if (command.length === 0) {
    process.stderr.write('usage: [MKC_SECRET_SERVICE=gnome-keyring|keepassxc] node scripts/private-keyring.mjs -- <command> [args...]\n');
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
