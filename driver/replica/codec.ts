/**
 * Header validation, payload parsing and frame encoding (layout in protocol.ts). The encoder runs
 * the decoder's own checks on what it produces, so it can never emit a frame the peer would refuse.
 */
import { createHash } from 'node:crypto';
import { decodeUtf8, HELLO_MAX_PAYLOAD, HELLO_MIN_PAYLOAD, NONCE_SIZE, parseHelloPayload } from './hello.js';
import {
  type DecodedFrame,
  DIGEST_SIZE,
  EXTENT_SIZE,
  type Extent,
  type Fatal,
  Flag,
  fatal,
  GREETING_OPCODE,
  HEADER_SIZE,
  HELLO_OK_PAYLOAD,
  HelloFlag,
  MAGIC_U32,
  MAX_HASH_BLOCK,
  MAX_MESSAGE_BYTES,
  MAX_PAYLOAD,
  MIN_HASH_BLOCK,
  PROTOCOL_VERSION,
  REPLY_BIT,
  type RequestOp,
  requestOpOf,
  Status,
  statusOf,
} from './wire.js';

/** The fixed header as numbers; `flags` is the status in a reply. */
export interface RawHeader {
  magic: number;
  version: number;
  opcode: number;
  flags: number;
  requestId: bigint;
  epoch: bigint;
  offset: bigint;
  length: number;
  payloadLength: number;
}

/** Which frames a decoder accepts: a server reads requests, a client reads the greeting and replies. */
export type Accept = 'requests' | 'replies' | 'any';

export function parseHeader(buf: Buffer): RawHeader {
  return {
    magic: buf.readUInt32BE(0),
    version: buf.readUInt8(4),
    opcode: buf.readUInt8(5),
    flags: buf.readUInt16BE(6),
    requestId: buf.readBigUInt64BE(8),
    epoch: buf.readBigUInt64BE(16),
    offset: buf.readBigUInt64BE(24),
    length: buf.readUInt32BE(32),
    payloadLength: buf.readUInt32BE(36),
  };
}

export function writeHeader(h: RawHeader): Buffer {
  const buf = Buffer.alloc(HEADER_SIZE);
  buf.writeUInt32BE(h.magic, 0);
  buf.writeUInt8(h.version, 4);
  buf.writeUInt8(h.opcode, 5);
  buf.writeUInt16BE(h.flags, 6);
  buf.writeBigUInt64BE(h.requestId, 8);
  buf.writeBigUInt64BE(h.epoch, 16);
  buf.writeBigUInt64BE(h.offset, 24);
  buf.writeUInt32BE(h.length, 32);
  buf.writeUInt32BE(h.payloadLength, 36);
  return buf;
}

/** Ops whose offset/length mean something; for the others both must be zero. */
const RANGED: ReadonlySet<RequestOp> = new Set(['READ', 'WRITE', 'TRIM', 'WRITE_ZEROES', 'EXTENTS', 'HASH']);
/** Each rule returns a complaint, or undefined when the payload length fits the opcode. */
type LengthRule = (payloadLength: number, h: RawHeader) => string | undefined;
const none: LengthRule = (n) => (n === 0 ? undefined : 'must be empty');
const exactly =
  (size: number): LengthRule =>
  (n) =>
    n === size ? undefined : `must be ${size} bytes`;
const sameAsLength: LengthRule = (n, h) => (n === h.length ? undefined : 'must equal the length field');

const REQUEST_RULES: Record<RequestOp, { flags: number; payload: LengthRule }> = {
  HELLO: {
    flags: 0,
    payload: (n) =>
      n >= HELLO_MIN_PAYLOAD && n <= HELLO_MAX_PAYLOAD ? undefined : 'has an impossible size for a HELLO',
  },
  READ: { flags: 0, payload: none },
  WRITE: { flags: Flag.FUA, payload: sameAsLength },
  FLUSH: { flags: 0, payload: none },
  TRIM: { flags: Flag.FUA, payload: none },
  WRITE_ZEROES: { flags: Flag.FUA | Flag.NO_HOLE, payload: none },
  EXTENTS: { flags: 0, payload: none },
  HASH: { flags: 0, payload: exactly(4) },
};

const OK_RULES: Record<RequestOp, LengthRule> = {
  HELLO: exactly(HELLO_OK_PAYLOAD),
  READ: sameAsLength,
  WRITE: none,
  FLUSH: none,
  TRIM: none,
  WRITE_ZEROES: none,
  EXTENTS: (n) => (n % EXTENT_SIZE === 0 ? undefined : `must be a multiple of ${EXTENT_SIZE} bytes`),
  HASH: (n) =>
    n >= 4 && (n - 4) % DIGEST_SIZE === 0 ? undefined : `must be 4 + a multiple of ${DIGEST_SIZE} bytes`,
};

