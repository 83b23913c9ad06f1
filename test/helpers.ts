import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfidentialClientApplication, PublicClientApplication, type AccountInfo, type LogLevel } from '@azure/msal-node';
import { afterAll, onTestFinished } from 'vitest';
import { createSafeStorageStandIn } from '../scripts/safe-storage-stand-in.mjs';
import { createPartitionedCachePlugin, type BlobCipher, type PartitionedCachePluginOptions, type PartitionStore } from '../src/distributed/index.js';
import { createCachePlugin, type CachePluginOptions, type SafeStorageLike } from '../src/index.js';
import type { BackendKind } from '../src/persistence/types.js';
import { createTokenEndpoint, testAuthority, type TokenEndpoint } from '../src/token-endpoint.js';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
export const backends: BackendKind[] = ['libsecret', 'plaintext-file'];
/** Backends the multi-process tests also run: safe-storage through the stand-in, one per process as in Electron. */
export const processBackends: BackendKind[] = [...backends, 'safe-storage'];
export const scopes = ['User.Read'];
export const clientId = 'test-client-id';
export const isLinux = process.platform === 'linux';

const directories: string[] = [];
afterAll(async () => {
  await Promise.all(directories.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A fresh temporary directory, removed after the test file. */
export async function tempDir(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'mkc-test-'));
  directories.push(directory);
  return directory;
}

/** Plugin options for one backend on a fresh location (its own cache file and keyring item). */
export async function storeOptions(backend: BackendKind, extra: Partial<CachePluginOptions> = {}): Promise<CachePluginOptions> {
  const directory = await tempDir();
  let safeStorage: SafeStorageLike | undefined;
  if (backend === 'safe-storage') {
    const keyringPassword = randomBytes(8).toString('hex');
    safeStorage = createSafeStorageStandIn({ keyringPassword }).safeStorage;
    standInPasswords.set(safeStorage, keyringPassword);
  }
  return {
    cachePath: join(directory, 'cache', 'msal-cache.json'),
    backend,
    ...(safeStorage ? { safeStorage } : {}),
    allowPlaintextFallback: backend === 'plaintext-file',
    serviceName: `mkc-test-${randomBytes(6).toString('hex')}`,
    accountName: 'MSALCache',
    // Quiet by default (the plaintext warning is loud on purpose); tests that check logs pass their own.
    loggerOptions: { loggerCallback: () => undefined },
    ...extra,
  };
}

export interface LogLine { level: LogLevel; message: string; containsPii: boolean }

/** A logger that records every line at the most verbose level, PII included. */
export function recordingLogger(): { lines: LogLine[]; loggerOptions: CachePluginOptions['loggerOptions'] } {
  const lines: LogLine[] = [];
  return {
    lines,
    loggerOptions: {
      loggerCallback: (level, message, containsPii) => { lines.push({ level, message, containsPii }); },
      logLevel: 4 as LogLevel,
      piiLoggingEnabled: true,
    },
  };
}

export async function newClient(options: CachePluginOptions, endpoint: TokenEndpoint, loggerOptions?: CachePluginOptions['loggerOptions']) {
  const plugin = await createCachePlugin(options);
  const client = new PublicClientApplication({
    auth: { clientId, authority: testAuthority },
    cache: { cachePlugin: plugin },
    system: { networkClient: endpoint.networkClient, ...(loggerOptions ? { loggerOptions } : {}) },
  });
  return { client, plugin };
}

export function signIn(client: PublicClientApplication, user: string) {
  return client.acquireTokenByCode({ code: user, scopes, redirectUri: 'http://localhost' });
}

export function findAccount(accounts: AccountInfo[], endpoint: TokenEndpoint, user: string): AccountInfo | undefined {
  const oid = endpoint.objectIdFor(user);
  return accounts.find((a) => a.localAccountId === oid);
}

export { createTokenEndpoint };

const standInPasswords = new WeakMap<SafeStorageLike, string>();

/**
 * Options as a child process gets them (JSON): without the logger callback, which cannot cross, and with
 * the safeStorage stand-in replaced by its keyring password (the worker builds its own, as each Electron
 * process has its own safeStorage over the same OS key).
 */
export function forChild(options: CachePluginOptions): CachePluginOptions {
  const { loggerOptions: _logger, safeStorage, ...rest } = options;
  if (!safeStorage) return rest;
  return { ...rest, standIn: { keyringPassword: standInPasswords.get(safeStorage) } } as CachePluginOptions;
}

/** The pid of a process that has already exited. */
export async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.on('close', resolve));
  return child.pid!;
}

export interface ChildResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs test/fixtures/<name>.mjs in a real child process. */
export function runFixture(name: string, args: unknown, options: { env?: NodeJS.ProcessEnv } = {}): Promise<ChildResult> {
  const child = startFixture(name, args, options);
  return child.done;
}

