import { afterAll, beforeAll, inject } from 'vitest';
import { startPrivateKeyring } from '../scripts/private-keyring.mjs';

// Every test worker (and every child it spawns) talks to the private Secret Service only.
const provided = inject('keyringEnv');
Object.assign(process.env, provided);

// The `keepassxc` project: each test file gets a KeePassXC of its own (about 0.7 s to start), so a KeePassXC that
// dies in one file (2.7.4 can crash with SIGSEGV, see docs/secret-service-providers.md) is reported there and
// does not fail every file after it.
if (provided.MKC_SECRET_SERVICE === 'keepassxc') {
  let stop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const keyring = await startPrivateKeyring({ provider: 'keepassxc' });
    stop = keyring.stop;
    Object.assign(process.env, keyring.env);
  }, 60_000);
  afterAll(async () => {
    Object.assign(process.env, provided);
    await stop?.();
  }, 60_000);
}
