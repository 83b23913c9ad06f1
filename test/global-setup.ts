// Starts the private Secret Service every test and child process uses, so no test ever touches a real
// user's keyring. On Linux a failure to start it fails the run: those tests must not silently skip.
import type { TestProject } from 'vitest/node';
import { startPrivateKeyring } from '../scripts/private-keyring.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    keyringEnv: Record<string, string>;
  }
}

export default async function setup(project: TestProject) {
  if (process.platform !== 'linux') {
    project.provide('keyringEnv', {});
    return;
  }
  const keyring = await startPrivateKeyring().catch((error: unknown) => {
    throw new Error('Could not start the private Secret Service the Linux tests need. Install: ' +
      '`sudo apt-get install -y dbus gnome-keyring libsecret-1-dev pkg-config` (CI: .ci/run does this). ' +
      `Cause: ${error instanceof Error ? error.message : String(error)}`);
  });
  project.provide('keyringEnv', keyring.env);
  return () => keyring.stop();
}
