// A new user's mistakes get a typed error at creation, saying what is wrong and how to fix it, before anyone
// signs in (issue 12), and leave nothing behind.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createCachePlugin, createPersistence, isKeychainCacheError } from '../src/index.js';

const quiet = { loggerCallback: () => undefined };

async function failure(run: () => Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await run();
  } catch (error) {
    expect(isKeychainCacheError(error), String(error)).toBe(true);
    return error as { code: string; message: string };
  }
  throw new Error('expected a KeychainCacheError, got success');
}

describe('cachePath mistakes are INVALID_OPTION at creation, with the fix', () => {
  it.each([
    ['~/.myapp/msal-cache.json', /starts with '~'.*defaultCachePath/],
    ['~', /starts with '~'/],
    ['msal-cache.json', /is relative.*defaultCachePath/],
    ['./cache/msal-cache.json', /is relative/],
    ['../msal-cache.json', /is relative/],
  ])('%s', async (cachePath, message) => {
    for (const create of [createPersistence, createCachePlugin] as const) {
      const error = await failure(() => create({ cachePath, allowPlaintextFallback: true, loggerOptions: quiet }));
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toMatch(message);
    }
    // Nothing was created in the working directory.
    expect(existsSync('~')).toBe(false);
    expect(existsSync('cache')).toBe(false);
  });

  it('a file named with a tilde inside an absolute path is fine (only a leading ~ is the shell\'s)', async () => {
    const { tempDir } = await import('./helpers.js');
    const directory = await tempDir();
    const persistence = await createPersistence({ cachePath: `${directory}/~backup/cache.json`, backend: 'plaintext-file', allowPlaintextFallback: true, loggerOptions: quiet });
    expect(persistence.cachePath).toBe(`${directory}/~backup/cache.json`);
  });
});
