// Prints a plain "N passed, N failed, N skipped" closing line, and in CI fails the run when any test was
// skipped: every test of a run is meant to run on its OS. The only expected skips are suites for another OS,
// gated with runIf and named with a tag such as `[linux only]`, `[darwin only]`, `[win32 only]` or `[posix only]`, and the cases a
// project filters out by name (the `keepassxc` project reruns only the Secret Service cases; the rest ran
// elsewhere). On macOS and Windows (npm run test:macos / test:windows) a run must also have passed tests tagged for
// that OS: a platform suite that did not run at all fails there, instead of passing with the portable cases alone.
import type { Reporter, TestModule } from 'vitest/node';

// Tests of this reporter only (test/skip-guard.test.ts): judge as on another OS.
const platform = process.env.MKC_SKIP_GUARD_PLATFORM ?? process.platform;

export default class SkipGuardReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    const skipped: string[] = [];
    const otherPlatform: string[] = [];
    let filtered = 0;
    let ownPlatform = 0;
    for (const module of testModules) {
      const namePattern = module.project.config.testNamePattern;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') {
          counts.passed++;
          if (new RegExp(`\\[${platform} only\\]`).test(test.fullName)) ownPlatform++;
        }
        else if (state === 'failed') counts.failed++;
        else {
          counts.skipped++;
          const tag = /\[(\w+) only\]/.exec(test.fullName)?.[1];
          // `[posix only]`: every OS but Windows.
          if (tag && (tag === 'posix' ? platform === 'win32' : tag !== platform)) { otherPlatform.push(test.fullName); continue; }
          if (namePattern && !new RegExp(namePattern).test(test.fullName)) { filtered++; continue; }
          skipped.push(`${module.moduleId.replace(process.cwd() + '/', '')} > ${test.fullName}`);
        }
      }
    }
    const strict = process.env.CI !== undefined && process.env.CI !== 'false';
    if (strict && skipped.length > 0) {
      process.stderr.write(`\nCI runs every ${platform} test, but ${skipped.length} were skipped:\n  ${skipped.join('\n  ')}\n`);
      process.exitCode = 1;
    }
    if (strict && platform !== 'linux' && ownPlatform === 0) {
      process.stderr.write(`\nCI on ${platform} runs its platform suite, but no test tagged [${platform} only] passed\n`);
      process.exitCode = 1;
    }
    const gated = otherPlatform.length > 0 ? ` (${otherPlatform.length} of them for another OS: ` +
      `${[...new Set(otherPlatform.map((name) => /\[(\w+) only\]/.exec(name)![1]))].join(', ')} only)` : '';
    const byName = filtered > 0 ? ` (${filtered} of them filtered out by their project's name pattern)` : '';
    process.stdout.write(`\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped${gated}${byName}\n`);
  }
}
