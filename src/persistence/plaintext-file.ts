import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { KeychainCacheError, systemErrorCode } from '../errors.js';
import {
  corruptName, describeFileError, fileStamp, prepareCacheLocation, randomHex, readFileIfExists, renameWithRetry,
  unlinkWithRetry, writeFileAtomic,
} from '../files.js';
import type { Persistence } from './types.js';

export interface FilePersistenceOptions {
  cachePath: string;
  platform: NodeJS.Platform;
}

/** The cache JSON in a plain 0600 file: msal-node-extensions' FilePersistence layout. Not encrypted. */
export async function createPlaintextFilePersistence(options: FilePersistenceOptions): Promise<Persistence> {
  const { cachePath, platform } = options;
  await prepareCacheLocation(cachePath);
  return {
    kind: 'plaintext-file',
    encrypted: false,
    cachePath,
    location: cachePath,
    load: () => readFileIfExists(cachePath),
    save: (contents, saveOptions) => writeFileAtomic(cachePath, contents, { platform, beforeRename: saveOptions?.beforeCommit }),
    delete: () => deleteFile(cachePath),
    changeToken: () => fileStamp(cachePath),
    quarantine: () => quarantineFile(cachePath, platform),
    verify: () => verifyDirectory(cachePath, platform),
  };
}

export async function deleteFile(path: string): Promise<boolean> {
  try {
    return await unlinkWithRetry(path);
  } catch (error) {
    throw describeFileError(error, 'delete', path);
  }
}

/** `<path>.corrupt-<time>`: the bytes are kept for a post-mortem, not deleted. */
export async function quarantineFile(path: string, platform: NodeJS.Platform): Promise<string> {
  const target = corruptName(path);
  try {
    await renameWithRetry(path, target, platform);
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return target;
    throw describeFileError(error, 'move aside', path);
  }
  return target;
}

/** Writes, reads back and deletes a throwaway file next to the cache: proves the directory is usable. */
export async function verifyDirectory(cachePath: string, platform: NodeJS.Platform): Promise<void> {
  const probe = join(dirname(cachePath), `.${basename(cachePath)}.verify-${randomHex(8)}`);
  const payload = `verify ${randomHex(8)}`;
  try {
    await writeFileAtomic(probe, payload, { platform });
    const back = await readFileIfExists(probe);
    if (back !== payload) {
      throw new KeychainCacheError('STORE_FAILED', `A test file written to ${dirname(cachePath)} read back differently. ` +
        'Check the disk and the file system it is on.');
    }
  } finally {
    await fs.unlink(probe).catch(() => undefined);
  }
}