/** Everything that can be judged from the 40 header bytes alone, before any payload is buffered. */
export function checkHeader(h: RawHeader, accept: Accept): Fatal | undefined {
  if (h.magic !== MAGIC_U32) return fatal('bad-magic', `bad magic 0x${h.magic.toString(16)}`);
  if (h.version !== PROTOCOL_VERSION) return fatal('unsupported-version', `unsupported version ${h.version}`);
  const isReply = (h.opcode & REPLY_BIT) !== 0;
  const op = requestOpOf(h.opcode & ~REPLY_BIT);
  if (op === undefined && h.opcode !== GREETING_OPCODE) {
    return fatal('unknown-opcode', `unknown opcode 0x${h.opcode.toString(16)}`);
  }
  if ((accept === 'requests' && isReply) || (accept === 'replies' && !isReply)) {
    return fatal('unexpected-frame', `opcode 0x${h.opcode.toString(16)} does not travel in this direction`);
  }
  if (h.payloadLength > MAX_PAYLOAD) {
    return fatal('payload-too-large', `payload of ${h.payloadLength} bytes exceeds ${MAX_PAYLOAD}`);
  }
  if (op === undefined) return checkGreetingHeader(h);
  if (!RANGED.has(op) && (h.offset !== 0n || h.length !== 0)) {
    return fatal('bad-header', `${op} must have zero offset and length`);
  }
  return isReply ? checkReplyHeader(op, h) : checkRequestHeader(op, h);
}

function checkGreetingHeader(h: RawHeader): Fatal | undefined {
  if (h.flags !== 0 || h.requestId !== 0n || h.epoch !== 0n || h.offset !== 0n || h.length !== 0) {
    return fatal('bad-header', 'GREETING header fields must be zero');
  }
  return h.payloadLength === NONCE_SIZE
    ? undefined
    : fatal('bad-length', `GREETING payload must be ${NONCE_SIZE} bytes`);
}

function checkRequestHeader(op: RequestOp, h: RawHeader): Fatal | undefined {
  const rule = REQUEST_RULES[op];
  if ((h.flags & ~rule.flags) !== 0)
    return fatal('bad-flags', `flags 0x${h.flags.toString(16)} invalid for ${op}`);
  const complaint = rule.payload(h.payloadLength, h);
  return complaint === undefined ? undefined : fatal('bad-length', `${op} request payload ${complaint}`);
}

function checkReplyHeader(op: RequestOp, h: RawHeader): Fatal | undefined {
  const status = statusOf(h.flags);
  if (status === undefined) return fatal('unknown-status', `unknown status ${h.flags}`);
  const complaint =
    status === 'OK'
      ? OK_RULES[op](h.payloadLength, h)
      : h.payloadLength <= MAX_MESSAGE_BYTES
        ? undefined
        : `must be at most ${MAX_MESSAGE_BYTES} bytes`;
  return complaint === undefined
    ? undefined
    : fatal('bad-length', `${op} ${status} reply payload ${complaint}`);
}

export function validBlockSize(size: number): boolean {
  return (
    Number.isInteger(size) && size >= MIN_HASH_BLOCK && size <= MAX_HASH_BLOCK && (size & (size - 1)) === 0
  );
}

/** How many digests a HASH of `length` bytes in blocks of `blockSize` returns (last block may be short). */
export function digestCount(length: number, blockSize: number): number {
  return Math.ceil(length / blockSize);
}

/** The digests a HASH reply carries for `data` (the range's bytes, holes read as zeroes). */
export function hashBlocks(data: Buffer, blockSize: number): Buffer[] {
  const digests: Buffer[] = [];
  for (let at = 0; at < data.length; at += blockSize) {
    digests.push(
      createHash('sha256')
        .update(data.subarray(at, at + blockSize))
        .digest(),
    );
  }
  return digests;
}

/** Turns a header that passed checkHeader and its payload into a typed frame. Never throws. */
export function buildFrame(h: RawHeader, payload: Buffer): DecodedFrame {
  const op = requestOpOf(h.opcode & ~REPLY_BIT);
  if (op === undefined) return { type: 'frame', frame: { kind: 'greeting', nonce: payload } };
  if ((h.opcode & REPLY_BIT) !== 0) return buildReply(op, h, payload);
  return buildRequest(op, h, payload);
}

