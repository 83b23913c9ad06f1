// A benchmark child process: node scripts/bench-worker.mjs '<json task>'
//   sign-in: waits for "GO" on stdin, signs in its users one after another, prints RESULT {startMs, endMs, failures}
//   hold:    starts a sign-in and stops inside the write, with the cache lock held, printing HOLDING; then waits to be killed
//   cold:    from process start, loads msal-node and the plugin and gets one token silently; prints RESULT {msToToken, importMs}
//   import:  imports the package alone; prints RESULT {importMs, nativeLoaded}
import { performance } from 'node:perf_hooks';

const task = JSON.parse(process.argv[2]);
const say = (line) => process.stdout.write(`${line}\n`);
const scopes = ['User.Read'];
const now = () => performance.timeOrigin + performance.now();

if (task.mode === 'import') {
  await import('./bench-warmup.mjs');
  const started = performance.now();
  await import(task.specifier);
  const importMs = performance.now() - started;
  const nativeLoaded = process.report.getReport().sharedObjects.filter((p) => p.endsWith('.node'));
  say(`RESULT ${JSON.stringify({ importMs, nativeLoaded })}`);
  process.exit(0);
}

const importStarted = performance.now();
const { PublicClientApplication } = await import('@azure/msal-node');
const { makePlugin } = await import('./bench-impls.mjs');
const { createTokenEndpoint, testAuthority } = await import('../dist/esm/token-endpoint.js');
const importMs = performance.now() - importStarted;

const endpoint = createTokenEndpoint();
const plugin = await makePlugin(task.impl, task.where);

if (task.mode === 'cold') {
  endpoint.refuse = true;
  const client = new PublicClientApplication({ auth: { clientId: 'bench-client', authority: testAuthority }, cache: { cachePlugin: plugin }, system: { networkClient: endpoint.networkClient } });
  const [account] = await client.getTokenCache().getAllAccounts();
  await client.acquireTokenSilent({ account, scopes });
  say(`RESULT ${JSON.stringify({ msToToken: performance.now(), importMs })}`);
  process.exit(0);
}

let cachePlugin = plugin;
if (task.mode === 'hold') {
  cachePlugin = {
    async beforeCacheAccess(context) {
      await plugin.beforeCacheAccess(context);
      if (context.cacheHasChanged) {
        say(`HOLDING ${process.pid}`);
        await new Promise(() => undefined); // killed here, lock held
      }
    },
    afterCacheAccess: (context) => plugin.afterCacheAccess(context),
  };
}
const client = new PublicClientApplication({
  auth: { clientId: 'bench-client', authority: testAuthority },
  cache: { cachePlugin },
  system: { networkClient: endpoint.networkClient },
});
const signIn = (user) => client.acquireTokenByCode({ code: user, scopes, redirectUri: 'http://localhost' });

if (task.mode === 'hold') {
  await signIn('holder');
} else if (task.mode === 'sign-in') {
  say('READY');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  const failures = [];
  const startMs = now();
  for (const user of task.users) {
    try {
      await signIn(user);
    } catch (error) {
      failures.push(String(error?.errorCode ?? error?.code ?? error?.name ?? error).slice(0, 80));
    }
  }
  say(`RESULT ${JSON.stringify({ startMs, endMs: now(), failures })}`);
  process.exit(0);
}
