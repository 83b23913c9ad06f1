// Makes every `@azure/msal-node` import resolve to another installed copy (the version matrix's msal-node 3.x)
// instead of node_modules/@azure/msal-node: `import`, `import()` and `require()`, in this process, its worker
// threads and its child processes. scripts/version-matrix.mjs loads it in every process through
//   NODE_OPTIONS="--require <this file>"   MKC_MSAL_NODE_ROOT=<a directory whose node_modules holds the copy>
// (NODE_OPTIONS is inherited by child processes, and its --require preloads run in every worker thread, eval
// workers included, which --import preloads skip). Test
// files themselves are resolved by vitest, not by Node: vitest.config.ts reads the same variable for its alias.
// Without MKC_MSAL_NODE_ROOT this module does nothing.
'use strict';
const { existsSync } = require('node:fs');
const Module = require('node:module');
const { join } = require('node:path');
const { pathToFileURL } = require('node:url');

const root = process.env.MKC_MSAL_NODE_ROOT;
// The module.register() hooks (Node 20), loaded in Node's hooks thread: inline, so that thread does not run this file.
const hooksThreadSource = `let parentURL;
export function initialize(data) { parentURL = data.parentURL; }
export function resolve(specifier, context, nextResolve) {
  const swap = specifier === '@azure/msal-node' || specifier.startsWith('@azure/msal-node/');
  return nextResolve(specifier, swap ? { ...context, parentURL } : context);
}`;
const isMsal = (specifier) => specifier === '@azure/msal-node' || specifier.startsWith('@azure/msal-node/');

if (root) {
  const anchor = join(root, 'package.json');
  if (!existsSync(join(root, 'node_modules', '@azure', 'msal-node', 'package.json'))) {
    throw new Error(`MKC_MSAL_NODE_ROOT=${root} holds no node_modules/@azure/msal-node`);
  }
  // Resolved as if imported from `root`: the copy's own exports map and conditions (import vs require) apply.
  const parentURL = pathToFileURL(anchor).href;
  // require(): the CommonJS resolver, looking in `root`'s node_modules.
  const original = Module._resolveFilename;
  Module._resolveFilename = function (request, parent, isMain, options) {
    return original.call(this, request, parent, isMain, isMsal(request) ? { ...options, paths: [root] } : options);
  };
  // import and import(): an ESM resolve hook.
  Module.register(`data:text/javascript,${encodeURIComponent(hooksThreadSource)}`, { data: { parentURL } });
}
