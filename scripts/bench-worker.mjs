// A benchmark child process: node scripts/bench-worker.mjs '<json task>'
//   sign-in: waits for "GO" on stdin, signs in its users one after another, prints RESULT {startMs, endMs, failures}
//   hold:    starts a sign-in and stops inside the write, with the cache lock held, printing HOLDING; then waits to be killed
//   cold:    from process start, loads msal-node and the plugin and gets one token silently; prints RESULT with the phases
//            (import, create, first read, first silent), the token's time since process start, and its wall-clock time
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

if (task.mode === 'cold') {
  // The benchmark's own parts first (the stand-in token endpoint), outside the phases: the same for everyone.
  const { importPackage, createPlugin } = await import('./bench-impls.mjs');
  const { createTokenEndpoint, testAuthority } = await import('../dist/esm/testing.js');
  const endpoint = createTokenEndpoint();
  endpoint.refuse = true;
  const t0 = performance.now();
  const { PublicClientApplication } = await import('@azure/msal-node');
  const pkg = await importPackage(task.impl);
  const t1 = performance.now();
  const plugin = await createPlugin(task.impl, pkg, task.where);
  const client = new PublicClientApplication({ auth: { clientId: 'bench-client', authority: testAuthority }, cache: plugin ? { cachePlugin: plugin } : undefined, system: { networkClient: endpoint.networkClient } });
  // msal-node alone: the app reads the cache file and hands it over itself.
  if (task.impl === 'none-file') client.getTokenCache().deserialize(await pkg.readFile(task.where.cachePath, 'utf8'));
  const t2 = performance.now();
  const [account] = await client.getTokenCache().getAllAccounts();
  const t3 = performance.now();
  await client.acquireTokenSilent({ account, scopes });
  const t4 = performance.now();
  say(`RESULT ${JSON.stringify({ msToToken: t4, tokenAt: now(), importMs: t1 - t0, createMs: t2 - t1, firstReadMs: t3 - t2, firstSilentMs: t4 - t3 })}`);
  process.exit(0);
}

const { PublicClientApplication } = await import('@azure/msal-node');
const { makePlugin } = await import('./bench-impls.mjs');
const { createTokenEndpoint, testAuthority } = await import('../dist/esm/testing.js');
const endpoint = createTokenEndpoint();
const plugin = await makePlugin(task.impl, task.where);

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
