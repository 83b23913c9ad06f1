// Builds dist/esm (ES modules) and dist/cjs (CommonJS) with type declarations for both.
// tsc emits declarations only (.d.ts, which the public types need); esbuild writes the JavaScript: one bundle per
// entry point in `exports` and `bin` (index, self-test, distributed, testing; bin), plus the ESM chunks they load.
// No other .js is emitted, so nothing ships that no entry imports. One file per entry also matters at run time:
// Node's module loader costs ~0.5 ms per file, and CLIs pay for every import. Native and peer packages stay
// external and are still loaded only when a backend needs them.
// dist/internal/ holds bundles of two internal modules that our test fixtures and the Windows lane drive directly
// (file-lock, dpapi-file); it is not in package.json's `files`, so it never ships.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
// Built into a staging folder and swapped in at the end: a build never leaves dist/ half-written or missing
// for the seconds it takes (tests and processes that run the built package meanwhile keep working).
const out = `dist.staging-${process.pid}`;
rmSync(out, { recursive: true, force: true });
for (const [project, format] of [['tsconfig.build.json', 'esm'], ['tsconfig.cjs.json', 'cjs']]) {
  execFileSync(process.execPath, [tsc, '-p', project, '--emitDeclarationOnly', '--outDir', `${out}/${format}`], { stdio: 'inherit' });
}
// Only the declarations that the entry points' types reach ship (index, self-test, distributed, testing): tsc writes one
// per source file, and most of ours are internal. A declaration imports others by relative path ('./x.js' or
// import('./x.js')), so the walk follows those.
for (const format of ['esm', 'cjs']) {
  const root = `${out}/${format}`;
  const reached = new Set();
  const visit = (file) => {
    if (reached.has(file)) return;
    if (!existsSync(file)) throw new Error(`a declaration imports ${file}, which tsc did not write`);
    reached.add(file);
    for (const [, specifier] of readFileSync(file, 'utf8').matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      visit(join(dirname(file), specifier.replace(/\.js$/, '.d.ts')));
    }
  };
  for (const entry of ['index', 'self-test', 'distributed/index', 'testing']) visit(join(root, `${entry}.d.ts`));
  for (const file of readdirSync(root, { recursive: true, encoding: 'utf8' })) {
    const path = join(root, file);
    if (path.endsWith('.d.ts') && !reached.has(path)) rmSync(path);
  }
}
mkdirSync(`${out}/cjs`, { recursive: true });
writeFileSync(`${out}/cjs/package.json`, '{ "type": "commonjs" }\n');

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['keytar', '@primno/dpapi', '@azure/msal-node'],
  legalComments: 'none',
  logLevel: 'warning',
};
// The libsecret backend is imported dynamically (create-persistence.ts), so that an import does not pay for its
// node:crypto and node:net. ESM: code splitting puts it in a chunk of its own (chunks/), loaded when the backend is chosen; one build per entry
// point, so entries stay separate copies as before. CJS has no splitting: esbuild wraps such a module in a lazy
// initializer, and its require() calls (node:crypto, node:net) run only when it is first imported.
const esm = (entry, outdir) => build({ ...common, entryPoints: [entry], format: 'esm', splitting: true, outdir, chunkNames: 'chunks/[name]-[hash]', allowOverwrite: true });
// CommonJS without import(): a runtime that compiles CommonJS through node:vm with no dynamic-import callback (Jest
// without --experimental-vm-modules) refuses every import(), so node:os, keytar and @primno/dpapi are require()d,
// still only when first needed.
const cjs = (entry, outfile) => build({ ...common, entryPoints: [entry], format: 'cjs', outfile, allowOverwrite: true, supported: { 'dynamic-import': false } });
await esm('src/index.ts', `${out}/esm`);
await cjs('src/index.ts', `${out}/cjs/index.js`);
await esm('src/self-test.ts', `${out}/esm`);
// An entry that loads the built self-test entry (dist/esm/self-test.js) at `path` instead of bundling a copy of it
// and of its chunks: `./self-test.js` imported from src/<importer> stays an import.
const selfTestAt = (importer, path) => ({
  name: `self-test-from-${importer}`,
  setup(builder) {
    builder.onResolve({ filter: /^\.\/self-test\.js$/ }, (args) =>
      (args.importer.endsWith(join('src', importer)) ? { path, external: true } : undefined));
  },
});
// CommonJS self-test: src/self-test-cjs.ts, which runs the ESM build's self-test through import() (~170 KB less to install).
await build({ ...common, entryPoints: ['src/self-test-cjs.ts'], format: 'cjs', outfile: `${out}/cjs/self-test.js`, allowOverwrite: true, plugins: [selfTestAt('self-test-cjs.ts', '../esm/self-test.js')] });
await esm('src/distributed/index.ts', `${out}/esm/distributed`);
await cjs('src/distributed/index.ts', `${out}/cjs/distributed/index.js`);
await esm('src/testing.ts', `${out}/esm`);
await cjs('src/testing.ts', `${out}/cjs/testing.js`);
// The command imports the self-test entry beside it (dist/esm/self-test.js) instead of bundling a second copy of it
// and of its chunks: 155 KB less to install, and one more file only for the command, never for an import.
await build({ ...common, entryPoints: ['src/bin.ts'], format: 'esm', outdir: `${out}/esm`, allowOverwrite: true, plugins: [selfTestAt('bin.ts', './self-test.js')] });
await esm('src/file-lock.ts', `${out}/internal`);
await cjs('src/file-lock.ts', `${out}/internal/file-lock.cjs`);
await esm('src/persistence/dpapi-file.ts', `${out}/internal`);
chmodSync(`${out}/esm/bin.js`, 0o755);
const old = `dist.old-${process.pid}`;
if (existsSync('dist')) renameSync('dist', old);
renameSync(out, 'dist');
rmSync(old, { recursive: true, force: true });
