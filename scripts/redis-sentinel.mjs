// A throwaway Redis Sentinel deployment for tests: one master, one replica (--replicaof) and three
// `redis-server --sentinel` (quorum 2) on free ports of 127.0.0.1, each with its own config file in one temp
// dir (Sentinel rewrites its config, and so do the servers it reconfigures on a failover). stop() kills them all.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.mjs';

const run = promisify(execFile);
const name = 'mymaster';

/** @param {number} port @param {...string} args */
async function cli(port, ...args) {
  return (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])).stdout.trim();
}

/**
 * @returns {Promise<{
 *   name: string,
 *   sentinels: { host: string, port: number }[],
 *   servers: { host: string, port: number }[],
 *   master: () => Promise<{ host: string, port: number }>,
 *   failover: () => Promise<{ host: string, port: number }>,
 *   stop: () => Promise<void>,
 * }>}
 */
export async function startRedisSentinel() {
  const dir = await mkdtemp(join(tmpdir(), 'mkc-redis-sentinel-'));
  /** @type {import('node:child_process').ChildProcess[]} */
  const children = [];
  const stop = async () => {
    await Promise.all(children.map((child) => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(undefined);
      child.once('exit', resolve);
      child.kill('SIGKILL');
    })));
    await rm(dir, { recursive: true, force: true });
  };
  /** @param {string} file @param {string[]} lines @param {string[]} args */
  const start = async (file, lines, args = []) => {
    const path = join(dir, file);
    await writeFile(path, `${lines.join('\n')}\n`);
    children.push(spawn('redis-server', [path, ...args], { stdio: 'ignore' }));
  };
  try {
    const [masterPort, replicaPort, ...sentinelPorts] = await Promise.all([0, 1, 2, 3, 4].map(() => freePort()));
    const server = (/** @type {number} */ port) => [`port ${port}`, 'bind 127.0.0.1', 'daemonize no', 'save ""', 'appendonly no', `dir ${dir}`,
      `dbfilename dump-${port}.rdb`];
    await start(`redis-${masterPort}.conf`, server(masterPort));
    await start(`redis-${replicaPort}.conf`, [...server(replicaPort), `replicaof 127.0.0.1 ${masterPort}`]);
    // The replica is in sync before the sentinels look, so each finds it on its first INFO of the master.
    await until(async () => /master_link_status:up/.test(await cli(replicaPort, 'INFO', 'replication')));
    for (const port of sentinelPorts) {
      await start(`sentinel-${port}.conf`, [`port ${port}`, 'bind 127.0.0.1', 'daemonize no', `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`], ['--sentinel']);
    }
    // Every sentinel sees the master, its replica and the two other sentinels (they find each other by hello
    // messages on the master, every 2 s).
    for (const port of sentinelPorts) {
      await until(async () => {
        const fields = (await cli(port, 'SENTINEL', 'MASTER', name)).split('\n');
        const field = (/** @type {string} */ key) => fields[fields.indexOf(key) + 1];
        return field('num-slaves') === '1' && field('num-other-sentinels') === '2' && field('flags') === 'master';
      });
    }
    const master = async () => {
      const [host, port] = (await cli(sentinelPorts[0], 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)).split('\n');
      return { host: /** @type {string} */ (host), port: Number(port) };
    };
    // SENTINEL FAILOVER (forced, no agreement needed; retried while the replica is not yet fit), then wait until
    // every sentinel names the new master and it answers as a master (about 1.5 s). Sentinel demotes the old
    // master to its replica only some 10 s later (and it is in sync again after some 16 s): not waited for.
    const failover = async () => {
      const before = await master();
      await until(async () => (await cli(sentinelPorts[0], 'SENTINEL', 'FAILOVER', name)) === 'OK');
      /** @type {{ host: string, port: number }} */
      let after = before;
      await until(async () => {
        after = await master();
        return after.port !== before.port;
      }, 30_000);
      for (const port of sentinelPorts) {
        await until(async () => (await cli(port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)).split('\n')[1] === String(after.port), 30_000);
      }
      await until(async () => /role:master/.test(await cli(after.port, 'INFO', 'replication')), 30_000);
      return after;
    };
    return {
      name,
      sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
      servers: [masterPort, replicaPort].map((port) => ({ host: '127.0.0.1', port })),
      master,
      failover,
      stop,
    };
  } catch (error) {
    await stop();
    throw new Error(`Redis Sentinel did not start (redis-server and redis-cli are needed: sudo apt-get install -y redis-server): ${error}`);
  }
}

/** @param {() => Promise<boolean>} check */
async function until(check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
