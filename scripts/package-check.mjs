// Checks the package as users get it: from the tarball `npm pack` makes, installed into fresh consumer
// projects, never from the source tree.
//   node scripts/package-check.mjs [--json]      (run `npm run build` first; the tests do)
// Checks: what ships; ESM and CommonJS imports of every entry point; bin; type declarations compile in a
// consumer under node16 (ESM and CJS files) and bundler resolution; a default install on Linux contains no
// native module and runs no install script, and with optional dependencies omitted and `--ignore-scripts`
// everything works, the Secret Service included; and a CLI bundled with esbuild into one file passes the
// self-test; and the CommonJS build where import() is refused (Jest's node:vm).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);
// npm runs with the user's real home (under the private keyring HOME points elsewhere): its ~/.npmrc says
// where Node's headers are for keytar's source build, and its cache makes installs fast.
const npmEnv = { ...process.env, HOME: process.env.MKC_USER_HOME || process.env.HOME };
const npm = (args, cwd, extraEnv = {}) => run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'],
  { cwd, env: { ...npmEnv, ...extraEnv }, maxBuffer: 1 << 24 });
const node = (args, cwd, env = process.env) => run(process.execPath, args, { cwd, env, maxBuffer: 1 << 24 });
const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
const esbuild = join(repoRoot, 'node_modules', 'esbuild', 'bin', 'esbuild');
const standIn = join(repoRoot, 'scripts', 'safe-storage-stand-in.mjs');

export const expectedExports = ['KeychainCacheError', 'KeychainCachePlugin', 'createCachePlugin', 'createPersistence',
  'defaultCachePath', 'errorCodes', 'isKeychainCacheError'];
/** The relative and absolute targets of Markdown links in `markdown`, leaving out code blocks and code spans. */
export function markdownLinks(markdown) {
  const text = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
}

export const expectedSelfTestExports = ['formatReport', 'runSelfTest'];
export const expectedDistributedExports = ['BlobUnreadableError', 'createBlobCipher', 'createFileStore', 'createPartitionedCachePlugin', 'createPostgresStore', 'createRedisStore', 'createSessionStore', 'keyFromPersistence', 'mergeCaches', 'partitionKeys'];

async function walk(directory) {
  const out = [];
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) out.push(...await walk(path)); else out.push(path);
  }
  return out;
}
const exists = (path) => readFile(path).then(() => true, (error) => error.code === 'EISDIR');

// Path -> sha256 of every file under a dist/ folder.
async function distHashes(directory) {
  const hashes = {};
  for (const file of (await walk(directory)).sort()) hashes[file.slice(directory.length + 1)] = createHash('sha256').update(await readFile(file)).digest('hex');
  return hashes;
}

