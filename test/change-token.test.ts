// Readers must never miss a write (issue 10): the change token moves on every save, even when saves come
// faster than the file system's timestamp tick, keep the stored size, and the file system hands the freed
// inode of the replaced file to the next one.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { markerStamper } from '../src/files.js';
import { createPersistence } from '../src/index.js';
import type { BackendKind } from '../src/persistence/types.js';
import { isLinux, processBackends, storeOptions, tempDir } from './helpers.js';

// Same length every time: only the digits change, so the size never tells two saves apart.
const sameSize = (i: number) => JSON.stringify({ AccessToken: { n: String(i).padStart(8, '0') }, Account: {} });

// libsecret goes through D-Bus on every save: fewer rounds keep the file quick.
const rounds = (backend: BackendKind) => (backend === 'libsecret' ? 60 : 300);

function cases(inDirectory: () => string | undefined) {
  for (const backend of processBackends) {
    describe.runIf(backend !== 'libsecret' || isLinux)(backend, () => {
      const options = async () => {
        const base = await storeOptions(backend);
        const directory = inDirectory();
        if (directory === undefined) return base;
        await mkdir(directory, { recursive: true, mode: 0o700 });
        return { ...base, cachePath: join(directory, `${backend}-${randomBytes(6).toString('hex')}`, 'msal-cache.json') };
      };

      it('moves between any two looks of a reader, with one or two same-size saves in between', async () => {
        const chosen = await options();
        const writer = await createPersistence(chosen);
        const reader = await createPersistence(chosen);
        let previous = await reader.changeToken();
        const missed: number[] = [];
        for (let i = 0; i < rounds(backend); i++) {
          // Two saves between looks: the second one may get back the inode the first one freed.
          for (let s = 0; s <= i % 2; s++) await writer.save(sameSize(i * 2 + s));
          const token = await reader.changeToken();
          if (token === previous) missed.push(i);
          previous = token;
        }
        expect(missed).toEqual([]);
      });

      it('moves when the cache is deleted and saved again with the same contents', async () => {
        const chosen = await options();
        const writer = await createPersistence(chosen);
        const reader = await createPersistence(chosen);
        await writer.save(sameSize(0));
        let previous = await reader.changeToken();
        const missed: number[] = [];
        for (let i = 0; i < 40; i++) {
          await writer.delete();
          await writer.save(sameSize(0));
          const token = await reader.changeToken();
          if (token === previous) missed.push(i);
          previous = token;
        }
        expect(missed).toEqual([]);
        expect(await reader.load()).toBe(sameSize(0));
      });
    });
  }
}

describe('change token, in the temporary directory', () => {
  cases(() => undefined);
});

// ext4 with 128-byte inodes keeps whole-second timestamps and hands a freed inode to the next file: the
// worst case for a stat-only token, reproduced on any Linux kernel (CI runs as root and can loop-mount).
describe.runIf(isLinux)('change token, on a file system with 1-second timestamps (loop-mounted ext4)', () => {
  let mountPoint: string | undefined;
  beforeAll(async () => {
    const base = await tempDir();
    const image = join(base, 'coarse.img');
    await writeFile(image, Buffer.alloc(0));
    execFileSync('truncate', ['-s', '32M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-I', '128', image], { stdio: 'pipe' });
    const target = join(base, 'mnt');
    await mkdir(target);
    execFileSync('mount', ['-o', 'loop', image, target]);
    mountPoint = target;
  });
  afterAll(async () => {
    if (mountPoint === undefined) return;
    execFileSync('umount', [mountPoint]);
    await rm(mountPoint, { recursive: true, force: true });
  });
  cases(() => mountPoint && join(mountPoint, 'caches'));
});

describe('the keyring marker token skips its content read only when that is safe', () => {
  it('an in-place rewrite of a marker read long ago (same size, mtime set back) still moves the token', async () => {
    const directory = await tempDir();
    const marker = join(directory, 'marker.json');
    await writeFile(marker, '{"version":"aaaaaaaaaaaaaaaa"}');
    const stamp = markerStamper(marker);
    // Older than any timestamp tick by the time of the first read: from the second look on, the stat alone is used.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    const first = stamp();
    expect(stamp()).toBe(first);
    const before = await stat(marker);
    await writeFile(marker, '{"version":"bbbbbbbbbbbbbbbb"}');
    await utimes(marker, before.atime, before.mtime);
    const after = stamp();
    expect(after).not.toBe(first);
    expect(after).toContain('bbbbbbbbbbbbbbbb');
  });
});
