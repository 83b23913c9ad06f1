// The self-test's report and its terminal form: a module of its own, so the CommonJS entry (self-test-cjs.ts) formats
// a report without bundling the self-test itself.
import { type BackendAttempt, encryptedCandidates } from './create-persistence.js';

export interface SelfTestStep {
  name: 'store round trip' | 'lock round trip' | 'msal round trip';
  status: 'ok' | 'failed' | 'skipped';
  ms: number;
  detail: string;
  code?: string;
}

/** The `--json` report. Fields are stable: new ones may be added, none renamed or removed within a major version. */
export interface SelfTestReport {
  // candidates: every backend for this platform, in the order tried; `code` is an error code, or
  // NOT_APPLICABLE for a backend this command cannot try (safe-storage needs a running Electron app).
  ok: boolean;
  platform: string;
  arch: string;
  node: string;
  candidates: BackendAttempt[];
  /** `store`: what serves the store, when the backend can tell (the Secret Service's process and transport). */
  chosen: { kind: string; encrypted: boolean; store?: string } | null;
  steps: SelfTestStep[];
  /** When ok is false: what failed and how to fix it. */
  error?: { code: string; message: string };
  totalMs: number;
}

/** The report as lines for a terminal. */
export function formatReport(report: SelfTestReport, color: boolean): string {
  const paint = (code: number, text: string) => (color ? `\u001b[${code}m${text}\u001b[0m` : text);
  const ok = paint(32, 'ok  ');
  const bad = paint(31, 'FAIL');
  const skip = paint(33, 'skip');
  const ms = (value: number) => `${value.toFixed(1)} ms`.padStart(10);
  const lines = [`msal-keychain-cache self-test`, `platform   ${report.platform} ${report.arch}, Node ${report.node}` +
    `; encrypted backends for this platform: ${encryptedCandidates(report.platform as NodeJS.Platform).join(', ') || 'none yet'}`];
  for (const candidate of report.candidates) {
    const notTried = candidate.code === 'PLAINTEXT_NOT_ALLOWED' || candidate.code === 'NOT_APPLICABLE';
    lines.push(`backend    ${candidate.usable ? ok : notTried ? skip : bad} ` +
      `${candidate.kind.padEnd(15)}${ms(candidate.ms)}${candidate.usable ? '  usable' : `  ${candidate.reason}`}`);
  }
  if (report.chosen) {
    lines.push(`chosen     ${report.chosen.kind}${report.chosen.encrypted ? ' (encrypted)' : paint(31, ' (NOT encrypted: tokens stored in plain text)')}`);
    if (report.chosen.store) lines.push(`store      ${report.chosen.store}`);
  }
  for (const s of report.steps) {
    lines.push(`step       ${s.status === 'ok' ? ok : s.status === 'skipped' ? skip : bad} ${s.name.padEnd(15)}${ms(s.ms)}  ${s.detail}`);
  }
  lines.push(report.ok
    ? `result     ${paint(32, 'OK')}: ${report.chosen?.kind} works on this machine (${report.totalMs.toFixed(0)} ms)`
    : `result     ${paint(31, 'FAILED')} [${report.error?.code}]: ${
      report.candidates.some((c) => c.reason && report.error?.message.includes(c.reason))
        ? 'no backend is usable; the backend lines above say why and how to fix it' : report.error?.message}`);
  return `${lines.join('\n')}\n`;
}
