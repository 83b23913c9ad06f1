// Starts the private Secret Service every test and child process uses, so no test ever touches a real
// user's keyring. On Linux a failure to start it fails the run: those tests must not silently skip.
// The `light` and `heavy` projects run on gnome-keyring (this file's default export); the `keepassxc`
// project runs the Secret Service suites again on KeePassXC (global-setup-keepassxc.ts).
import type { TestProject } from 'vitest/node';
import { startPrivateKeyring, type SecretServiceProvider } from '../scripts/private-keyring.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    keyringEnv: Record<string, string>;
  }
}

const install: Record<SecretServiceProvider, string> = {
  'gnome-keyring': '`sudo apt-get install -y dbus gnome-keyring libsecret-1-dev pkg-config`',
  keepassxc: '`sudo apt-get install -y --no-install-recommends dbus keepassxc libsecret-tools`',
};

export async function startSecretServiceFor(project: TestProject, provider: SecretServiceProvider) {
  if (process.platform !== 'linux') {
    project.provide('keyringEnv', {});
    return;
  }
  const keyring = await startPrivateKeyring({ provider }).catch((error: unknown) => {
    throw new Error(`Could not start the private Secret Service (${provider}) the Linux tests need. Install: ` +
      `${install[provider]} (CI: .ci/run does this). ` +
      `Cause: ${error instanceof Error ? error.message : String(error)}`);
  });
  project.provide('keyringEnv', keyring.env);
  return () => keyring.stop();
}

export default (project: TestProject) => startSecretServiceFor(project, 'gnome-keyring');
