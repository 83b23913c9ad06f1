#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { formatReport, runSelfTest } from './self-test.js';

const usage = `Usage: msal-keychain-cache self-test [--json] [--allow-plaintext] [--prompt-timeout <seconds>]

  self-test          check that this machine can keep an encrypted MSAL token cache
  --json             print a machine-readable report instead of lines
  --allow-plaintext  accept an unencrypted file when no secret store works
  --prompt-timeout   how long a keyring's unlock prompt may wait for you (default 60)
  --help, --version

Exit status: 0 the chosen backend works, 1 none works (the output says how to fix it), 2 bad arguments.
`;

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage);
    return 0;
  }
  if (argv.includes('--version')) {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`${manifest.version}\n`);
    return 0;
  }
  const [command, ...rest] = argv;
  // --prompt-timeout takes a value: a number of seconds.
  let promptTimeoutMs: number | undefined;
  const flags: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i]!;
    const inline = flag.startsWith('--prompt-timeout=') ? flag.slice('--prompt-timeout='.length) : undefined;
    if (flag === '--prompt-timeout' || inline !== undefined) {
      const seconds = Number(inline ?? rest[++i]);
      // At least a millisecond once converted, as promptTimeoutMs requires (1e-9 would round to 0).
      if (!Number.isFinite(seconds) || seconds < 0.001 || seconds > 2_147_483) {
        process.stderr.write(`--prompt-timeout needs a number of seconds from 0.001 to 2147483.\n\n${usage}`);
        return 2;
      }
      promptTimeoutMs = Math.round(seconds * 1000);
    } else {
      flags.push(flag);
    }
  }
  const known = new Set(['--json', '--allow-plaintext']);
  const unknown = flags.filter((flag) => !known.has(flag));
  if (command !== 'self-test' || unknown.length > 0) {
    process.stderr.write(`${command === undefined ? 'No command given.' : command !== 'self-test' ? `Unknown command '${command}'.` :
      `Unknown option ${unknown.join(', ')}.`}\n\n${usage}`);
    return 2;
  }
  const report = await runSelfTest({ allowPlaintext: flags.includes('--allow-plaintext'), ...(promptTimeoutMs ? { promptTimeoutMs } : {}) });
  if (flags.includes('--json')) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    // no-color.org: NO_COLOR set to anything but the empty string turns colour off.
    const color = process.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
    process.stdout.write(formatReport(report, color));
  }
  return report.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    process.stderr.write(`msal-keychain-cache: unexpected failure: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
