import { afterAll, beforeAll, beforeEach, inject } from 'vitest';
import { type PrivateKeyring, startPrivateKeyring } from '../scripts/private-keyring.mjs';

// Every test worker (and every child it spawns) talks to the private Secret Service only.
const provided = inject('keyringEnv');
Object.assign(process.env, provided);

// The `keepassxc` project: each test file gets a KeePassXC of its own (about 0.7 s to start), so a KeePassXC that
// dies in one file (2.7.4 can crash with SIGSEGV, see docs/secret-service-providers.md) is reported there and
// does not fail every file after it.
// KeePassXC 2.7.4 also dies at random under write churn, with any client (keytar too: 1 run in 5 of a create/delete
// loop): a test that finds it dead gets it started again (its database kept), and the project retries a failed
// test once (vitest.config.ts). Each death is printed by the private keyring, with KeePassXC's last output. The
// same tests run on gnome-keyring in the other projects, without retries.
if (provided.MKC_SECRET_SERVICE === 'keepassxc') {
  let keyring: PrivateKeyring | undefined;
  beforeAll(async () => {
    keyring = await startPrivateKeyring({ provider: 'keepassxc' });
    Object.assign(process.env, keyring.env);
  }, 60_000);
  beforeEach(async () => {
    // A daemon that crashed may still be dumping core (it has let go of its bus name, but not exited): it is ended.
    if (keyring && (!keyring.isRunning() || !(await keyring.isServing()))) await keyring.restartUnlocked();
  }, 60_000);
  afterAll(async () => {
    Object.assign(process.env, provided);
    await keyring?.stop();
  }, 60_000);
}
