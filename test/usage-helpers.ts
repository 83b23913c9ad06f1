// Helpers for the usage-pattern matrix (test/usage-patterns.test.ts): child processes, optionally in their
// own PID namespace, and a node_modules with two installed copies of the built package.
import { spawn } from 'node:child_process';
import { cp, mkdir, readdir, readFile, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { CachePluginOptions } from '../src/index.js';
import { repoRoot, tempDir, waitForLine } from './helpers.js';

export interface UsageResult {
  done: string[];
  errors: { user: string; code: string }[];
  keys: string[];
  keyCalls: number;
}

export interface UsagePart {
  entry?: string;
  plugin?: string;
  clientId?: string;
  users?: string[];
  perCommand?: boolean;
  thread?: boolean;
  hold?: boolean;
  keyLoop?: string;
}

export interface UsageArgs {
  options: CachePluginOptions;
  entries?: Record<string, { path: string; load: 'import' | 'require' }>;
  parts: UsagePart[];
}

export interface Started {
  child: ReturnType<typeof spawn>;
  /** The process's outcome: its RESULT line parsed, or a description of how it ended without one. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; result?: UsageResult }>;
  waitFor(prefix: string): Promise<string>;
}

/**
 * Starts test/fixtures/<name>.mjs. With `pidNamespace`, inside `unshare --pid --fork --mount-proc`: the
 * node process is pid 1 of a namespace of its own, as in a container sharing a volume with others.
 */
export function startUsage(name: string, args: unknown, options: { pidNamespace?: boolean } = {}): Started {
  const node = [process.execPath, join(repoRoot, 'test', 'fixtures', `${name}.mjs`), JSON.stringify(args)];
  const [command, ...rest] = options.pidNamespace ? ['unshare', '--pid', '--fork', '--mount-proc', ...node] : node;
  const child = spawn(command!, rest, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const done = new Promise<Awaited<Started['done']>>((resolve) => {
    child.on('close', (code, signal) => {
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      resolve({ code, signal, stdout, stderr, ...(line ? { result: JSON.parse(line.slice(7)) as UsageResult } : {}) });
    });
  });
  const ended = done.then((r) => `child exited (${r.code ?? r.signal}; stderr: ${r.stderr.trim()})`);
  const waitFor = (prefix: string) => waitForLine(child.stdout!, () => stdout, ended, prefix);
  return { child, done, waitFor };
}

/** Runs one usage-run process to its end and returns what it did; a crash (no RESULT line) fails the test. */
export async function runUsage(args: UsageArgs, options: { pidNamespace?: boolean } = {}): Promise<UsageResult> {
  const outcome = await startUsage('usage-run', args, options).done;
  if (!outcome.result) {
    throw new Error(`usage-run ended (${outcome.code ?? outcome.signal}) without a result:\n${outcome.stderr}`);
  }
  return outcome.result;
}

export interface VerifyResult {
  missing: Record<string, string[]>;
  silentFailures: Record<string, number>;
  accounts: number;
  key?: string;
}

/** Reads the store back in a fresh process: per client id, the users missing and the silent-token failures. */
export async function verifyStore(options: CachePluginOptions, clients: Record<string, string[]>, key = false): Promise<VerifyResult> {
  const outcome = await startUsage('usage-verify', { options, clients, key }).done;
  const line = outcome.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`usage-verify ended (${outcome.code ?? outcome.signal}) without a result:\n${outcome.stderr}`);
  return JSON.parse(line.slice(7)) as VerifyResult;
}

/** What a fully successful store looks like for `clients`: nobody missing, every silent token from the cache. */
export function allPresent(clients: Record<string, string[]>, extra: Partial<VerifyResult> = {}): VerifyResult {
  const ids = Object.keys(clients);
  return {
    missing: Object.fromEntries(ids.map((id) => [id, []])),
    silentFailures: Object.fromEntries(ids.map((id) => [id, 0])),
    accounts: new Set(Object.values(clients).flat()).size,
    ...extra,
  };
}

/**
 * A node_modules with two installed copies of the built package, as npm lays out two versions:
 * node_modules/msal-keychain-cache and node_modules/other/node_modules/msal-keychain-cache, with
 * @azure/msal-node (and keytar, for the libsecret backend) resolvable from both. Returns the ESM entry of each.
 */
export async function installTwoCopies(): Promise<[string, string]> {
  const root = join(await tempDir(), 'node_modules');
  const copies = [join(root, 'msal-keychain-cache'), join(root, 'other', 'node_modules', 'msal-keychain-cache')];
  for (const copy of copies) {
    await mkdir(copy, { recursive: true });
    await cp(join(repoRoot, 'package.json'), join(copy, 'package.json'));
    await cp(join(repoRoot, 'dist'), join(copy, 'dist'), { recursive: true });
  }
  await mkdir(join(root, '@azure'), { recursive: true });
  await symlink(join(repoRoot, 'node_modules', '@azure', 'msal-node'), join(root, '@azure', 'msal-node'), 'dir');
  await symlink(join(repoRoot, 'node_modules', 'keytar'), join(root, 'keytar'), 'dir');
  return [copies[0]!, copies[1]!].map((copy) => join(copy, 'dist', 'esm', 'index.js')) as [string, string];
}

/** The host pid of the node process that `unshare --fork` started (its only child). */
export async function namespacedPid(unsharePid: number): Promise<number> {
  for (;;) {
    const children = (await readFile(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8')).trim();
    if (children) return Number.parseInt(children.split(/\s+/)[0]!, 10);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** `count` users named `<prefix>-u<i>`. */
export function usersFor(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-u${i}`);
}

/**
 * Files a finished run must not leave beside the cache: a lockfile (a live-looking owner blocks everyone for
 * staleAfterMs), a break marker, or a temp file of an interrupted atomic write.
 */
export async function leftoversBeside(options: CachePluginOptions): Promise<string[]> {
  const names = await readdir(dirname(options.cachePath!)).catch(() => [] as string[]);
  return names.filter((name) => /\.lockfile|\.break|\.tmp$/.test(name));
}
