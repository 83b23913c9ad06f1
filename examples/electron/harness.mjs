// Runs auth.mjs in plain Node, as Electron would, with scripts/safe-storage-stand-in.mjs for safeStorage,
// a stand-in `app`, the in-process token endpoint for the network, and a "browser" that completes the
// sign-in by calling msal-node's loopback redirect the way the identity provider would.
//   node examples/electron/harness.mjs <userData directory>      prints one JSON line of what happened
import { createSafeStorageStandIn } from '../../scripts/safe-storage-stand-in.mjs';
import { createTokenEndpoint, testAuthority } from 'msal-keychain-cache/testing';
import { createAuth } from './auth.mjs';

const userData = process.argv[2];
const standIn = createSafeStorageStandIn({ ready: false, keyringPassword: 'harness' });
let ready;
const app = {
  whenReady: () => (ready ??= new Promise((resolve) => setTimeout(() => { standIn.emitReady(); resolve(undefined); }, 20))),
  getPath: () => userData,
};
const endpoint = createTokenEndpoint();
const browser = async (url) => {
  // The identity provider sends the user back to msal-node's loopback server: a form_post of the code
  // and the state it was given.
  const request = new URL(url);
  await fetch(request.searchParams.get('redirect_uri'), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ code: 'electron-user', state: request.searchParams.get('state') }),
  });
};
const options = { app, safeStorage: standIn.safeStorage, openBrowser: browser, clientId: 'electron-example', authority: testAuthority,
  system: { networkClient: endpoint.networkClient } };

const first = await createAuth(options);
const changes = [];
first.onAccountsChanged((change) => changes.push({ added: change.added.map((a) => a.username), removed: change.removed.map((a) => a.username) }));
const account = await first.signIn();
endpoint.refuse = true; // from here on only the cache can answer
const second = await createAuth(options); // as after a restart of the app
const token = await second.getToken();
await second.signOut();
// `first` is still subscribed: it hears the sign-out too (through its watch on the cache file).
for (let i = 0; i < 200 && changes.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
const afterSignOut = await (await createAuth(options)).account();
console.log(JSON.stringify({ storage: first.storage, username: account?.username, tokenFromCache: typeof token === 'string' && token.startsWith('at.'),
  afterSignOut: afterSignOut ?? null, changes }));
process.exit(0);
