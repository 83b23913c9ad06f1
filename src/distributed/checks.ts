// Option checks shared by the distributed stores and plugin: a wrong value fails at creation with
// INVALID_OPTION naming the option, what it got and what it takes, never later inside a request.
import { describeType, got, invalid } from '../options.js';

// One way to show a value in a message, on the main entry and here alike.
export { describeType, got };

const maxTimer = 2 ** 31 - 1; // setTimeout's limit; Redis and PostgreSQL take far more, a timer does not

/** The closest allowed name to a misspelt one (another case, or one or two letters off), if there is one. */
function nearest(name: string, allowed: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: { name: string; distance: number } | undefined;
  for (const candidate of allowed) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance <= Math.min(2, Math.floor(candidate.length / 3)) && (!best || distance < best.distance)) best = { name: candidate, distance };
  }
  return best?.name;
}

/** Edits (insert, delete, replace, swap two neighbours) from a to b. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = rows[i]!;
      row[j] = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, rows[i - 2]![j - 2]! + 1);
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * The options object of `factory`, every name in it one of `allowed`. As createCachePlugin does: a misspelt name
 * (`ttlMS`, `keyprefix`) would otherwise leave its setting silently at the default, so it fails at creation.
 * `usage` says what the factory needs, for a missing or non-object argument.
 */
export function checkOptions(options: unknown, factory: string, allowed: readonly string[], usage: string): Record<string, unknown> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalid(`${factory} needs an options object: ${usage}; got ${got(options)}.`);
  }
  for (const key of Object.keys(options)) {
    if (allowed.includes(key)) continue;
    const suggestion = nearest(key, allowed);
    throw invalid(`Unknown ${factory} option '${key}'.${suggestion ? ` Did you mean '${suggestion}'?` : ''} Valid options: ${allowed.join(', ')}.`);
  }
  return options as Record<string, unknown>;
}

/** A duration in ms of at least `min` (integer ms, finite), or undefined when left out. */
export function optionalDuration(value: unknown, name: string, min: number, fix: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > Number.MAX_SAFE_INTEGER) {
    throw invalid(`${name} must be a whole number of milliseconds, at least ${min}; got ${got(value)}. ${fix}`);
  }
  return value;
}

/** A timer bound in ms (a positive integer setTimeout can hold), or the default. */
export function optionalTimeout(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > maxTimer) {
    throw invalid(`${name} must be a whole number of milliseconds from 1 to ${maxTimer}; got ${got(value)}.`);
  }
  return value;
}

/** A count (integer from min to max), or the default. */
export function optionalCount(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${name} must be a whole number from ${min} to ${max}; got ${got(value)}.`);
  }
  return value;
}

/** A non-empty string, or the default. */
export function optionalText(value: unknown, name: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value === '') throw invalid(`${name} must be a non-empty string; got ${got(value)}.`);
  return value;
}

/** true or false, or the default. */
export function optionalFlag(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalid(`${name} must be true or false; got ${got(value)}.`);
  return value;
}

/** How long a sign-out's tombstone outlives it: longer than any request that read the partition before it. */
export const defaultTombstoneTtlMs = 24 * 3600_000;
