// The cache implementations the benchmark compares, built the same way in the parent and in workers.
// Ours come from dist/ (npm run bench builds first); theirs are @azure/msal-node-extensions 5.x with
// default options. "no plugin" is msal-node's in-memory cache; "plugin floor" is a plugin that does no
// I/O at all, so msal-node's own per-call cost of having a plugin (overwriteCache re-parses the last
// deserialized string on every silent call) is in it and nothing else is.
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { mkdir } from 'node:fs/promises';

export const impls = [
  { id: 'none', label: 'no plugin (msal-node memory)', family: 'floor' },
  { id: 'floor', label: 'plugin floor (no I/O)', family: 'floor' },
  { id: 'ours-file', label: 'ours: plaintext-file', family: 'ours', store: 'file' },
  { id: 'ours-libsecret', label: 'ours: libsecret', family: 'ours', store: 'libsecret' },
  { id: 'ext-file', label: 'msal-node-extensions: FilePersistence', family: 'ext', store: 'file' },
  { id: 'ext-libsecret', label: 'msal-node-extensions: LibSecretPersistence', family: 'ext', store: 'libsecret' },
];

export const byId = Object.fromEntries(impls.map((impl) => [impl.id, impl]));
export const accountName = 'MSALCache';

/** A fresh location: a cache path in `directory` and a keyring service of its own. */
export function location(directory, tag) {
  return { cachePath: join(directory, tag, 'msal-cache.json'), serviceName: `mkc-bench-${tag}-${process.pid}` };
}

function floorPlugin() {
  let stored;
  let loaded = false;
  return {
    async beforeCacheAccess(context) {
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

/** The ICachePlugin for one implementation, or undefined for "no plugin". */
export async function makePlugin(id, where) {
  switch (id) {
    case 'none': return undefined;
    case 'floor': return floorPlugin();
    case 'ours-file':
    case 'ours-libsecret': {
      const { createCachePlugin } = await import('../dist/esm/index.js');
      return createCachePlugin({
        cachePath: where.cachePath, serviceName: where.serviceName, accountName,
        backend: id === 'ours-file' ? 'plaintext-file' : 'libsecret',
        allowPlaintextFallback: id === 'ours-file',
        loggerOptions: { loggerCallback: () => undefined },
      });
    }
    case 'ext-file': {
      const ext = await import('@azure/msal-node-extensions');
      return new ext.PersistenceCachePlugin(await ext.FilePersistence.create(where.cachePath));
    }
    case 'ext-libsecret': {
      const ext = await import('@azure/msal-node-extensions');
      return new ext.PersistenceCachePlugin(await ext.LibSecretPersistence.create(where.cachePath, where.serviceName, accountName));
    }
    default: throw new Error(`unknown implementation ${id}`);
  }
}

/** Puts a serialized cache into the implementation's store as if it had written it. */
export async function seedStore(id, where, json, plugin) {
  if (id === 'none') return;
  if (id === 'floor') { plugin.seed(json); return; }
  await mkdir(dirname(where.cachePath), { recursive: true, mode: 0o700 });
  if (byId[id].store === 'file') {
    await writeFile(where.cachePath, json, { mode: 0o600 });
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
