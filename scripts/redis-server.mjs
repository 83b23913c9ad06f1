// A throwaway redis-server for tests: its own free port on 127.0.0.1, its own temp dir, no persistence.
// `kill()` then `start()` restarts it on the same port (a Redis restart mid-run).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.mjs';

function answers(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' }, () => socket.write('PING\r\n'));
    socket.once('data', (data) => { socket.destroy(); resolve(String(data).startsWith('+PONG')); });
    socket.once('error', () => resolve(false));
  });
}

/**
 * kill() ends the server and keeps its port and directory for start(); stop() ends it for good.
 * @returns {Promise<{ url: string, port: number, pid: number | undefined, start: () => Promise<void>, kill: () => Promise<void>, stop: () => Promise<void> }>}
 */
export async function startRedis() {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'mkc-redis-'));
  let child;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (!(await answers(port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error('redis-server did not start. Install it: sudo apt-get install -y redis-server (.ci/run does this).');
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const kill = async () => {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    /** The running server's pid (SIGSTOP it to make Redis stall). */
    get pid() { return child?.pid; },
    start,
    kill,
    stop: async () => { await kill(); await rm(dir, { recursive: true, force: true }); },
  };
}
