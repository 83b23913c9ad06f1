// Every backend runs the one contract (test/contract/persistence-contract.mjs) first. Backends that need
// another OS run it where they can: keychain on a Mac, dpapi-file on Windows here and, on Linux, inside
// a Windows build of Node under Wine (test/windows.test.ts).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { PublicClientApplication } from '@azure/msal-node';
import { describe, it } from 'vitest';
import { createSafeStorageStandIn } from '../scripts/safe-storage-stand-in.mjs';
import { createCachePlugin, createPersistence, type PersistenceOptions } from '../src/index.js';
import { createTokenEndpoint, testAuthority } from '../src/token-endpoint.js';
import { contractCases, damageFile } from './contract/persistence-contract.mjs';
import { isLinux, tempDir } from './helpers.js';

const lib = { createPersistence, createCachePlugin, createTokenEndpoint, testAuthority, PublicClientApplication };

type CorruptMode = 'garbage' | 'truncate' | 'flip' | 'empty';

interface Subject {
  options: PersistenceOptions;
  encrypted: boolean;
  directory: string;
  atRest: string[];
  corruptModes: CorruptMode[];
  corrupt(mode: CorruptMode): Promise<void>;
}

const quiet = { loggerCallback: () => undefined };

async function location(): Promise<{ directory: string; cachePath: string; serviceName: string }> {
  const directory = join(await tempDir(), 'cache');
  return { directory, cachePath: join(directory, 'msal-cache.bin'), serviceName: `mkc-contract-${randomBytes(6).toString('hex')}` };
}

async function fileSubject(extra: Partial<PersistenceOptions>, encrypted: boolean, modes: CorruptMode[]): Promise<Subject> {
  const { directory, cachePath, serviceName } = await location();
  return {
    options: { cachePath, serviceName, loggerOptions: quiet, ...extra },
    encrypted,
    directory,
    atRest: [],
    corruptModes: modes,
    corrupt: (mode) => damageFile(cachePath, mode),
  };
}

/** Reads and replaces a keyring item through another client than ours, as another app would. */
interface ItemClient {
  get(service: string, account: string): Promise<string>;
  set(service: string, account: string, text: string): Promise<void>;
}

// libsecret's own CLI (libsecret-tools, as test/corruption.test.ts uses it): the Linux contract needs no native
// Node module, as the Linux backend needs none; keytar is for macOS only.
const secretTool: ItemClient = {
  get: async (service, account) =>
    execFileSync('secret-tool', ['lookup', 'service', service, 'account', account], { encoding: 'utf8' }),
  set: async (service, account, text) => {
    execFileSync('secret-tool', ['store', `--label=${service}/${account}`, 'xdg:schema', 'org.freedesktop.Secret.Generic',
      'service', service, 'account', account], { input: text });
  },
};

// keytar on macOS (the Keychain backend uses it), loaded only there.
const keytarClient: ItemClient = {
  get: async (service, account) => (await (await import('keytar')).default.getPassword(service, account)) ?? '',
  set: async (service, account, text) => { await (await import('keytar')).default.setPassword(service, account, text); },
};

async function keyringSubject(backend: 'libsecret' | 'keychain', atRest: string[], other: ItemClient): Promise<Subject> {
  const { directory, cachePath, serviceName } = await location();
  const accountName = 'MSALCache';
  return {
    options: { cachePath, serviceName, accountName, backend, loggerOptions: quiet },
    encrypted: true,
    directory,
    atRest,
    corruptModes: ['garbage', 'truncate'],
    corrupt: async (mode) => {
      const text = await other.get(serviceName, accountName);
      await other.set(serviceName, accountName,
        mode === 'truncate' ? text.slice(0, Math.floor(text.length / 2)) : `{garbage ${randomBytes(8).toString('hex')}`);
    },
  };
}

const subjects: { name: string; runs: boolean; make: () => Promise<Subject> }[] = [
  {
    name: 'plaintext-file',
    runs: true,
    make: () => fileSubject({ backend: 'plaintext-file', allowPlaintextFallback: true }, false, ['garbage', 'truncate', 'empty']),
  },
  {
    name: 'libsecret (private Secret Service) [linux only]',
    runs: isLinux,
    // gnome-keyring's own files: the item must be encrypted there too.
    make: () => keyringSubject('libsecret', [join(process.env.HOME ?? '', '.local', 'share', 'keyrings')], secretTool),
  },
  {
    name: 'keychain [darwin only]',
    runs: process.platform === 'darwin',
    make: () => keyringSubject('keychain', [], keytarClient),
  },
  {
    name: 'dpapi-file native [win32 only]',
    runs: process.platform === 'win32',
    make: () => fileSubject({ backend: 'dpapi-file' }, true, ['garbage', 'truncate', 'flip', 'empty']),
  },
  ...(['sync', 'async'] as const).flatMap((api) => (['linux', 'win32'] as const).map((platform) => ({
    name: `safe-storage (stand-in, ${api} API, ${platform} semantics)`,
    runs: true,
    make: () => {
      // One keyring password per subject: every instance in a case shares the app's key, as processes do.
      const keyringPassword = randomBytes(8).toString('hex');
      const { safeStorage } = createSafeStorageStandIn({ api, platform, keyringPassword });
      return fileSubject({ safeStorage, platform }, true, ['garbage', 'truncate', 'flip', 'empty']);
    },
  }))),
];

for (const subject of subjects) {
  describe.runIf(subject.runs)(`persistence contract: ${subject.name}`, () => {
    for (const contractCase of contractCases) {
      const test = contractCase.posixOnly ? it.skipIf(process.platform === 'win32') : it;
      test(contractCase.name, () => contractCase.run({ lib, makeSubject: subject.make }));
    }
  });
}
