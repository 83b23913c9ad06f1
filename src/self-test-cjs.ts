// The CommonJS entry of `msal-keychain-cache/self-test`. The self-test is a command, run once, not a hot path: this
// entry runs the ES module build's self-test (dist/esm/self-test.js, which the package's command uses too) instead of
// shipping a second bundle of all of it (~170 KB). Same names, same report, same output; only formatReport is here.
import type { SelfTestOptions, SelfTestReport } from './self-test.js';

export type { SelfTestOptions, SelfTestReport, SelfTestStep } from './self-test.js';
export { formatReport } from './self-test-report.js';

export async function runSelfTest(options?: SelfTestOptions): Promise<SelfTestReport> {
  // The build points this import at dist/esm/self-test.js (scripts/build.mjs); in the sources it is the module beside.
  const { runSelfTest: run } = await import('./self-test.js');
  return run(options);
}
