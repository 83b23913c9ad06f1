// The CommonJS entry of `msal-keychain-cache/self-test`. The self-test is a command, run once, not a hot path: this
// entry runs the ES module build's self-test (dist/esm/self-test.js, which the package's command uses too) instead of
// shipping a second bundle of all of it (~170 KB). Same names, same report, same output; only formatReport is here.
import { arch } from 'node:os';
import type { SelfTestOptions, SelfTestReport } from './self-test.js';

export type { SelfTestOptions, SelfTestReport, SelfTestStep } from './self-test.js';
export { formatReport } from './self-test-report.js';

export async function runSelfTest(options?: SelfTestOptions): Promise<SelfTestReport> {
  let run: (options?: SelfTestOptions) => Promise<SelfTestReport>;
  try {
    // The build points this import at dist/esm/self-test.js (scripts/build.mjs); in the sources it is the module beside.
    ({ runSelfTest: run } = await import('./self-test.js'));
  } catch (error) {
    // The one import() in the CommonJS build. A runtime that refuses it (Jest compiles CommonJS through node:vm,
    // with no dynamic-import callback unless --experimental-vm-modules) gets a report saying so, as every other
    // failure of the self-test is reported: it never rejects.
    const code = (error as { code?: unknown } | null)?.code;
    return {
      ok: false, platform: options?.platform ?? process.platform, arch: arch(), node: process.version,
      candidates: [], chosen: null, steps: [], totalMs: 0,
      error: {
        code: 'STORE_FAILED',
        message: `The self-test could not load its ES module build (dist/esm/self-test.js${typeof code === 'string' ? `: ${code}` : ''}): ` +
          'this runtime refuses import() from CommonJS. Under Jest, run it with NODE_OPTIONS=--experimental-vm-modules, ' +
          'or run the command instead: npx msal-keychain-cache self-test. The library itself does not need import().',
      },
    };
  }
  return run(options);
}
