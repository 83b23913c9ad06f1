// The cache implementations the benchmark compares, built the same way in the parent and in workers.
// Ours come from dist/ (npm run bench builds first); theirs are @azure/msal-node-extensions 5.x with
// default options. "no plugin" is msal-node's in-memory cache; "plugin floor" is a plugin that does no
// I/O at all, so msal-node's own per-call cost of having a plugin (overwriteCache re-parses the last
// deserialized string on every silent call) is in it and nothing else is.
// The cold start has floors of its own (coldImpls): msal-node alone (the app reads the cache file and hands it
// to deserialize(), no plugin) and the cold floor, a plugin that only reads the cache file and deserializes it,
// so msal-node's own first-deserialize cost is in the floor and only our extra start-up work is above it.
import { statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { mkdir } from 'node:fs/promises';

export const impls = [
  { id: 'none', label: 'no plugin (msal-node memory)', family: 'floor' },
  { id: 'floor', label: 'plugin floor (no I/O)', family: 'floor' },
  // What any plugin that notices another process's write on every call must at least do: one stat of a path.
  { id: 'floor-stat', label: 'plugin floor + one stat per call', family: 'floor' },
  { id: 'ours-file', label: 'ours: plaintext-file', family: 'ours', store: 'file' },
  { id: 'ours-libsecret', label: 'ours: libsecret', family: 'ours', store: 'libsecret' },
  { id: 'ext-file', label: 'msal-node-extensions: FilePersistence', family: 'ext', store: 'file' },
  { id: 'ext-libsecret', label: 'msal-node-extensions: LibSecretPersistence', family: 'ext', store: 'libsecret' },
];

export const coldImpls = [
  { id: 'none-file', label: 'msal-node alone (app reads the file, deserialize)', family: 'floor', store: 'file' },
  { id: 'floor-file', label: 'cold floor (plugin: read file + deserialize)', family: 'floor', store: 'file' },
  { id: 'ours-file', label: 'ours: plaintext-file', family: 'ours', store: 'file' },
  { id: 'ours-libsecret', label: 'ours: libsecret', family: 'ours', store: 'libsecret' },
  // The same, where the item was written by keytar or msal-node-extensions: their marker names no item, so the first
  // read searches for it (a lock check and a search more), as until our first save.
  { id: 'ours-libsecret-foreign', label: 'ours: libsecret, item written by keytar', family: 'ours', store: 'libsecret', seedWith: 'keytar' },
  { id: 'ext-file', label: 'msal-node-extensions: FilePersistence', family: 'ext', store: 'file' },
  { id: 'ext-libsecret', label: 'msal-node-extensions: LibSecretPersistence', family: 'ext', store: 'libsecret' },
];

export const byId = Object.fromEntries([...impls, ...coldImpls].map((impl) => [impl.id, impl]));
export const accountName = 'MSALCache';

/** A fresh location: a cache path in `directory` and a keyring service of its own. */
export function location(directory, tag) {
  return { cachePath: join(directory, tag, 'msal-cache.json'), serviceName: `mkc-bench-${tag}-${process.pid}` };
}

function floorPlugin(statPath) {
  let stored;
  let loaded = false;
  return {
    async beforeCacheAccess(context) {
      if (statPath) statSync(statPath, { throwIfNoEntry: false });
      if (loaded || stored === undefined) return;
      context.tokenCache.deserialize(stored);
      loaded = true;
    },
    async afterCacheAccess(context) {
      if (!context.cacheHasChanged) return;
      stored = context.tokenCache.serialize();
      // msal-node rebuilds memory from the last deserialized string on silent calls: hand it the new one.
      context.tokenCache.deserialize(stored);
    },
    seed(json) { stored = json; loaded = false; },
  };
}

/** The cold floor: reads the cache file once, at the first access, and deserializes it; writes are not its job. */
function readOnlyFilePlugin(readFile, cachePath) {
  let loaded = false;
  return {
    async beforeCacheAccess(context) {
      if (loaded) return;
      loaded = true;
      context.tokenCache.deserialize(await readFile(cachePath, 'utf8'));
    },
    async afterCacheAccess() {},
  };
}

/** What an implementation imports (the cold start times this phase on its own). */
export function importPackage(id) {
  switch (id) {
    case 'none': case 'floor': case 'floor-stat': return Promise.resolve({});
    case 'none-file': case 'floor-file': return import('node:fs/promises');
    case 'ours-file': case 'ours-libsecret': case 'ours-libsecret-foreign': return import('../dist/esm/index.js');
    case 'ext-file': case 'ext-libsecret': return import('@azure/msal-node-extensions');
    default: throw new Error(`unknown implementation ${id}`);
  }
}

/** The ICachePlugin for one implementation from its imported package, or undefined for "no plugin". */
export async function createPlugin(id, pkg, where) {
  switch (id) {
    case 'none': case 'none-file': return undefined;
    case 'floor': return floorPlugin();
    case 'floor-stat': return floorPlugin(where.cachePath);
    case 'floor-file': return readOnlyFilePlugin(pkg.readFile, where.cachePath);
    case 'ours-file':
    case 'ours-libsecret':
    case 'ours-libsecret-foreign':
      return pkg.createCachePlugin({
        cachePath: where.cachePath, serviceName: where.serviceName, accountName,
        backend: id === 'ours-file' ? 'plaintext-file' : 'libsecret',
        allowPlaintextFallback: id === 'ours-file',
        loggerOptions: { loggerCallback: () => undefined },
      });
    case 'ext-file':
      return new pkg.PersistenceCachePlugin(await pkg.FilePersistence.create(where.cachePath));
    case 'ext-libsecret':
      return new pkg.PersistenceCachePlugin(await pkg.LibSecretPersistence.create(where.cachePath, where.serviceName, accountName));
    default: throw new Error(`unknown implementation ${id}`);
  }
}

/** The ICachePlugin for one implementation, or undefined for "no plugin". */
export async function makePlugin(id, where) {
  return createPlugin(id, await importPackage(id), where);
}

/** Puts a serialized cache into the implementation's store as if it had written it. */
export async function seedStore(id, where, json, plugin) {
  if (id === 'none') return;
  if (id === 'floor') { plugin.seed(json); return; }
  if (id === 'floor-stat') {
    // The file its one stat per call looks at, as ours looks at the cache file.
    plugin.seed(json);
    await mkdir(dirname(where.cachePath), { recursive: true, mode: 0o700 });
    await writeFile(where.cachePath, json, { mode: 0o600 });
    return;
  }
  if (!byId[id].store) return;
  await mkdir(dirname(where.cachePath), { recursive: true, mode: 0o700 });
  if (byId[id].store === 'file') {
    await writeFile(where.cachePath, json, { mode: 0o600 });
    return;
  }
  if (byId[id].family === 'ours' && byId[id].seedWith !== 'keytar') {
    // As our save leaves it: the item, and a marker that names it.
    const { createPersistence } = await import('../dist/esm/index.js');
    await (await createPersistence({ cachePath: where.cachePath, serviceName: where.serviceName, accountName, backend: 'libsecret' })).save(json);
    return;
  }
  const keytar = (await import('keytar')).default;
  await keytar.setPassword(where.serviceName, accountName, json);
  await writeFile(where.cachePath, '{}', { mode: 0o600 });
}

export async function cleanStore(id, where) {
  if (byId[id].store !== 'libsecret') return;
  const keytar = (await import('keytar')).default;
  await keytar.deletePassword(where.serviceName, accountName).catch(() => undefined);
}