function buildRequest(op: RequestOp, h: RawHeader, payload: Buffer): DecodedFrame {
  // The I/O requests as literals of one shape each (no spreads): they are built for every request.
  const { requestId, epoch, offset, length } = h;
  if (op === 'WRITE') {
    const fua = (h.flags & Flag.FUA) !== 0;
    return {
      type: 'frame',
      frame: { kind: 'request', requestId, epoch, op, offset, length, fua, data: payload },
    };
  }
  if (op === 'READ')
    return { type: 'frame', frame: { kind: 'request', requestId, epoch, op, offset, length } };
  const base = { kind: 'request' as const, requestId: h.requestId, epoch: h.epoch };
  const range = { offset: h.offset, length: h.length };
  const fua = (h.flags & Flag.FUA) !== 0;
  switch (op) {
    case 'HELLO': {
      const hello = parseHelloPayload(payload);
      if (typeof hello === 'string') return fatal('malformed-hello', `malformed HELLO: ${hello}`);
      if (hello.epoch !== h.epoch) return fatal('malformed-hello', 'HELLO payload epoch differs from header');
      const { volume, engineId, proof } = hello;
      return { type: 'frame', frame: { ...base, op, volume, engineId, proof } };
    }
    case 'HASH': {
      const blockSize = payload.readUInt32BE(0);
      if (!validBlockSize(blockSize)) return fatal('malformed-hash', `invalid HASH block size ${blockSize}`);
      return { type: 'frame', frame: { ...base, op, ...range, blockSize } };
    }
    case 'TRIM':
      return { type: 'frame', frame: { ...base, op, ...range, fua } };
    case 'WRITE_ZEROES':
      return { type: 'frame', frame: { ...base, op, ...range, fua, noHole: (h.flags & Flag.NO_HOLE) !== 0 } };
    case 'FLUSH':
      return { type: 'frame', frame: { ...base, op } };
    case 'EXTENTS':
      return { type: 'frame', frame: { ...base, op, ...range } };
  }
}

/** The fields every reply echoes from its header. */
function replyBase(h: RawHeader) {
  return {
    kind: 'reply' as const,
    requestId: h.requestId,
    epoch: h.epoch,
    offset: h.offset,
    length: h.length,
  };
}

function buildReply(op: RequestOp, h: RawHeader, payload: Buffer): DecodedFrame {
  const { requestId, epoch, offset, length } = h;
  if (h.flags === Status.OK && (op === 'WRITE' || op === 'READ')) {
    const frame =
      op === 'READ'
        ? {
            kind: 'reply' as const,
            requestId,
            epoch,
            offset,
            length,
            op,
            status: 'OK' as const,
            data: payload,
          }
        : { kind: 'reply' as const, requestId, epoch, offset, length, op, status: 'OK' as const };
    return { type: 'frame', frame };
  }
  const base = replyBase(h);
  const status = statusOf(h.flags);
  if (status === undefined) return fatal('unknown-status', `unknown status ${h.flags}`); // checkHeader already refused it
  if (status !== 'OK') {
    const message = decodeUtf8(payload);
    if (message === undefined) return fatal('malformed-message', 'error reply message is not UTF-8');
    return { type: 'frame', frame: { ...base, op, status, message } };
  }
  switch (op) {
    case 'HELLO': {
      const flags = payload.readUInt32BE(8);
      if ((flags & ~HelloFlag.DIRTY) !== 0)
        return fatal('malformed-hello', `unknown HELLO reply flags ${flags}`);
      const dirty = (flags & HelloFlag.DIRTY) !== 0;
      return { type: 'frame', frame: { ...base, op, status, size: payload.readBigUInt64BE(0), dirty } };
    }
    case 'READ':
      return { type: 'frame', frame: { ...base, op, status, data: payload } };
    case 'EXTENTS': {
      const extents = parseExtents(h, payload);
      if (typeof extents === 'string')
        return fatal('malformed-extents', `malformed EXTENTS reply: ${extents}`);
      return { type: 'frame', frame: { ...base, op, status, extents } };
    }
    case 'HASH':
      return buildHashReply(h, payload);
    default:
      return { type: 'frame', frame: { ...base, op, status } };
  }
}

/** Extents must be non-empty, ascending, disjoint and inside the requested range. */
function parseExtents(h: RawHeader, payload: Buffer): Extent[] | string {
  const end = h.offset + BigInt(h.length);
  const extents: Extent[] = [];
  let floor = h.offset;
  for (let at = 0; at < payload.length; at += EXTENT_SIZE) {
    const offset = payload.readBigUInt64BE(at);
    const length = payload.readBigUInt64BE(at + 8);
    if (length === 0n) return `empty extent at ${offset}`;
    if (offset < floor) return `extent at ${offset} overlaps, is out of order or before the range`;
    if (offset + length > end) return `extent at ${offset} ends past the range`;
    extents.push({ offset, length });
    floor = offset + length;
  }
  return extents;
}

function buildHashReply(h: RawHeader, payload: Buffer): DecodedFrame {
  const blockSize = payload.readUInt32BE(0);
  if (!validBlockSize(blockSize)) return fatal('malformed-hash', `invalid HASH block size ${blockSize}`);
  const count = (payload.length - 4) / DIGEST_SIZE;
  if (count !== digestCount(h.length, blockSize)) {
    return fatal('malformed-hash', `${count} digests for ${h.length} bytes in ${blockSize}-byte blocks`);
  }
  const digests: Buffer[] = [];
  for (let at = 4; at < payload.length; at += DIGEST_SIZE)
    digests.push(payload.subarray(at, at + DIGEST_SIZE));
  const base = replyBase(h);
  return { type: 'frame', frame: { ...base, op: 'HASH', status: 'OK', blockSize, digests } };
}
