// The Keychain backend in a real macOS keychain, locked and unlocked. Runs in the GitHub workflow's macos job
// (npm run test:macos), which makes a temporary keychain the default and names it and its password in
// MKC_TEST_KEYCHAIN and MKC_TEST_KEYCHAIN_PASSWORD; on a Mac without them the suite is skipped, which fails CI
// (test/skip-guard-reporter.ts). Written against Apple's documented `security` tool and keytar; no Mac has run it
// here (README, "Verified where").
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPersistence, type PersistenceOptions } from '../src/index.js';
import { tempDir } from './helpers.js';

const keychain = process.env.MKC_TEST_KEYCHAIN;
const password = process.env.MKC_TEST_KEYCHAIN_PASSWORD;
const sample = JSON.stringify({ Account: {}, IdToken: {}, AccessToken: {}, RefreshToken: { marker: randomBytes(8).toString('hex') }, AppMetadata: {} });

async function options(): Promise<PersistenceOptions> {
  return {
    cachePath: join(await tempDir(), 'cache', 'msal-cache.json'),
    serviceName: `mkc-macos-${randomBytes(6).toString('hex')}`,
    accountName: 'MSALCache',
    backend: 'keychain',
    loggerOptions: { loggerCallback: () => undefined },
  };
}

describe.runIf(process.platform === 'darwin' && keychain !== undefined && password !== undefined)(
  'the macOS Keychain, locked and unlocked [darwin only]', () => {
    it('an item written by the backend is read back by keytar under the same service and account (the layout msal-node-extensions uses)', async () => {
      const chosen = await options();
      const persistence = await createPersistence(chosen);
      await persistence.save(sample);
      const keytar = (await import('keytar')).default;
      expect(await keytar.getPassword(chosen.serviceName!, chosen.accountName!)).toBe(sample);
      expect(await persistence.delete()).toBe(true);
      expect(await keytar.getPassword(chosen.serviceName!, chosen.accountName!)).toBeNull();
    });

    // A locked keychain with no unlock dialog possible (CI, SSH) must be KEYRING_LOCKED, never "nothing stored":
    // a "signed out" answer would make the app sign the user in again and overwrite the cache.
    it('a locked keychain is KEYRING_LOCKED at creation and at load; unlocked again, the stored cache is intact', async () => {
      const chosen = await options();
      const persistence = await createPersistence(chosen);
      await persistence.save(sample);
      execFileSync('security', ['lock-keychain', keychain!]);
      try {
        await expect(createPersistence(chosen)).rejects.toMatchObject({ code: 'KEYRING_LOCKED' });
        await expect(persistence.load()).rejects.toMatchObject({ code: 'KEYRING_LOCKED' });
      } finally {
        execFileSync('security', ['unlock-keychain', '-p', password!, keychain!]);
      }
      const again = await createPersistence(chosen);
      expect(await again.load()).toBe(sample);
      await again.delete();
    }, 60_000);
  });
