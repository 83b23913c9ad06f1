// AES-256-GCM for one cache blob per partition, with a key id in the header so keys can be rotated:
// old blobs stay readable with their key and are rewritten with the current one on the next write.
// The partition key is authenticated data, so a blob copied into another user's partition is refused.
//
// Blob: "MKC1" | key id length (1 byte) | key id (UTF-8) | IV (12 bytes) | ciphertext | GCM tag (16 bytes)
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KeychainCacheError } from '../errors.js';
import { checkOptions, describeType, got } from './checks.js';

const magic = Buffer.from('MKC1');
const ivLength = 12;
const tagLength = 16;

export interface BlobCipherOptions {
  /** Key id → 32-byte key (a Buffer, or base64 of 32 bytes). Keep old keys here until their blobs are rewritten. */
  keys: Record<string, Uint8Array | string>;
  /** The key id new blobs are sealed with. */
  currentKeyId: string;
}

export interface OpenedBlob {
  text: string;
  keyId: string;
  /** Sealed with a key other than the current one: rewrite it. */
  stale: boolean;
}

export interface BlobCipher {
  readonly currentKeyId: string;
  seal(text: string, partitionKey: string): Buffer;
  /**
   * Throws BlobUnreadableError (code DECRYPT_FAILED) for an unknown key id, a wrong key, tampered or truncated
   * bytes; its `reason` tells a key this instance lacks (`unknown-key`, a configuration error) from bytes that
   * do not authenticate (`corrupt`).
   */
  open(blob: Uint8Array, partitionKey: string): OpenedBlob;
}

/** Why a blob could not be opened: a key id this instance is not configured with, or bytes that do not authenticate. */
export type UnreadableReason = 'unknown-key' | 'corrupt';

/** DECRYPT_FAILED with the reason and the blob's key id, raw (anyone who can write the store picks it: printableKeyId for logs). */
export class BlobUnreadableError extends KeychainCacheError {
  constructor(readonly reason: UnreadableReason, readonly keyId: string | undefined, message: string, options?: { cause?: unknown }) {
    super('DECRYPT_FAILED', message, options);
  }
}

/**
 * A key id from a blob header as it may appear in a log: quoted, non-printable and non-ASCII characters escaped,
 * at most 40 characters. Anyone who can write to the store chooses these bytes; a log line must stay one line.
 */
export function printableKeyId(id: string): string {
  const escaped = JSON.stringify(id).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return escaped.length > 42 ? `${escaped.slice(0, 40)}..."` : escaped;
}

function invalid(message: string): KeychainCacheError {
  return new KeychainCacheError('INVALID_OPTION', message);
}

export function createBlobCipher(options: BlobCipherOptions): BlobCipher {
  checkOptions(options, 'createBlobCipher', ['keys', 'currentKeyId'], '{ keys: { <id>: <32-byte key> }, currentKeyId }');
  if (typeof options.keys !== 'object' || options.keys === null || Array.isArray(options.keys)) {
    throw invalid(`keys must be an object of key id → 32-byte key, e.g. { '2026-11': process.env.CACHE_KEY_2026_11 }; got ${describeType(options.keys)}.`);
  }
  const keys = new Map<string, Buffer>();
  for (const [id, value] of Object.entries(options.keys)) {
    if (id === '' || Buffer.byteLength(id) > 255) throw invalid(`Key id '${id}' must be 1 to 255 bytes of UTF-8.`);
    if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
      // Its type only, never its value: whatever is there may be key material in the wrong shape.
      throw invalid(`Key '${id}' is ${value === undefined ? 'undefined (is the environment variable or secret that holds it set?)' : describeType(value)}; ` +
        'each key must be 32 bytes, as a Buffer/Uint8Array or a base64 string (e.g. crypto.randomBytes(32)).');
    }
    const key = typeof value === 'string' ? Buffer.from(value, 'base64') : Buffer.from(value);
    if (key.length !== 32) {
      throw invalid(`Key '${id}' is ${key.length} bytes; AES-256 needs 32 (e.g. crypto.randomBytes(32), or its base64).`);
    }
    keys.set(id, key);
  }
  if (keys.size === 0) throw invalid('keys is empty: give at least the key new blobs are sealed with, e.g. { primary: crypto.randomBytes(32) }.');
  const currentKeyId = options.currentKeyId;
  if (typeof currentKeyId !== 'string' || currentKeyId === '') {
    throw invalid(`currentKeyId must be the id (a string) of the key new blobs are sealed with, one of ${[...keys.keys()].join(', ')}; ` +
      `got ${got(currentKeyId)}.`);
  }
  const current = keys.get(currentKeyId);
  if (!current) throw invalid(`currentKeyId '${currentKeyId}' is not one of the keys (${[...keys.keys()].join(', ')}).`);

  const refuse = (reason: UnreadableReason, keyId: string | undefined, why: string, cause?: unknown) => new BlobUnreadableError(reason, keyId,
    `The cache blob of one partition could not be decrypted: ${why}.`, cause === undefined ? undefined : { cause });

  return {
    currentKeyId,
    seal(text, partitionKey) {
      const id = Buffer.from(currentKeyId, 'utf8');
      const iv = randomBytes(ivLength);
      const cipher = createCipheriv('aes-256-gcm', current, iv);
      cipher.setAAD(Buffer.from(partitionKey, 'utf8'));
      const body = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
      return Buffer.concat([magic, Buffer.from([id.length]), id, iv, body, cipher.getAuthTag()]);
    },
    open(blob, partitionKey) {
      const bytes = Buffer.from(blob);
      if (bytes.length < magic.length + 1 || !bytes.subarray(0, magic.length).equals(magic)) {
        throw refuse('corrupt', undefined, 'it is not in the encrypted format (wrong header)');
      }
      const idLength = bytes[magic.length]!;
      const idEnd = magic.length + 1 + idLength;
      if (bytes.length < idEnd + ivLength + tagLength) throw refuse('corrupt', undefined, 'it is truncated');
      const keyId = bytes.subarray(magic.length + 1, idEnd).toString('utf8');
      const key = keys.get(keyId);
      if (!key) {
        throw refuse('unknown-key', keyId, `it was sealed with key id ${printableKeyId(keyId)}, which this instance is not configured with ` +
          `(its keys: ${[...keys.keys()].map(printableKeyId).join(', ')}). Give every instance every key id still in use, ` +
          'and switch currentKeyId only once all of them have the new key');
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(idEnd, idEnd + ivLength));
        decipher.setAAD(Buffer.from(partitionKey, 'utf8'));
        decipher.setAuthTag(bytes.subarray(bytes.length - tagLength));
        const text = Buffer.concat([decipher.update(bytes.subarray(idEnd + ivLength, bytes.length - tagLength)), decipher.final()]).toString('utf8');
        return { text, keyId, stale: keyId !== currentKeyId };
      } catch (error) {
        throw refuse('corrupt', keyId, `authentication failed with key id ${printableKeyId(keyId)} (tampered, damaged, or a different key ` +
          'under the same id: every instance must have the same bytes for each key id)', error);
      }
    },
  };
}
