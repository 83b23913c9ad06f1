// Builds dist/esm (ES modules) and dist/cjs (CommonJS) with type declarations for both.
// tsc emits every module (with .d.ts); esbuild then replaces the entry points (index.js and self-test.js in
// both formats, bin.js) with one-file bundles: Node's module loader costs ~0.5 ms per file, and CLIs pay for every
// import. Native and peer packages stay external and are still loaded only when a backend needs them.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
rmSync('dist', { recursive: true, force: true });
for (const project of ['tsconfig.build.json', 'tsconfig.cjs.json']) {
  execFileSync(process.execPath, [tsc, '-p', project], { stdio: 'inherit' });
}
mkdirSync('dist/cjs', { recursive: true });
writeFileSync('dist/cjs/package.json', '{ "type": "commonjs" }\n');

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['keytar', '@primno/dpapi', '@azure/msal-node'],
  legalComments: 'none',
  logLevel: 'warning',
};
await build({ ...common, entryPoints: ['src/index.ts'], format: 'esm', outfile: 'dist/esm/index.js', allowOverwrite: true });
await build({ ...common, entryPoints: ['src/index.ts'], format: 'cjs', outfile: 'dist/cjs/index.js', allowOverwrite: true });
await build({ ...common, entryPoints: ['src/self-test.ts'], format: 'esm', outfile: 'dist/esm/self-test.js', allowOverwrite: true });
await build({ ...common, entryPoints: ['src/self-test.ts'], format: 'cjs', outfile: 'dist/cjs/self-test.js', allowOverwrite: true });
await build({ ...common, entryPoints: ['src/distributed/index.ts'], format: 'esm', outfile: 'dist/esm/distributed/index.js', allowOverwrite: true });
await build({ ...common, entryPoints: ['src/distributed/index.ts'], format: 'cjs', outfile: 'dist/cjs/distributed/index.js', allowOverwrite: true });
await build({ ...common, entryPoints: ['src/bin.ts'], format: 'esm', outfile: 'dist/esm/bin.js', allowOverwrite: true });
chmodSync('dist/esm/bin.js', 0o755);
