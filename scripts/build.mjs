// Builds dist/esm (ES modules) and dist/cjs (CommonJS) with type declarations for both.
// tsc emits every module (with .d.ts); esbuild then replaces the entry points (index.js and self-test.js in
// both formats, bin.js) with one-file bundles: Node's module loader costs ~0.5 ms per file, and CLIs pay for every
// import. Native and peer packages stay external and are still loaded only when a backend needs them.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
// Built into a staging folder and swapped in at the end: a build never leaves dist/ half-written or missing
// for the seconds it takes (tests and processes that run the built package meanwhile keep working).
const out = `dist.staging-${process.pid}`;
rmSync(out, { recursive: true, force: true });
for (const [project, format] of [['tsconfig.build.json', 'esm'], ['tsconfig.cjs.json', 'cjs']]) {
  execFileSync(process.execPath, [tsc, '-p', project, '--outDir', `${out}/${format}`], { stdio: 'inherit' });
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
await build({ ...common, entryPoints: ['src/index.ts'], format: 'esm', outfile: `${out}/esm/index.js`, allowOverwrite: true });
await build({ ...common, entryPoints: ['src/index.ts'], format: 'cjs', outfile: `${out}/cjs/index.js`, allowOverwrite: true });
await build({ ...common, entryPoints: ['src/self-test.ts'], format: 'esm', outfile: `${out}/esm/self-test.js`, allowOverwrite: true });
await build({ ...common, entryPoints: ['src/self-test.ts'], format: 'cjs', outfile: `${out}/cjs/self-test.js`, allowOverwrite: true });
await build({ ...common, entryPoints: ['src/distributed/index.ts'], format: 'esm', outfile: `${out}/esm/distributed/index.js`, allowOverwrite: true });
await build({ ...common, entryPoints: ['src/distributed/index.ts'], format: 'cjs', outfile: `${out}/cjs/distributed/index.js`, allowOverwrite: true });
await build({ ...common, entryPoints: ['src/bin.ts'], format: 'esm', outfile: `${out}/esm/bin.js`, allowOverwrite: true });
chmodSync(`${out}/esm/bin.js`, 0o755);
const old = `dist.old-${process.pid}`;
if (existsSync('dist')) renameSync('dist', old);
renameSync(out, 'dist');
rmSync(old, { recursive: true, force: true });