export function startFixture(name: string, args: unknown, options: { env?: NodeJS.ProcessEnv } = {}) {
  const child = spawn(process.execPath, [join(repoRoot, 'test', 'fixtures', `${name}.mjs`), JSON.stringify(args)], {
    env: options.env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const done = new Promise<ChildResult>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  const ended = done.then((r) => `child exited (${r.code ?? r.signal})${r.stderr ? `: ${r.stderr}` : ''}`);
  const waitFor = (prefix: string) => waitForLine(child.stdout, () => stdout, ended, prefix);
  return { child, done, waitFor, get stdout() { return stdout; } };
}

/**
 * Resolves with the first line of `output()` (what `stream` has printed so far) that starts with `prefix`, as soon as
 * it is there; rejects when `ended` (how the printer ended) comes first. For child processes and worker threads.
 */
export function waitForLine(stream: NodeJS.ReadableStream, output: () => string, ended: Promise<string>, prefix: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const check = () => {
      const line = output().split('\n').find((l) => l.startsWith(prefix));
      if (line !== undefined) { stream.off('data', check); resolve(line); }
    };
    stream.on('data', check);
    void ended.then((how) => reject(new Error(`${how} before printing '${prefix}'`)));
    check();
  });
}

/** A web app's confidential client for one request, its cache in one partition of `store`. */
export function webApp(store: PartitionStore, cipher: BlobCipher, partitionKey: string, endpoint: TokenEndpoint,
  extra: Partial<PartitionedCachePluginOptions> = {}) {
  return new ConfidentialClientApplication({
    auth: { clientId: 'web-app', authority: testAuthority, clientSecret: 'secret' },
    cache: { cachePlugin: createPartitionedCachePlugin({ store, cipher, partitionKey, ...extra }) },
    system: { networkClient: endpoint.networkClient },
  });
}

export function webSignIn(app: ConfidentialClientApplication, user: string, scope = 'User.Read') {
  return app.acquireTokenByCode({ code: user, scopes: [scope], redirectUri: 'http://localhost/redirect' });
}

// JSON on one line, U+2028 and U+2029 escaped too: Node 24's readline ends a line at them (JSON.stringify keeps them).
const oneLine = (value: unknown) => JSON.stringify(value).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);

/**
 * keytar as another app would use it: a process of its own, one per test. libsecret, under keytar, keeps the
 * service's unique bus name for the life of the process, so in-process keytar would fail every call after the
 * Secret Service restarts (KeePassXC 2.7.4 crashes at random; the keepassxc project starts it again before the
 * next test). One process for the whole test: KeePassXC lets an item's creator replace it without a dialog.
 */
export async function keytarProcess(): Promise<{
  getPassword(service: string, account: string): Promise<string | null>;
  setPassword(service: string, account: string, password: string): Promise<void>;
  deletePassword(service: string, account: string): Promise<boolean>;
}> {
  const child = spawn(process.execPath, ['-e', `const keytar = require('keytar');
    require('node:readline').createInterface({ input: process.stdin }).on('line', async (line) => {
      const { id, method, args } = JSON.parse(line);
      const reply = (message) => process.stdout.write(JSON.stringify(message).replace(/[\\u2028\\u2029]/g, (c) => '\\\\u' + c.charCodeAt(0).toString(16)) + '\\n');
      try { reply({ id, result: (await keytar[method](...args)) ?? null }); }
      catch (error) { reply({ id, error: String(error) }); }
    });`], { cwd: repoRoot, env: process.env, stdio: ['pipe', 'pipe', 'inherit'] });
  child.unref();
  onTestFinished(() => { child.kill(); });
  const waiting = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  let buffered = '';
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
      const reply = JSON.parse(buffered.slice(0, newline)) as { id: number; result?: unknown; error?: string };
      buffered = buffered.slice(newline + 1);
      const caller = waiting.get(reply.id);
      waiting.delete(reply.id);
      if (reply.error !== undefined) caller?.reject(new Error(`keytar: ${reply.error}`));
      else caller?.resolve(reply.result);
    }
  });
  child.on('exit', (code, signal) => {
    for (const caller of waiting.values()) caller.reject(new Error(`the keytar process exited (${signal ?? code})`));
  });
  let next = 0;
  const call = (method: 'getPassword' | 'setPassword' | 'deletePassword', args: string[]) => new Promise<unknown>((resolve, reject) => {
    const id = next++;
    waiting.set(id, { resolve, reject });
    child.stdin.write(`${oneLine({ id, method, args })}\n`);
  });
  return {
    getPassword: (service: string, account: string) => call('getPassword', [service, account]) as Promise<string | null>,
    setPassword: async (service: string, account: string, password: string) => { await call('setPassword', [service, account, password]); },
    deletePassword: (service: string, account: string) => call('deletePassword', [service, account]) as Promise<boolean>,
  };
}
