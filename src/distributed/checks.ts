// Option checks shared by the distributed stores and plugin: a wrong value fails at creation with
// INVALID_OPTION naming the option, what it got and what it takes, never later inside a request.
import { KeychainCacheError } from '../errors.js';

const maxTimer = 2 ** 31 - 1; // setTimeout's limit; Redis and PostgreSQL take far more, a timer does not

function got(value: unknown): string {
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : typeof value === 'string' ? `the string '${value.slice(0, 40)}'` : `a ${value === null ? 'null' : typeof value}`;
}

/** A duration in ms of at least `min` (integer ms, finite), or undefined when left out. */
export function optionalDuration(value: unknown, name: string, min: number, fix: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > Number.MAX_SAFE_INTEGER) {
    throw new KeychainCacheError('INVALID_OPTION', `${name} must be a whole number of milliseconds, at least ${min}; got ${got(value)}. ${fix}`);
  }
  return value;
}

/** A timer bound in ms (a positive integer setTimeout can hold), or the default. */
export function optionalTimeout(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > maxTimer) {
    throw new KeychainCacheError('INVALID_OPTION', `${name} must be a whole number of milliseconds from 1 to ${maxTimer}; got ${got(value)}.`);
  }
  return value;
}

/** A count (integer from min to max), or the default. */
export function optionalCount(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new KeychainCacheError('INVALID_OPTION', `${name} must be a whole number from ${min} to ${max}; got ${got(value)}.`);
  }
  return value;
}

/** A non-empty string, or the default. */
export function optionalText(value: unknown, name: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value === '') throw new KeychainCacheError('INVALID_OPTION', `${name} must be a non-empty string; got ${got(value)}.`);
  return value;
}

/** How long a sign-out's tombstone outlives it: longer than any request that read the partition before it. */
export const defaultTombstoneTtlMs = 24 * 3600_000;
