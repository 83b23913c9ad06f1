// A child process of the Windows lane (Windows node under Wine). Reports through a file: a Windows
// node's stdio must not be a pipe there.
import { writeFileSync } from 'node:fs';
import { PublicClientApplication } from '@azure/msal-node';
import { createCachePlugin } from '../../dist/esm/index.js';
import { acquireFileLock } from '../../dist/internal/file-lock.js';
import { createTokenEndpoint, testAuthority } from '../../dist/esm/testing.js';

const task = JSON.parse(process.argv[2]);

if (task.mode === 'sign-in') {
  const endpoint = createTokenEndpoint();
  const app = new PublicClientApplication({
    auth: { clientId: 'contract-client', authority: testAuthority },
    cache: { cachePlugin: await createCachePlugin({ cachePath: task.cachePath }) },
    system: { networkClient: endpoint.networkClient },
  });
  const failures = [];
  await Promise.all(task.users.map(async (user) => {
    try {
      await app.acquireTokenByCode({ code: user, scopes: ['User.Read'], redirectUri: 'http://localhost' });
    } catch (error) {
      failures.push(`${user}: ${error.code ?? error.name}`);
    }
  }));
  writeFileSync(task.resultPath, JSON.stringify({ failures }));
} else if (task.mode === 'hold-and-die') {
  await acquireFileLock(task.lockPath, { timeoutMs: 5000 });
  writeFileSync(task.resultPath, JSON.stringify({ pid: process.pid }));
  // TerminateProcess: no exit handlers, no release; the lockfile stays behind as after a crash.
  process.kill(process.pid, 'SIGKILL');
} else {
  throw new Error(`unknown mode ${task.mode}`);
}
