import { describe, expect, it } from 'vitest';
import { processBackends, createTokenEndpoint, findAccount, forChild, isLinux, newClient, recordingLogger, scopes, startFixture, storeOptions } from './helpers.js';

const rounds = 50;

describe.each(processBackends)('writers killed at random moments, %s backend', (backend) => {
  it.runIf(backend !== 'libsecret' || isLinux)(`${rounds} rounds: the cache always loads and every completed sign-in survives`, async () => {
    const options = await storeOptions(backend, { lockOptions: { timeoutMs: 5000 } });
    const childOptions = forChild(options);
    const completed: string[] = [];
    const log = recordingLogger();
    for (let round = 0; round < rounds; round++) {
      // Two writers racing for the lock; each is killed at a random moment, mostly mid-sign-in.
      const writers = [0, 1].map((w) => startFixture('worker', {
        task: 'sign-in', options: childOptions, users: Array.from({ length: 500 }, (_, i) => `crash-r${round}-w${w}-u${i}`),
      }));
      await Promise.all(writers.map(async (writer) => {
        await writer.waitFor('DONE');
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 150));
        writer.child.kill('SIGKILL');
        const result = await writer.done;
        expect(result.signal).toBe('SIGKILL');
        completed.push(...result.stdout.split('\n').filter((l) => l.startsWith('DONE ')).map((l) => l.slice(5)));
      }));

      const endpoint = createTokenEndpoint();
      endpoint.refuse = true;
      const { client } = await newClient({ ...options, loggerOptions: log.loggerOptions }, endpoint);
      const accounts = await client.getTokenCache().getAllAccounts();
      const missing = completed.filter((user) => !findAccount(accounts, endpoint, user));
      expect({ round, missing }).toEqual({ round, missing: [] });
      const last = findAccount(accounts, endpoint, completed.at(-1)!)!;
      await client.acquireTokenSilent({ account: last, scopes });
      // The next writer is not blocked by a dead holder's lock.
      endpoint.refuse = false;
      await client.acquireTokenByCode({ code: `after-r${round}`, scopes, redirectUri: 'http://localhost' });
      completed.push(`after-r${round}`);
    }
    expect(log.lines.filter((l) => /could not be read|moved aside/.test(l.message))).toEqual([]);
  });
});
