// A throwaway PostgreSQL server for tests: initdb in a temp dir, its own free port on 127.0.0.1, trust
// authentication for a user `mkc`. initdb refuses to run as root, so as root it runs as the `postgres`
// system user that Debian's package creates.
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.mjs';

function binaries() {
  const root = '/usr/lib/postgresql';
  const version = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a))[0] : undefined;
  if (!version) throw new Error('PostgreSQL is not installed. Install it: sudo apt-get install -y postgresql (.ci/run does this).');
  return join(root, version, 'bin');
}

/** @returns {Promise<{ connectionString: string, port: number, stop: () => Promise<void> }>} */
export async function startPostgres() {
  const bin = binaries();
  const dir = await mkdtemp(join(tmpdir(), 'mkc-postgres-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  let ids = {};
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    ids = { uid, gid };
  }
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'mkc', '--auth=trust', '--no-sync', '-E', 'UTF8'], { stdio: 'ignore', ...ids, cwd: dir });
  const port = await freePort();
  const child = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off'], { stdio: ['ignore', 'ignore', 'pipe'], ...ids, cwd: dir });
  let log = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`postgres did not start: ${log}`)), 20_000);
    child.stderr.setEncoding('utf8').on('data', (chunk) => {
      log += chunk;
      if (log.includes('ready to accept connections')) { clearTimeout(timer); resolve(undefined); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`postgres exited (${code}): ${log}`)); });
  });
  return {
    connectionString: `postgres://mkc@127.0.0.1:${port}/postgres`,
    port,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGINT'); // fast shutdown
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
