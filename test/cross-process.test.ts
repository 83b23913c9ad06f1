import { describe, expect, it } from 'vitest';
import { processBackends, forChild, isLinux, runFixture, storeOptions } from './helpers.js';

// On KeePassXC (the keepassxc project) a smaller cache: KeePassXC 2.7.4 crashes (SIGSEGV, with keytar's writes
// too) under sustained writes once an entry holds ~0.5 MB, which 8 x 25 sign-ins x 3 rounds reach.
const onKeePassXC = process.env.MKC_SECRET_SERVICE === 'keepassxc';
const processes = onKeePassXC ? 4 : 8;
const usersPerProcess = onKeePassXC ? 5 : 25;
const rounds = 3;

describe.each(processBackends)('many processes on one cache, %s backend', (backend) => {
  it.runIf(backend !== 'libsecret' || isLinux)(`loses nothing: ${processes} processes x ${usersPerProcess} sign-ins at once, ${rounds} rounds`, async () => {
    for (let round = 0; round < rounds; round++) {
      const options = forChild(await storeOptions(backend));
      const users = (p: number) => Array.from({ length: usersPerProcess }, (_, i) => `r${round}-p${p}-u${i}`);
      const results = await Promise.all(Array.from({ length: processes }, (_, p) =>
        runFixture('worker', { task: 'sign-in', options, users: users(p), silentEach: true })));
      for (const result of results) {
        expect(result.stderr).not.toMatch(/Error/);
        expect(result.code).toBe(0);
        const summary = JSON.parse(result.stdout.split('RESULT ')[1]!);
        expect(summary.silentMismatches).toBe(0);
      }
      const all = Array.from({ length: processes }, (_, p) => users(p)).flat();
      const verify = await runFixture('worker', { task: 'verify', options, users: all });
      expect(verify.code).toBe(0);
      const found = JSON.parse(verify.stdout.split('RESULT ')[1]!);
      expect({ round, ...found }).toEqual({ round, accounts: all.length, missing: [], silentFailures: 0, tokenRequests: {} });
    }
  });
});
