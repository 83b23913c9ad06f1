// A throwaway 3-master Redis Cluster for tests: three redis-server with cluster-enabled on free ports of
// 127.0.0.1, joined by `redis-cli --cluster create` (no replicas), in a temp dir removed by stop().
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.mjs';

const run = promisify(execFile);

/** @returns {Promise<{ nodes: { host: string, port: number }[], stop: () => Promise<void> }>} */
export async function startRedisCluster() {
  const dir = await mkdtemp(join(tmpdir(), 'mkc-redis-cluster-'));
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
  try {
    const ports = [];
    for (let i = 0; i < 3; i++) ports.push(await freePort());
    for (const port of ports) {
      children.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }));
    }
    for (const port of ports) await until(async () => (await run('redis-cli', ['-p', String(port), 'PING'])).stdout.trim() === 'PONG');
    await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes']);
    // Every node must agree that all 16384 slots are served before clients connect.
    for (const port of ports) {
      await until(async () => /cluster_state:ok/.test((await run('redis-cli', ['-p', String(port), 'CLUSTER', 'INFO'])).stdout));
    }
    return { nodes: ports.map((port) => ({ host: '127.0.0.1', port })), stop };
  } catch (error) {
    await stop();
    throw new Error(`a Redis Cluster did not start (redis-server and redis-cli are needed: sudo apt-get install -y redis-server): ${error}`);
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
