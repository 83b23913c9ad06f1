// The Windows lane: run by a Windows build of Node (test/windows.test.ts starts it under Wine; on a real
// Windows machine `node test/windows/lane.mjs <results.json>` works too). Runs the shared persistence
// contract against the dpapi-file backend, then the lane's own cases, against the built package (dist/).
// Writes { facts, results: [{ name, ok, ms, error?, details? }] } to the file named by the first argument.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PublicClientApplication } from '@azure/msal-node';
import { createCachePlugin, createPersistence, defaultCachePath } from '../../dist/esm/index.js';
import { loadDpapi } from '../../dist/internal/dpapi-file.js';
import { runSelfTest } from '../../dist/esm/self-test.js';
import { createTokenEndpoint, testAuthority } from '../../dist/esm/testing.js';
import { contractCases, damageFile } from '../contract/persistence-contract.mjs';
import { laneCases } from './lane-cases.mjs';

const resultsPath = process.argv[2];
const results = [];
const directories = [];
const tempDir = async () => {
  const directory = await mkdtemp(join(tmpdir(), 'mkc-lane-'));
  directories.push(directory);
  return directory;
};

async function record(name, run) {
  const started = performance.now();
  try {
    const details = await run();
    results.push({ name, ok: true, ms: performance.now() - started, ...(details ? { details } : {}) });
  } catch (error) {
    results.push({ name, ok: false, ms: performance.now() - started, error: `${error?.stack ?? error}`.slice(0, 4000) });
  }
}

const facts = { platform: process.platform, arch: process.arch, node: process.version, localAppData: process.env.LOCALAPPDATA };
try {
  const lib = { createPersistence, createCachePlugin, createTokenEndpoint, testAuthority, PublicClientApplication, defaultCachePath };
  const dpapi = await loadDpapi();
  // By path: the package's index loads keytar, which has no Windows binary in a Linux-made install.
  const require = createRequire(import.meta.url);
  const extensionsDpapi = require(join(fileURLToPath(new URL('../../node_modules/@azure/msal-node-extensions/bin/x64/dpapi.node', import.meta.url))));

  const makeSubject = async () => {
    const directory = join(await tempDir(), 'cache');
    const cachePath = join(directory, 'msal-cache.bin');
    return {
      options: { cachePath, loggerOptions: { loggerCallback: () => undefined } },
      encrypted: true,
      directory,
      atRest: [],
      corruptModes: ['garbage', 'truncate', 'flip', 'empty'],
      corrupt: (mode) => damageFile(cachePath, mode),
    };
  };
  // Windows semantics here: the POSIX-only cases (mode bits) do not apply.
  for (const contractCase of contractCases.filter((c) => !c.posixOnly)) {
    await record(`contract: ${contractCase.name}`, () => contractCase.run({ lib, makeSubject }));
  }
  const worker = fileURLToPath(new URL('./lane-worker.mjs', import.meta.url));
  for (const laneCase of laneCases) {
    await record(laneCase.name, () => laneCase.run({ lib, dpapi, extensionsDpapi, tempDir, worker, runSelfTest }));
  }
} catch (error) {
  facts.setupError = `${error?.stack ?? error}`;
} finally {
  for (const directory of directories) await rm(directory, { recursive: true, force: true }).catch(() => undefined);
  writeFileSync(resultsPath, JSON.stringify({ facts, results }, null, 2));
  // Exit even if a failed case left something running: the results are written.
  process.exit(results.length > 0 && results.every((r) => r.ok) && !facts.setupError ? 0 : 1);
}