function footprint(packJson) {
  // Lifecycle scripts (prepare, prepack) may print before npm's JSON.
  const [report] = [JSON.parse(packJson.slice(packJson.indexOf('\n[') + 1 || packJson.indexOf('[')))].flat();
  const bytes = (suffix) => report.files.filter((f) => f.path.endsWith(suffix)).reduce((sum, f) => sum + f.size, 0);
  return { packedBytes: report.size, unpackedBytes: report.unpackedSize, files: report.entryCount, jsBytes: bytes('.js'), dtsBytes: bytes('.d.ts'), filename: report.filename };
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function consumer(work, name, tarball, extraInstallArgs = [], extraEnv = {}) {
  const directory = join(work, name);
  await mkdir(directory, { recursive: true });
  await writeFile(join(directory, 'package.json'), JSON.stringify({ name: `consumer-${name}`, version: '1.0.0', private: true }));
  await npm(['install', '--prefer-offline', ...extraInstallArgs, tarball], directory, extraEnv);
  return directory;
}

const checks = {
  async 'only dist/esm, dist/cjs, the docs, examples/ and package.json ship'({ tarball }) {
    const { stdout } = await run('tar', ['-tzf', tarball]);
    const files = stdout.trim().split('\n');
    const stray = files.filter((f) => !/^package\/(dist\/(esm|cjs)\/.+|docs\/.+\.md|examples\/.+|(README|CHANGELOG|SECURITY|CONTRIBUTING)\.md|LICENSE|package\.json)$/.test(f));
    check(stray.length === 0, `unexpected files in the tarball: ${stray.join(', ')}`);
    for (const needed of ['package/dist/esm/index.js', 'package/dist/cjs/index.js', 'package/dist/esm/index.d.ts',
      'package/dist/cjs/index.d.ts', 'package/dist/esm/bin.js', 'package/dist/esm/distributed/index.js', 'package/dist/cjs/distributed/index.js',
      'package/dist/esm/self-test.js', 'package/dist/cjs/self-test.js', 'package/dist/esm/testing.js', 'package/dist/cjs/testing.js', 'package/docs/testing.md']) {
      check(files.includes(needed), `${needed} is missing from the tarball`);
    }
    return { files: files.length };
  },

  async 'every .js in the tarball is reachable from an entry point in exports or bin'({ full }) {
    const root = join(full, 'node_modules', 'msal-keychain-cache');
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
    const entries = [];
    const collect = (value) => { if (typeof value === 'string') { if (value.endsWith('.js')) entries.push(value); } else if (value) Object.values(value).forEach(collect); };
    collect(pkg.exports); collect(pkg.bin);
    const reached = new Set();
    const queue = entries.map((e) => normalize(join(root, e)));
    while (queue.length > 0) {
      const file = queue.pop();
      if (reached.has(file)) continue;
      reached.add(file);
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import|require)\s*\(?\s*["'](\.\.?\/[^"']+\.js)["']/g)) queue.push(normalize(join(dirname(file), m[1])));
    }
    const shipped = (await walk(join(root, 'dist'))).filter((f) => f.endsWith('.js'));
    const dead = shipped.filter((f) => !reached.has(f)).map((f) => f.slice(root.length + 1));
    check(dead.length === 0, `.js files no entry point imports: ${dead.join(', ')}`);
    return { entries: entries.length, js: shipped.length };
  },

  async 'every relative Markdown link in the shipped README.md and docs/*.md resolves inside the package'({ full }) {
    const root = join(full, 'node_modules', 'msal-keychain-cache');
    const docs = (await walk(root)).filter((f) => f.endsWith('.md') && !f.includes('node_modules', root.length));
    const broken = [];
    for (const doc of docs) {
      for (const link of markdownLinks(await readFile(doc, 'utf8'))) {
        const target = link.split('#')[0];
        if (!target || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
        const resolved = normalize(join(dirname(doc), decodeURIComponent(target)));
        if (!resolved.startsWith(root) || !(await exists(resolved))) broken.push(`${doc.slice(root.length + 1)} -> ${link}`);
      }
    }
    check(broken.length === 0, `links to what does not ship: ${broken.join(', ')}`);
    return { documents: docs.length };
  },

  async 'every entry point imports as ESM and as CommonJS, with the same names'({ full }) {
    const esm = await node(['--input-type=module', '-e', `
      const main = await import('msal-keychain-cache');
      const selfTest = await import('msal-keychain-cache/self-test');
      const distributed = await import('msal-keychain-cache/distributed');
      const testing = await import('msal-keychain-cache/testing');
      if (Object.keys(testing).sort().join() !== 'createTokenEndpoint,testAuthority,testTenantId') throw new Error('testing exports ' + Object.keys(testing));
      const pkg = (await import('msal-keychain-cache/package.json', { with: { type: 'json' } })).default;
      console.log(JSON.stringify({ main: Object.keys(main).sort(), selfTest: Object.keys(selfTest).sort(), distributed: Object.keys(distributed).sort(), version: pkg.version }));`], full);
    const cjs = await node(['-e', `
      const main = require('msal-keychain-cache');
      const selfTest = require('msal-keychain-cache/self-test');
      const distributed = require('msal-keychain-cache/distributed');
      (async () => {
        // The CommonJS self-test runs the ESM build's (dist/cjs/self-test.js imports it): a whole run, and its report
        // formatted the same by both entries.
        const report = await selfTest.runSelfTest({ allowPlaintext: true });
        const esmSelfTest = await import('msal-keychain-cache/self-test');
        console.log(JSON.stringify({ main: Object.keys(main).sort(), selfTest: Object.keys(selfTest).sort(), distributed: Object.keys(distributed).sort(),
          errorIsClass: new main.KeychainCacheError('INVALID_OPTION', 'x') instanceof Error,
          selfTestRun: report.ok && report.steps.length === 3 && report.steps.every((step) => step.status === 'ok'),
          sameReportText: selfTest.formatReport(report, false) === esmSelfTest.formatReport(report, false) && selfTest.formatReport(report, false).includes('result     OK') }));
      })().catch((error) => { console.error(error); process.exit(1); });`], full);
    const e = JSON.parse(esm.stdout);
    const c = JSON.parse(cjs.stdout);
    check(JSON.stringify(e.main) === JSON.stringify(expectedExports), `ESM exports ${e.main}`);
    check(JSON.stringify(c.main) === JSON.stringify(expectedExports), `CommonJS exports ${c.main}`);
    check(JSON.stringify(e.selfTest) === JSON.stringify(expectedSelfTestExports), `ESM self-test exports ${e.selfTest}`);
    check(JSON.stringify(c.selfTest) === JSON.stringify(expectedSelfTestExports), `CommonJS self-test exports ${c.selfTest}`);
    check(JSON.stringify(e.distributed) === JSON.stringify(expectedDistributedExports), `ESM distributed exports ${e.distributed}`);
    check(JSON.stringify(c.distributed) === JSON.stringify(expectedDistributedExports), `CommonJS distributed exports ${c.distributed}`);
    check(c.errorIsClass, 'KeychainCacheError is not an Error subclass in CommonJS');
    check(c.selfTestRun, 'the CommonJS self-test did not run all three steps to ok (allowPlaintext: true)');
    check(c.sameReportText, 'the CommonJS formatReport differs from the ESM one, or printed no OK result');
    const bin = await run(join(full, 'node_modules', '.bin', 'msal-keychain-cache'), ['--version'], { cwd: full });
    check(bin.stdout.trim() === e.version, `bin --version printed ${bin.stdout.trim()}, package is ${e.version}`);
    return { exports: e.main.length, version: e.version };
  },

  async 'CommonJS where import() is refused (Jest\'s node:vm without --experimental-vm-modules): sign-ins under the lock work, the self-test reports why'({ full }) {
    const root = join(full, 'node_modules', 'msal-keychain-cache');
    // Built CommonJS has no import() but the self-test's one (an empty "import()" is only text in a message) (node:os, keytar and @primno/dpapi are require()d).
    const imports = [];
    for (const file of (await walk(join(root, 'dist', 'cjs'))).filter((f) => f.endsWith('.js'))) {
      for (const m of (await readFile(file, 'utf8')).matchAll(/\bimport\(\s*([^)\s][^)]*)\)/g)) imports.push(`${file.slice(root.length + 1)}: ${m[1]}`);
    }
    check(JSON.stringify(imports) === JSON.stringify(['dist/cjs/self-test.js: "../esm/self-test.js"']), `import() in the CommonJS build: ${imports.join(', ')}`);
    // Our package's files compiled as Jest compiles CommonJS: node:vm, no dynamic-import callback (every import()
    // in them throws); msal-node and Node's modules load as usual.
    const script = `
      const vm = require('node:vm'); const { readFileSync, mkdtempSync } = require('node:fs'); const { createRequire } = require('node:module');
      const { dirname, join } = require('node:path'); const { tmpdir } = require('node:os');
      const root = ${JSON.stringify(root)};
      const loaded = new Map();
      const load = (file) => {
        if (loaded.has(file)) return loaded.get(file).exports;
        const module = { exports: {} };
        loaded.set(file, module);
        const real = createRequire(file);
        const inVm = (id) => { const path = real.resolve(id); return path.startsWith(root + '/') ? load(path) : real(id); };
        vm.compileFunction(readFileSync(file, 'utf8'), ['exports', 'require', 'module', '__filename', '__dirname'], { filename: file })
          (module.exports, inVm, module, file, dirname(file));
        return module.exports;
      };
      const { createCachePlugin } = load(require.resolve('msal-keychain-cache'));
      const { createTokenEndpoint, testAuthority } = load(require.resolve('msal-keychain-cache/testing'));
      const { runSelfTest } = load(require.resolve('msal-keychain-cache/self-test'));
      const { PublicClientApplication } = require('@azure/msal-node');
      (async () => {
        const cachePath = join(mkdtempSync(join(tmpdir(), 'mkc-vm-')), 'cache.json');
        const endpoint = createTokenEndpoint();
        const client = async () => new PublicClientApplication({ auth: { clientId: 'vm-app', authority: testAuthority },
          cache: { cachePlugin: await createCachePlugin({ cachePath, backend: 'plaintext-file', allowPlaintextFallback: true, loggerOptions: { loggerCallback() {} } }) },
          system: { networkClient: endpoint.networkClient } });
        await (await client()).acquireTokenByCode({ code: 'vm-user', scopes: ['User.Read'], redirectUri: 'http://localhost' });
        const accounts = await (await client()).getTokenCache().getAllAccounts();
        let report, rejected;
        try { report = await runSelfTest({ allowPlaintext: true }); } catch (error) { rejected = String(error); }
        console.log(JSON.stringify({ accounts: accounts.length, report, rejected }));
      })().catch((error) => { console.error(error); process.exit(1); });`;
    const result = JSON.parse((await node(['-e', script], full).catch((error) => { throw new Error(`${error.stdout}${error.stderr}`); })).stdout);
    check(result.accounts === 1, `a sign-in through the CommonJS build in node:vm was not kept: ${JSON.stringify(result)}`);
    check(!result.rejected, `the CommonJS self-test rejected in node:vm: ${result.rejected}`);
    check(result.report?.ok === false && /--experimental-vm-modules/.test(result.report.error?.message ?? ''),
      `the CommonJS self-test in node:vm did not report why it cannot run: ${JSON.stringify(result.report)}`);
    return { accounts: result.accounts, selfTest: result.report.error.code };
  },

  async 'type declarations compile in a consumer: node16 ESM and CJS, node10 CJS (tsc\'s default for module commonjs), and bundler'({ full }) {
    const use = (importLine) => `${importLine}
      import type { CachePluginOptions, Persistence, BackendKind, SafeStorageLike, ErrorCode } from 'msal-keychain-cache';
      const options: CachePluginOptions = { cachePath: defaultCachePath('app'), dataProtectionScope: 'LocalMachine', lockOptions: { timeoutMs: 1000 } };
      const kind: BackendKind = 'dpapi-file';
      const code: ErrorCode = 'DECRYPT_FAILED';
      export async function main(safeStorage: SafeStorageLike): Promise<string> {
        const plugin = await createCachePlugin({ ...options, safeStorage });
        const persistence: Persistence = plugin.persistence;
        const report = await runSelfTest({ allowPlaintext: false });
        const cipher = createBlobCipher({ keys: { k: Buffer.alloc(32) }, currentKeyId: 'k' });
        const endpoint = createTokenEndpoint({ clientId: 'app' });
        try { await createPersistence({ cachePath: 'x' }); } catch (error) { if (isKeychainCacheError(error, code)) return error.message; }
        return \`\${kind} \${persistence.kind} \${report.ok} \${formatReport(report, false).length} \${typeof cipher} \${endpoint.refuse}\`;
      }`;
    const imports = `import { createCachePlugin, createPersistence, defaultCachePath, isKeychainCacheError } from 'msal-keychain-cache';
      import { runSelfTest, formatReport } from 'msal-keychain-cache/self-test';
      import { createBlobCipher } from 'msal-keychain-cache/distributed';
      import { createTokenEndpoint } from 'msal-keychain-cache/testing';`;
    await writeFile(join(full, 'esm.mts'), use(imports));
    await writeFile(join(full, 'cjs.cts'), use(imports));
    await writeFile(join(full, 'bundler.ts'), use(imports));
    await writeFile(join(full, 'node10.ts'), use(imports));
    const typeRoots = join(repoRoot, 'node_modules', '@types');
    const base = ['--noEmit', '--strict', '--typeRoots', typeRoots, '--types', 'node', '--target', 'es2022'];
    const compile = (label, args) => node([tsc, ...base, ...args], full).catch((error) => {
      throw new Error(`${label}: ${error.stdout}${error.stderr}`);
    });
    // Our declarations themselves are checked (skipLibCheck false) under node16 ESM and bundler.
    await compile('node16 ESM', ['--skipLibCheck', 'false', '--module', 'node16', '--moduleResolution', 'node16', 'esm.mts']);
    await compile('bundler', ['--skipLibCheck', 'false', '--module', 'esnext', '--moduleResolution', 'bundler', 'bundler.ts']);
    // CommonJS consumers: our declarations are checked too (a missing one would otherwise turn its types into any),
    // but @azure/msal-node's own index.d.cts fails a full library check under node16 (TS1479, it re-exports its ESM
    // declarations): its errors, and only those, are let through.
    const compileOursStrictly = (label, args) => compile(label, args).catch((error) => {
      const errors = error.message.split('\n').filter((line) => /error TS\d+/.test(line));
      const ours = errors.filter((line) => !line.replace(`${label}: `, '').startsWith('node_modules/@azure/msal-node/'));
      if (errors.length === 0 || ours.length > 0) throw error;
    });
    await compileOursStrictly('node16 CJS', ['--skipLibCheck', 'false', '--module', 'node16', '--moduleResolution', 'node16', 'cjs.cts']);
    // node10 ignores exports: the subpath entries resolve through package.json's typesVersions.
    await compileOursStrictly('node10 CJS', ['--skipLibCheck', 'false', '--module', 'commonjs', '--moduleResolution', 'node10', 'node10.ts']);
    return { checked: ['node16 ESM (.mts)', 'node16 CJS (.cts)', 'node10 CJS', 'bundler'] };
  },

  async 'a default install brings no native module and no install script (keytar is for macOS, asked for by name)'({ full }) {
    const script = `
      const { readdirSync, readFileSync, existsSync } = require('node:fs');
      const { join } = require('node:path');
      const natives = [], scripts = [];
      const walk = (dir) => { for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith('.node') && !path.includes('@primno')) natives.push(path);
        else if (entry.name === 'package.json' && !path.includes('/test/')) {
          try { const s = JSON.parse(readFileSync(path, 'utf8')).scripts ?? {};
            for (const k of ['preinstall', 'install', 'postinstall']) if (s[k] && s[k] !== 'exit 0') scripts.push(path + ': ' + k); } catch {}
        } } };
      walk('node_modules');
      console.log(JSON.stringify({ keytar: existsSync('node_modules/keytar'), natives, scripts }));`;
    const result = JSON.parse((await node(['-e', script], full)).stdout);
    check(!result.keytar, 'keytar was installed by default; it is an optional peer dependency for macOS only');
    check(result.natives.length === 0, `native modules in a default Linux install: ${result.natives.join(', ')}`);
    check(result.scripts.length === 0, `install scripts in a default Linux install: ${result.scripts.join(', ')}`);
    return result;
  },

  async 'npm install --ignore-scripts --omit=optional, no compiler on PATH: imports, plaintext, safeStorage and the Secret Service all work'({ work, tarball, env }) {
    // A PATH with node and npm and the shell tools npm needs, but no make, cc, g++ or python.
    const bin = join(work, 'no-compiler-bin');
    await mkdir(bin, { recursive: true });
    const { stdout: npmPath } = await run('sh', ['-c', 'command -v npm']);
    for (const [name, target] of [['node', process.execPath], ['npm', npmPath.trim()], ['sh', '/bin/sh']]) {
      await run('ln', ['-sf', target, join(bin, name)]);
    }
    const lean = await consumer(work, 'lean', tarball, ['--omit=optional', '--ignore-scripts'], { PATH: bin });
    const script = `
      const { createPersistence, isKeychainCacheError } = await import('msal-keychain-cache');
      const { createSafeStorageStandIn } = await import(${JSON.stringify(standIn)});
      const { existsSync } = await import('node:fs');
      const dir = ${JSON.stringify(join(lean, 'caches'))};
      const quiet = { loggerCallback() {} };
      const plain = await createPersistence({ cachePath: dir + '/plain.json', backend: 'plaintext-file', allowPlaintextFallback: true, loggerOptions: quiet });
      await plain.save('{}');
      const safe = await createPersistence({ cachePath: dir + '/safe.bin', safeStorage: createSafeStorageStandIn().safeStorage, loggerOptions: quiet });
      await safe.save('{"Account":{}}');
      const secret = await createPersistence({ cachePath: dir + '/ls.json', loggerOptions: quiet, serviceName: 'package-check-' + process.pid });
      await secret.save('{"Account":{"a":1}}');
      const libsecret = { kind: secret.kind, back: await secret.load() };
      await secret.delete();
      const natives = process.report.getReport().sharedObjects.filter((p) => p.endsWith('.node'));
      console.log(JSON.stringify({ keytar: existsSync('node_modules/keytar'), dpapi: existsSync('node_modules/@primno/dpapi'),
        plain: await plain.load(), safe: await safe.load(), safeEncrypted: safe.encrypted, libsecret, natives }));`;
    const result = JSON.parse((await node(['--input-type=module', '-e', script], lean, env)).stdout);
    check(!result.keytar && !result.dpapi, `optional dependencies were installed anyway: ${JSON.stringify(result)}`);
    check(result.plain === '{}' && result.safe === '{"Account":{}}' && result.safeEncrypted, `plaintext/safeStorage failed: ${JSON.stringify(result)}`);
    check(result.libsecret.kind === 'libsecret' && result.libsecret.back === '{"Account":{"a":1}}', `Secret Service: ${JSON.stringify(result.libsecret)}`);
    check(result.natives.length === 0, `native modules loaded: ${result.natives.join(', ')}`);
    const cjs = await node(['-e', "console.log(typeof require('msal-keychain-cache').createCachePlugin)"], lean);
    check(cjs.stdout.trim() === 'function', 'CommonJS import failed without optional dependencies');
    return { secretService: result.libsecret.kind };
  },

  async 'a CLI bundled with esbuild into one file (natives external) passes the self-test'({ full, env }) {
    await writeFile(join(full, 'cli.mjs'), `
      import { runSelfTest, formatReport } from 'msal-keychain-cache/self-test';
      const report = await runSelfTest();
      process.stdout.write(formatReport(report, false));
      process.exitCode = report.ok ? 0 : 1;`);
    await run(esbuild, ['cli.mjs', '--bundle', '--platform=node', '--format=esm', '--outfile=out/cli.mjs',
      '--external:keytar', '--external:@primno/dpapi', '--log-level=warning',
      // msal-node's ESM build uses require() for a few Node built-ins; give the bundle one.
      "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);"], { cwd: full });
    const bundled = await node(['out/cli.mjs'], full, env).catch((error) => { throw new Error(`bundled CLI failed: ${error.stdout}${error.stderr}`); });
    check(/result {5}OK/.test(bundled.stdout), `bundled self-test did not pass:\n${bundled.stdout}`);
    return { chosen: /chosen {5}(\S+)/.exec(bundled.stdout)?.[1] };
  },

  async 'a clean clone of HEAD: npm pack, an install from its git URL and npm publish --dry-run hold the same dist/, and the git install runs'({ work }) {
    const clone = join(work, 'clone');
    await run('git', ['clone', '--quiet', repoRoot, clone]);
    await npm(['ci', '--prefer-offline'], clone); // prepare builds dist/ here
    const packed = footprint((await npm(['pack', '--json', '--pack-destination', work], clone)).stdout);
    const unpackedDir = join(work, 'clone-pack');
    await mkdir(unpackedDir);
    await run('tar', ['-xzf', join(work, packed.filename), '-C', unpackedDir]);
    const fromPack = await distHashes(join(unpackedDir, 'package', 'dist'));
    const gitConsumer = await consumer(work, 'git-url', `git+file://${clone}`);
    const installed = join(gitConsumer, 'node_modules', 'msal-keychain-cache');
    const fromGit = await distHashes(join(installed, 'dist'));
    const publishOut = (await npm(['publish', '--dry-run', '--json'], clone)).stdout;
    const publishJson = JSON.parse(publishOut.slice(publishOut.search(/^[{[]/m)));
    const [published] = [Array.isArray(publishJson) ? publishJson[0] : (publishJson.files ? publishJson : Object.values(publishJson)[0])];
    const publishedDist = Object.fromEntries((published.files ?? []).filter((f) => f.path.startsWith('dist/')).map((f) => [f.path.slice(5), f.size]));
    const sizes = Object.fromEntries(await Promise.all(Object.keys(fromPack).map(async (f) => [f, (await readFile(join(unpackedDir, 'package', 'dist', f))).length])));
    check(Object.keys(fromPack).length > 0, 'the clean clone packed no dist/');
    check(JSON.stringify(fromGit) === JSON.stringify(fromPack), `git-URL install dist/ differs from npm pack's: ${JSON.stringify(Object.keys(fromGit))} vs ${JSON.stringify(Object.keys(fromPack))}`);
    check(JSON.stringify(Object.entries(publishedDist).sort()) === JSON.stringify(Object.entries(sizes).sort()), 'npm publish --dry-run lists a different dist/ than npm pack');
    const script = `const main = await import('msal-keychain-cache'); const d = await import('msal-keychain-cache/distributed');
      const t = await import('msal-keychain-cache/testing'); const e = t.createTokenEndpoint();
      console.log(typeof main.createCachePlugin, typeof d.createBlobCipher, typeof e.networkClient.sendPostRequestAsync);`;
    const ran = await node(['--input-type=module', '-e', script], gitConsumer);
    check(ran.stdout.trim() === 'function function function', `the git-URL install does not run: ${ran.stdout}`);
    const version = await run(join(gitConsumer, 'node_modules', '.bin', 'msal-keychain-cache'), ['--version'], { cwd: gitConsumer });
    check(/^\d+\.\d+\.\d+/.test(version.stdout.trim()), `bin --version printed ${version.stdout}`);
    return { distFiles: Object.keys(fromPack).length, cleanClonePack: packed };
  },
};

export async function runPackageChecks({ env = process.env } = {}) {
  const work = await mkdtemp(join(tmpdir(), 'mkc-package-'));
  const results = [];
  try {
    // The caller built dist/ (npm test does); --ignore-scripts skips prepack's second build of the shared tree.
    const { stdout } = await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], repoRoot);
    const installFootprint = footprint(stdout);
    results.push({ name: 'install footprint', ok: true, ms: 0, details: installFootprint });
    const tarball = join(work, installFootprint.filename);
    const full = await consumer(work, 'full', tarball);
    for (const [name, run] of Object.entries(checks)) {
      const started = Date.now();
      try {
        const details = await run({ work, tarball, full, env });
        results.push({ name, ok: true, ms: Date.now() - started, details });
      } catch (error) {
        results.push({ name, ok: false, ms: Date.now() - started, error: String(error?.message ?? error).slice(0, 4000) });
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return results;
}

export const checkNames = Object.keys(checks);

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const results = await runPackageChecks();
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  } else {
    for (const r of results) process.stdout.write(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${r.ms} ms)${r.ok ? '' : `\n     ${r.error}`}\n`);
  }
  process.exitCode = results.every((r) => r.ok) ? 0 : 1;
}
