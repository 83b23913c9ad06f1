// A small D-Bus client: the wire format (marshalling of the types the Secret Service uses), EXTERNAL
// authentication over a Unix socket, method calls with bounded waits, and signals. Written for this package
// so that Linux needs no native module (keytar, libsecret) and no third-party D-Bus library at import.
// Facts from the D-Bus specification: https://dbus.freedesktop.org/doc/dbus-specification.html
import { connect as netConnect, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** A `v` value: its signature and the value. */
export interface Variant { signature: string; value: unknown }

/** A D-Bus error reply (`name` is the D-Bus error name), a dropped connection or a call that got no answer. */
export class DBusError extends Error {
  readonly dbusName: string;

  constructor(dbusName: string, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DBusError';
    this.dbusName = dbusName;
  }
}

/** Where no bus can be reached: no address, or nothing answers at it. */
export class DBusUnreachableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DBusUnreachableError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Signatures

interface TypeNode { code: string; children: TypeNode[] }

const basicAlignment: Record<string, number> = {
  y: 1, b: 4, n: 2, q: 2, i: 4, u: 4, x: 8, t: 8, d: 8, s: 4, o: 4, g: 1, h: 4, v: 1, a: 4, '(': 8, '{': 8,
};

const parsedSignatures = new Map<string, TypeNode[]>();

/** Parses a signature into complete types; cached, since the same few signatures recur. */
export function parseSignature(signature: string): TypeNode[] {
  const cached = parsedSignatures.get(signature);
  if (cached) return cached;
  let at = 0;
  const one = (): TypeNode => {
    const code = signature[at++];
    if (code === undefined) throw new TypeError(`D-Bus signature "${signature}" ends inside a type`);
    if (code === 'a') return { code, children: [one()] };
    if (code === '(' || code === '{') {
      const close = code === '(' ? ')' : '}';
      const children: TypeNode[] = [];
      while (signature[at] !== close) {
        if (at >= signature.length) throw new TypeError(`D-Bus signature "${signature}" has an unclosed ${code}`);
        children.push(one());
      }
      at++;
      if (children.length === 0 || (code === '{' && children.length !== 2)) throw new TypeError(`D-Bus signature "${signature}" has a malformed ${code}`);
      return { code, children };
    }
    if (!(code in basicAlignment)) throw new TypeError(`D-Bus signature "${signature}" has an unknown type '${code}'`);
    return { code, children: [] };
  };
  const types: TypeNode[] = [];
  while (at < signature.length) types.push(one());
  if (parsedSignatures.size < 64) parsedSignatures.set(signature, types);
  return types;
}

function signatureOf(node: TypeNode): string {
  if (node.code === 'a') return `a${signatureOf(node.children[0]!)}`;
  if (node.code === '(') return `(${node.children.map(signatureOf).join('')})`;
  if (node.code === '{') return `{${node.children.map(signatureOf).join('')}}`;
  return node.code;
}

// ---------------------------------------------------------------------------------------------------------
// Writing (always little-endian)

class Writer {
  buffer = Buffer.allocUnsafe(256);
  length = 0;

  private room(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + bytes) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }

  // Bytes are stored by index, not with Buffer's writeUInt*: a CLI encodes a handful of messages per start, and
  // those methods' argument checks are code a fresh process runs for the first time (0.6 ms of its start).
  align(to: number): void {
    const pad = (to - (this.length % to)) % to;
    this.room(pad);
    for (let end = this.length + pad; this.length < end;) this.buffer[this.length++] = 0;
  }

  byte(value: number): void { this.room(1); this.buffer[this.length++] = value & 0xff; }
  u32(value: number): void { this.align(4); this.room(4); this.setU32(this.length, value); this.length += 4; }
  setU32(at: number, value: number): void {
    const b = this.buffer;
    b[at] = value & 0xff; b[at + 1] = (value >>> 8) & 0xff; b[at + 2] = (value >>> 16) & 0xff; b[at + 3] = value >>> 24;
  }

  bytes(value: Uint8Array): void {
    this.room(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
  }

  string(value: string, lengthBytes: 1 | 4): void {
    // A NUL character is exactly a 0 byte in UTF-8, so the text itself can be checked.
    if (value.includes('\0')) throw new TypeError('D-Bus strings cannot contain NUL');
    const size = Buffer.byteLength(value, 'utf8');
    // A signature's length is one byte: a longer one would be a malformed message, for which a bus drops the client.
    if (lengthBytes === 1 && size > 255) throw new TypeError('A D-Bus signature is at most 255 bytes');
    if (lengthBytes === 1) this.byte(size);
    else this.u32(size);
    this.room(size + 1);
    this.length += this.buffer.write(value, this.length, size, 'utf8');
    this.buffer[this.length++] = 0;
  }

  value(node: TypeNode, value: unknown): void {
    switch (node.code) {
      case 'y': {
        // One byte on the wire: a larger value must not silently become another (300 would be sent as 44).
        this.byte(checkedByte(value));
        return;
      }
      case 'b': this.u32(value ? 1 : 0); return;
      case 'n': this.align(2); this.room(2); this.buffer.writeInt16LE(Number(value), this.length); this.length += 2; return;
      case 'q': this.align(2); this.room(2); this.buffer.writeUInt16LE(Number(value), this.length); this.length += 2; return;
      case 'i': this.align(4); this.room(4); this.buffer.writeInt32LE(Number(value), this.length); this.length += 4; return;
      case 'u': case 'h': this.u32(Number(value)); return;
      case 'x': this.align(8); this.room(8); this.buffer.writeBigInt64LE(BigInt(value as bigint), this.length); this.length += 8; return;
      case 't': this.align(8); this.room(8); this.buffer.writeBigUInt64LE(BigInt(value as bigint), this.length); this.length += 8; return;
      case 'd': this.align(8); this.room(8); this.buffer.writeDoubleLE(Number(value), this.length); this.length += 8; return;
      case 's': case 'o': this.string(String(value), 4); return;
      case 'g': this.string(String(value), 1); return;
      case 'v': {
        const variant = value as Variant;
        const types = parseSignature(variant.signature);
        if (types.length !== 1) throw new TypeError(`A D-Bus variant holds one complete type, not "${variant.signature}"`);
        this.string(variant.signature, 1);
        this.value(types[0]!, variant.value);
        return;
      }
      case '(': {
        const fields = value as unknown[];
        this.align(8);
        node.children.forEach((child, index) => this.value(child, fields[index]));
        return;
      }
      case 'a': {
        const element = node.children[0]!;
        this.u32(0);
        const lengthAt = this.length - 4;
        this.align(basicAlignment[element.code]!);
        const start = this.length;
        if (element.code === 'y') {
          // A Buffer as it is; a plain array byte by byte, each checked as a 'y' (not [300] sent as 44).
          this.bytes(value instanceof Uint8Array ? value : Uint8Array.from(checkedArray(value), checkedByte));
        } else if (element.code === '{') {
          const entries = value instanceof Map ? [...value.entries()]
            : Array.isArray(value) ? value as [unknown, unknown][] : Object.entries(value as object);
          for (const [key, item] of entries) {
            this.align(8);
            this.value(element.children[0]!, key);
            this.value(element.children[1]!, item);
          }
        } else {
          for (const item of value as unknown[]) this.value(element, item);
        }
        const bytes = this.length - start;
        if (bytes > 67_108_864) throw new RangeError('A D-Bus array cannot exceed 64 MiB');
        this.setU32(lengthAt, bytes);
        return;
      }
      default:
        throw new TypeError(`Cannot write D-Bus type '${node.code}'`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
/** A 'y' value: a number that is an integer 0-255 (not a boolean, string or null turned into one). */
function checkedByte(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 255) {
    throw new TypeError(`A D-Bus byte is an integer 0-255, not ${typeof value === 'number' ? value : typeof value}`);
  }
  return value;
}

function checkedArray(value: unknown): unknown[] {
  if (!Array.isArray(value)) throw new TypeError(`A D-Bus byte array is a Uint8Array or an array of bytes, not ${typeof value}`);
  return value;
}

// Reading (either byte order, as the sender chose)

/** The unsigned 32-bit number at `at` (read by index, as Writer writes: see there). */
function u32At(b: Buffer, at: number, little: boolean): number {
  return little ? (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 0x100_0000
    : (b[at + 3]! | (b[at + 2]! << 8) | (b[at + 1]! << 16)) + b[at]! * 0x100_0000;
}

class Reader {
  at: number;

  constructor(readonly buffer: Buffer, readonly little: boolean, start = 0, readonly end = buffer.length) {
    this.at = start;
  }

  private need(bytes: number): void {
    if (this.at + bytes > this.end) throw new DBusError('org.freedesktop.DBus.Error.InvalidArgs', 'A D-Bus message ended early');
  }

  align(to: number): void { this.at += (to - (this.at % to)) % to; }
  byte(): number { this.need(1); return this.buffer[this.at++]!; }
  u32(): number {
    this.align(4); this.need(4);
    const value = u32At(this.buffer, this.at, this.little);
    this.at += 4;
    return value;
  }

  string(lengthBytes: 1 | 4): string {
    const length = lengthBytes === 1 ? this.byte() : this.u32();
    this.need(length + 1);
    const value = this.buffer.toString('utf8', this.at, this.at + length);
    this.at += length + 1;
    return value;
  }

  value(node: TypeNode): unknown {
    const b = this.buffer;
    switch (node.code) {
      case 'y': return this.byte();
      case 'b': return this.u32() !== 0;
      case 'n': { this.align(2); this.need(2); const v = this.little ? b.readInt16LE(this.at) : b.readInt16BE(this.at); this.at += 2; return v; }
      case 'q': { this.align(2); this.need(2); const v = this.little ? b.readUInt16LE(this.at) : b.readUInt16BE(this.at); this.at += 2; return v; }
      case 'i': { this.align(4); this.need(4); const v = this.little ? b.readInt32LE(this.at) : b.readInt32BE(this.at); this.at += 4; return v; }
      case 'u': case 'h': return this.u32();
      case 'x': { this.align(8); this.need(8); const v = this.little ? b.readBigInt64LE(this.at) : b.readBigInt64BE(this.at); this.at += 8; return v; }
      case 't': { this.align(8); this.need(8); const v = this.little ? b.readBigUInt64LE(this.at) : b.readBigUInt64BE(this.at); this.at += 8; return v; }
      case 'd': { this.align(8); this.need(8); const v = this.little ? b.readDoubleLE(this.at) : b.readDoubleBE(this.at); this.at += 8; return v; }
      case 's': case 'o': return this.string(4);
      case 'g': return this.string(1);
      case 'v': {
        const signature = this.string(1);
        const types = parseSignature(signature);
        if (types.length !== 1) throw new DBusError('org.freedesktop.DBus.Error.InvalidArgs', `A D-Bus variant has signature "${signature}"`);
        return { signature, value: this.value(types[0]!) } satisfies Variant;
      }
      case '(': {
        this.align(8);
        return node.children.map((child) => this.value(child));
      }
      case 'a': {
        const element = node.children[0]!;
        const bytes = this.u32();
        this.align(basicAlignment[element.code]!);
        const end = this.at + bytes;
        this.need(bytes);
        if (element.code === 'y') {
          const value = Buffer.from(b.subarray(this.at, end));
          this.at = end;
          return value;
        }
        if (element.code === '{') {
          const map = new Map<unknown, unknown>();
          while (this.at < end) {
            this.align(8);
            const key = this.value(element.children[0]!);
            map.set(key, this.value(element.children[1]!));
          }
          return map;
        }
        const items: unknown[] = [];
        while (this.at < end) items.push(this.value(element));
        return items;
      }
      default:
        throw new DBusError('org.freedesktop.DBus.Error.InvalidArgs', `Cannot read D-Bus type '${node.code}'`);
    }
  }
}

/** Marshals `values` by `signature` into a little-endian body (exported for tests). */
export function marshal(signature: string, values: unknown[]): Buffer {
  const writer = new Writer();
  parseSignature(signature).forEach((node, index) => writer.value(node, values[index]));
  return writer.buffer.subarray(0, writer.length);
}

/** Reads a body of the given signature (exported for tests). */
export function unmarshal(signature: string, body: Buffer, little = true): unknown[] {
  const reader = new Reader(body, little);
  return parseSignature(signature).map((node) => reader.value(node));
}

// ---------------------------------------------------------------------------------------------------------
// Messages

const enum MessageType { MethodCall = 1, MethodReturn = 2, Error = 3, Signal = 4 }
const enum Field { Path = 1, Interface = 2, Member = 3, ErrorName = 4, ReplySerial = 5, Destination = 6, Sender = 7, Signature = 8 }

const headerFieldsType = parseSignature('a(yv)')[0]!;

export interface Message {
  type: number;
  serial: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  replySerial?: number;
  sender?: string;
  signature: string;
  body: unknown[];
}

function encodeCall(serial: number, call: CallOptions): Buffer {
  const body = call.signature ? marshal(call.signature, call.body ?? []) : Buffer.alloc(0);
  const fields: [number, Variant][] = [[Field.Path, { signature: 'o', value: call.path }]];
  if (call.interface) fields.push([Field.Interface, { signature: 's', value: call.interface }]);
  fields.push([Field.Member, { signature: 's', value: call.member }]);
  if (call.destination) fields.push([Field.Destination, { signature: 's', value: call.destination }]);
  if (call.signature) fields.push([Field.Signature, { signature: 'g', value: call.signature }]);
  const writer = new Writer();
  writer.byte(0x6c); // 'l': little-endian
  writer.byte(MessageType.MethodCall);
  writer.byte(0); // flags: a reply is expected, auto-start allowed
  writer.byte(1); // protocol version
  writer.u32(body.length);
  writer.u32(serial);
  writer.value(headerFieldsType, fields);
  writer.align(8);
  writer.bytes(body);
  return writer.buffer.subarray(0, writer.length);
}

/** Length of the message at the start of `buffer`, or 0 when its fixed header is not complete yet. */
function messageLength(buffer: Buffer): number {
  if (buffer.length < 16) return 0;
  const little = buffer[0] === 0x6c;
  if (!little && buffer[0] !== 0x42) throw new DBusError('org.freedesktop.DBus.Error.InvalidArgs', 'The bus sent a message with an unknown byte order');
  const bodyLength = u32At(buffer, 4, little);
  const fieldsLength = u32At(buffer, 12, little);
  const headerEnd = 16 + fieldsLength;
  const total = headerEnd + ((8 - (headerEnd % 8)) % 8) + bodyLength;
  if (total > 134_217_728) throw new DBusError('org.freedesktop.DBus.Error.LimitsExceeded', 'The bus sent a message larger than 128 MiB');
  return total;
}

function decodeMessage(buffer: Buffer): Message {
  const little = buffer[0] === 0x6c;
  const reader = new Reader(buffer, little, 4);
  const type = buffer[1]!;
  const bodyLength = reader.u32();
  const serial = reader.u32();
  const fields = reader.value(headerFieldsType) as [number, Variant][];
  const message: Message = { type, serial, signature: '', body: [] };
  for (const [code, { value }] of fields) {
    switch (code) {
      case Field.Path: message.path = value as string; break;
      case Field.Interface: message.interface = value as string; break;
      case Field.Member: message.member = value as string; break;
      case Field.ErrorName: message.errorName = value as string; break;
      case Field.ReplySerial: message.replySerial = value as number; break;
      case Field.Sender: message.sender = value as string; break;
      case Field.Signature: message.signature = value as string; break;
      default: break;
    }
  }
  reader.align(8);
  if (message.signature) {
    const body = new Reader(buffer, little, reader.at, reader.at + bodyLength);
    // Alignment in the body is relative to the message start, which is also where the body's 8-byte boundary is.
    message.body = parseSignature(message.signature).map((node) => body.value(node));
  }
  return message;
}

// ---------------------------------------------------------------------------------------------------------
// Addresses

/** The socket paths to try for the session bus, in order (`\0`-prefixed for abstract sockets). */
export function sessionBusSockets(env: NodeJS.ProcessEnv): { sockets: string[]; described: string } {
  const address = env.DBUS_SESSION_BUS_ADDRESS;
  if (!address) {
    // As GDBus and sd-bus do: without an address, the per-user bus at $XDG_RUNTIME_DIR/bus if it exists.
    const runtime = env.XDG_RUNTIME_DIR;
    const fallback = runtime ? join(runtime, 'bus') : undefined;
    return { sockets: fallback && existsSync(fallback) ? [fallback] : [], described: 'DBUS_SESSION_BUS_ADDRESS is not set' };
  }
  const sockets: string[] = [];
  for (const entry of address.split(';')) {
    const colon = entry.indexOf(':');
    if (colon < 0 || entry.slice(0, colon) !== 'unix') continue;
    const keys = new Map<string, string>();
    for (const pair of entry.slice(colon + 1).split(',')) {
      const equals = pair.indexOf('=');
      if (equals > 0) keys.set(pair.slice(0, equals), unescapeAddressValue(pair.slice(equals + 1)));
    }
    const path = keys.get('path');
    const abstract = keys.get('abstract');
    if (path) sockets.push(path);
    else if (abstract) sockets.push(`\0${abstract}`);
    else if (keys.get('runtime') === 'yes' && env.XDG_RUNTIME_DIR) sockets.push(join(env.XDG_RUNTIME_DIR, 'bus'));
  }
  return { sockets, described: `DBUS_SESSION_BUS_ADDRESS=${address}` };
}

/** Address values escape bytes as %xx; the bytes are UTF-8 (a path with "é" is %c3%a9). */
function unescapeAddressValue(value: string): string {
  if (!value.includes('%')) return value;
  const bytes: number[] = [];
  for (let at = 0; at < value.length; at++) {
    const hex = value.slice(at + 1, at + 3);
    if (value[at] === '%' && /^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      at += 2;
    } else {
      const character = String.fromCodePoint(value.codePointAt(at)!);
      bytes.push(...Buffer.from(character, 'utf8'));
      at += character.length - 1;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

// ---------------------------------------------------------------------------------------------------------
// Connection

export interface CallOptions {
  destination?: string;
  path: string;
  interface?: string;
  member: string;
  signature?: string;
  body?: unknown[];
  /** How long to wait for the reply. Default 25 s, libdbus's default. */
  timeoutMs?: number;
}

interface Pending { resolve(message: Message): void; reject(error: Error): void; timer: NodeJS.Timeout }

type SignalListener = (message: Message) => void;

export class DBusConnection {
  #socket: Socket;
  #serial = 0;
  #pending = new Map<number, Pending>();
  #listeners = new Set<SignalListener>();
  #inbox: Buffer = Buffer.alloc(0);
  #closed: Error | undefined;
  #onClose = new Set<() => void>();
  /** The unique name the bus gave us. */
  uniqueName = '';

  /** The server's answer to AUTH (its first line), once it has come. */
  readonly authenticated: Promise<string>;
  #authLine: ((line: string) => void) | undefined;
  #authFailed: ((error: Error) => void) | undefined;

  /**
   * Opened ahead of use (a client connects from its creation on): until something calls through it, its socket and
   * timers do not keep the process alive, so an app that never uses it (or a bus that never answers) does not wait.
   */
  #ahead: boolean;
  #handshakeTimer: NodeJS.Timeout | undefined;

  private constructor(socket: Socket, ahead: boolean) {
    this.#socket = socket;
    this.#ahead = ahead;
    this.authenticated = new Promise<string>((resolve, reject) => { this.#authLine = resolve; this.#authFailed = reject; });
    this.authenticated.catch(() => undefined);
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('error', (error) => this.#close(error));
    socket.on('close', () => this.#close(new DBusError('org.freedesktop.DBus.Error.Disconnected', 'The D-Bus connection was closed')));
  }

  /**
   * Connects, authenticates (EXTERNAL, our uid) and says Hello. With `ahead`, nothing of it keeps the process alive
   * until `inUse` (which `sessionBus` calls for the first caller that waits for it).
   */
  static open(socketPath: string, timeoutMs: number, ahead = false): { opening: Promise<DBusConnection>; inUse(): void } {
    const socket = netConnect({ path: socketPath });
    const connection = new DBusConnection(socket, ahead);
    return { opening: DBusConnection.#handshake(connection, socket, timeoutMs), inUse: () => connection.#inUse() };
  }

  /** From now on this connection keeps the process alive while a call, the handshake included, is in flight. */
  #inUse(): void {
    if (!this.#ahead) return;
    this.#ahead = false;
    this.#handshakeTimer?.ref();
    for (const { timer } of this.#pending.values()) timer.ref();
    if (this.#pending.size > 0) this.#socket.ref();
  }

  static async #handshake(connection: DBusConnection, socket: Socket, timeoutMs: number): Promise<DBusConnection> {
    const timer = setTimeout(() => socket.destroy(new DBusError('org.freedesktop.DBus.Error.Timeout',
      `No D-Bus handshake within ${timeoutMs} ms`)), timeoutMs);
    connection.#handshakeTimer = timer;
    if (connection.#ahead) {
      timer.unref();
      socket.unref();
    }
    const connected = new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    connected.catch(() => undefined);
    try {
      const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
      // One write for the whole handshake, as sd-bus does: AUTH, then BEGIN, then our Hello call. A bus that
      // accepts EXTERNAL answers OK and reads on; one that refuses answers REJECTED and then drops the
      // connection when BEGIN arrives, which is reported below as what it is. Written before the socket has
      // connected (the socket holds it until then), so that it leaves in the same callback as the connect.
      const hello = connection.call({
        destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'Hello', timeoutMs,
      }, `\0AUTH EXTERNAL ${Buffer.from(String(uid), 'ascii').toString('hex')}\r\nBEGIN\r\n`);
      hello.catch(() => undefined);
      // A socket that cannot connect throws its own error (ENOENT, ECONNREFUSED), as before any byte was sent.
      await connected;
      const line = await connection.authenticated;
      if (!line.startsWith('OK ')) {
        throw new DBusError('org.freedesktop.DBus.Error.AuthFailed', `The bus refused EXTERNAL authentication for uid ${uid}: ${line.slice(0, 200)}`);
      }
      const [name] = await hello;
      connection.uniqueName = String(name);
      // Whoever gets the connection uses it: from here on a call in flight keeps the process alive.
      connection.#inUse();
      return connection;
    } catch (error) {
      socket.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
      connection.#handshakeTimer = undefined;
    }
  }

  get closed(): boolean { return this.#closed !== undefined; }

  onClose(listener: () => void): void { this.#onClose.add(listener); }

  /** Calls a method and resolves with the reply's body; an error reply rejects with a DBusError. */
  call(options: CallOptions, preamble?: string): Promise<unknown[]> {
    if (this.#closed) return Promise.reject(this.#closed);
    const serial = (this.#serial = (this.#serial % 0xffff_fffe) + 1);
    let bytes: Buffer;
    try {
      bytes = encodeCall(serial, options);
    } catch (error) {
      return Promise.reject(error);
    }
    const timeoutMs = options.timeoutMs ?? 25_000;
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(serial);
        reject(new DBusError('org.freedesktop.DBus.Error.NoReply',
          `${options.interface ?? ''}.${options.member} on ${options.path} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(serial, { resolve, reject, timer });
      // Idle, the connection must not keep the process alive; with a call in flight it must (once in use).
      if (this.#ahead) timer.unref();
      else this.#socket.ref();
      this.#send(preamble === undefined ? bytes : Buffer.concat([Buffer.from(preamble, 'latin1'), bytes]));
    }).then((reply) => {
      if (reply.type === MessageType.Error) {
        const text = typeof reply.body[0] === 'string' ? reply.body[0] : '';
        throw new DBusError(reply.errorName ?? 'org.freedesktop.DBus.Error.Failed', text || (reply.errorName ?? 'D-Bus error'));
      }
      return reply.body;
    });
  }

  #corked = false;

  /**
   * Messages sent in one go (a search beside a session, a call beside its AddMatch) leave in one write, at the end
   * of the current tick: each write to the bus socket is a system call and a wake-up of the bus daemon (~0.25 ms of a
   * CLI's start on a small VM). Order is kept, so the bus still sees the calls in the order they were made.
   */
  #send(bytes: Buffer): void {
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#socket.write(bytes);
  }

  /** Listens to every signal this connection receives (subscribe with AddMatch); returns the unsubscriber. */
  onSignal(listener: SignalListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#socket.destroy();
  }

  #settle(serial: number): Pending | undefined {
    const pending = this.#pending.get(serial);
    if (!pending) return undefined;
    this.#pending.delete(serial);
    clearTimeout(pending.timer);
    if (this.#pending.size === 0) this.#socket.unref();
    return pending;
  }

  #receive(chunk: Buffer): void {
    this.#inbox = this.#inbox.length === 0 ? chunk : Buffer.concat([this.#inbox, chunk]);
    if (this.#authLine) {
      // Before the binary stream: the server's one text line answering AUTH.
      const end = this.#inbox.indexOf('\r\n');
      if (end < 0) {
        if (this.#inbox.length > 4096) this.#socket.destroy(new DBusError('org.freedesktop.DBus.Error.AuthFailed', 'The bus sent an over-long authentication line'));
        return;
      }
      const line = this.#inbox.toString('latin1', 0, end);
      this.#inbox = this.#inbox.subarray(end + 2);
      this.#authLine(line);
      this.#authLine = undefined;
      this.#authFailed = undefined;
    }
    try {
      for (;;) {
        const length = messageLength(this.#inbox);
        if (length === 0 || this.#inbox.length < length) return;
        const bytes = this.#inbox.subarray(0, length);
        this.#inbox = this.#inbox.subarray(length);
        this.#dispatch(decodeMessage(bytes));
      }
    } catch (error) {
      // A stream we cannot parse cannot be resynchronised.
      this.#socket.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #dispatch(message: Message): void {
    if (message.type === MessageType.MethodReturn || message.type === MessageType.Error) {
      if (message.replySerial !== undefined) this.#settle(message.replySerial)?.resolve(message);
    } else if (message.type === MessageType.Signal) {
      for (const listener of this.#listeners) listener(message);
    }
  }

  #close(error: Error): void {
    if (this.#closed) return;
    this.#closed = error;
    this.#authFailed?.(new DBusError('org.freedesktop.DBus.Error.AuthFailed', `The bus closed the connection during authentication: ${error.message}`, { cause: error }));
    for (const serial of [...this.#pending.keys()]) this.#settle(serial)?.reject(error);
    for (const listener of this.#onClose) listener();
  }
}

/** A session bus connection being opened or open, and how to tell it that someone now waits for it. */
interface SessionOpening { connection: Promise<DBusConnection>; inUse(): void }

const sessionConnections = new Map<string, SessionOpening>();

/** Whether this thread has (or is opening) a session bus connection for `env`. */
export function hasSessionBus(env: NodeJS.ProcessEnv): boolean {
  const { sockets, described } = sessionBusSockets(env);
  return sessionConnections.has(sockets.join(';') || described);
}

/**
 * The session bus connection of this thread for `env`, opened on first use and shared after; a dropped
 * connection is replaced on the next call. Throws DBusUnreachableError when no bus answers. `ahead`: opened before
 * it is needed, so it does not keep the process alive until a caller without `ahead` asks for it.
 */
export function sessionBus(env: NodeJS.ProcessEnv, timeoutMs = 25_000, ahead = false): Promise<DBusConnection> {
  const { sockets, described } = sessionBusSockets(env);
  const key = sockets.join(';') || described;
  const existing = sessionConnections.get(key);
  if (existing) {
    if (!ahead) existing.inUse();
    return existing.connection;
  }
  let wanted = !ahead;
  let attempt: { inUse(): void } | undefined;
  const connection = (async () => {
    if (sockets.length === 0) throw new DBusUnreachableError(`no D-Bus session bus address (${described})`);
    let lastError: unknown;
    for (const socket of sockets) {
      try {
        const opened = DBusConnection.open(socket, timeoutMs, !wanted);
        attempt = opened;
        const open = await opened.opening;
        open.onClose(() => {
          if (sessionConnections.get(key) === entry) sessionConnections.delete(key);
        });
        // Unreferenced while idle: a CLI exits when its work is done, with the connection still open.
        return open;
      } catch (error) {
        lastError = error;
      }
    }
    throw new DBusUnreachableError(`the D-Bus session bus does not answer (${described})`, { cause: lastError });
  })();
  const entry: SessionOpening = { connection, inUse: () => { wanted = true; attempt?.inUse(); } };
  sessionConnections.set(key, entry);
  connection.catch(() => {
    if (sessionConnections.get(key) === entry) sessionConnections.delete(key);
  });
  return connection;
}

/** Exported for tests: the signature text of a parsed type. */
export const describeType = signatureOf;
