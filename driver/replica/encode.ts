/**
 * Frame encoding (layout in protocol.ts). Every encoded frame is run through the decoder's own
 * checks, so a bug or a bad argument throws here, at the sender, instead of killing the peer's
 * connection; decode(encode(frame)) always gives the frame back.
 */
import { buildFrame, checkHeader, type RawHeader, writeHeader } from './codec.js';
import { encodeHelloPayload } from './hello.js';
import {
  EXTENT_SIZE,
  Flag,
  type Frame,
  GREETING_OPCODE,
  HEADER_SIZE,
  HELLO_OK_PAYLOAD,
  HelloFlag,
  MAGIC_U32,
  MAX_PAYLOAD,
  Opcode,
  PROTOCOL_VERSION,
  REPLY_BIT,
  type Reply,
  type Request,
  Status,
} from './wire.js';

const EMPTY = Buffer.alloc(0);
const U64_MAX = (1n << 64n) - 1n;

type Raw = Omit<RawHeader, 'magic' | 'version' | 'payloadLength'> & { payload: Buffer };

function u64(name: string, value: bigint): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX)
    throw new RangeError(`${name} must be a u64`);
  return value;
}

function u32(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new RangeError(`${name} must be a u32`);
  return value;
}

function u32Bytes(value: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE(u32('blockSize', value));
  return buf;
}

function requestRaw(r: Request): Raw {
  const base: Raw = {
    opcode: Opcode[r.op],
    flags: 0,
    requestId: r.requestId,
    epoch: r.epoch,
    offset: 0n,
    length: 0,
    payload: EMPTY,
  };
  switch (r.op) {
    case 'HELLO':
      return { ...base, payload: encodeHelloPayload({ ...r, epoch: u64('epoch', r.epoch) }) };
    case 'FLUSH':
      return base;
    case 'READ':
    case 'EXTENTS':
      return { ...base, offset: r.offset, length: r.length };
    case 'WRITE':
      return { ...base, offset: r.offset, length: r.length, flags: r.fua ? Flag.FUA : 0, payload: r.data };
    case 'TRIM':
      return { ...base, offset: r.offset, length: r.length, flags: r.fua ? Flag.FUA : 0 };
    case 'WRITE_ZEROES': {
      const flags = (r.fua ? Flag.FUA : 0) | (r.noHole ? Flag.NO_HOLE : 0);
      return { ...base, offset: r.offset, length: r.length, flags };
    }
    case 'HASH':
      return { ...base, offset: r.offset, length: r.length, payload: u32Bytes(r.blockSize) };
  }
}

function replyPayload(r: Reply): Buffer {
  if (r.status !== 'OK') return Buffer.from(r.message, 'utf8');
  switch (r.op) {
    case 'HELLO': {
      const buf = Buffer.alloc(HELLO_OK_PAYLOAD);
      buf.writeBigUInt64BE(u64('size', r.size));
      buf.writeUInt32BE(r.dirty ? HelloFlag.DIRTY : 0, 8);
      return buf;
    }
    case 'READ':
      return r.data;
    case 'EXTENTS': {
      const buf = Buffer.alloc(r.extents.length * EXTENT_SIZE);
      r.extents.forEach((e, i) => {
        buf.writeBigUInt64BE(u64('extent offset', e.offset), i * EXTENT_SIZE);
        buf.writeBigUInt64BE(u64('extent length', e.length), i * EXTENT_SIZE + 8);
      });
      return buf;
    }
    case 'HASH':
      return Buffer.concat([u32Bytes(r.blockSize), ...r.digests]);
    default:
      return EMPTY;
  }
}

function rawOf(frame: Frame): Raw {
  switch (frame.kind) {
    case 'greeting':
      return {
        opcode: GREETING_OPCODE,
        flags: 0,
        requestId: 0n,
        epoch: 0n,
        offset: 0n,
        length: 0,
        payload: frame.nonce,
      };
    case 'request':
      return requestRaw(frame);
    case 'reply': {
      const { requestId, epoch, offset, length } = frame;
      const opcode = Opcode[frame.op] | REPLY_BIT;
      return {
        opcode,
        flags: Status[frame.status],
        requestId,
        epoch,
        offset,
        length,
        payload: replyPayload(frame),
      };
    }
  }
}

/**
 * The frame as [header, payload] (payload left out when empty) without copying the payload, for
 * socket.writev / cork. Throws RangeError for a frame the decoder would refuse.
 */
export function encodeFrameParts(frame: Frame): Buffer[] {
  const fast = encodeDataPath(frame);
  if (fast !== undefined) return fast;
  const { payload, ...raw } = rawOf(frame);
  const header: RawHeader = {
    ...raw,
    magic: MAGIC_U32,
    version: PROTOCOL_VERSION,
    requestId: u64('requestId', raw.requestId),
    epoch: u64('epoch', raw.epoch),
    offset: u64('offset', raw.offset),
    length: u32('length', raw.length),
    payloadLength: payload.length,
  };
  const problem = checkHeader(header, 'any') ?? buildFrame(header, payload);
  if (problem.type === 'fatal') throw new RangeError(`cannot encode ${frame.kind}: ${problem.message}`);
  return payload.length === 0 ? [writeHeader(header)] : [writeHeader(header), payload];
}

/**
 * The frames of every I/O (READ, WRITE, FLUSH requests and their OK replies) written straight into
 * a pooled header, without the generic path's intermediate objects and its decode of what it just
 * encoded: the data-plane profile showed that round trip and its garbage as a large part of each
 * 4 KiB write's cost. The checks are the same ones the decoder applies to these frames (u64/u32
 * ranges, payload length equal to the range length, at most MAX_PAYLOAD); anything else takes the
 * generic path. Returns undefined for frames this path does not handle.
 */
function encodeDataPath(frame: Frame): Buffer[] | undefined {
  if (frame.kind === 'request') {
    if (frame.op === 'WRITE') {
      if (frame.data.length !== frame.length) return undefined;
      const header = dataHeader(Opcode.WRITE, frame.fua ? Flag.FUA : 0, frame, frame.data.length);
      return frame.data.length === 0 ? [header] : [header, frame.data];
    }
    if (frame.op === 'READ') return [dataHeader(Opcode.READ, 0, frame, 0)];
    if (frame.op === 'FLUSH') return [dataHeader(Opcode.FLUSH, 0, { ...frame, offset: 0n, length: 0 }, 0)];
    return undefined;
  }
  if (frame.kind !== 'reply' || frame.status !== 'OK') return undefined;
  switch (frame.op) {
    case 'READ': {
      if (frame.data.length !== frame.length) return undefined;
      const header = dataHeader(Opcode.READ | REPLY_BIT, Status.OK, frame, frame.data.length);
      return frame.data.length === 0 ? [header] : [header, frame.data];
    }
    case 'WRITE':
    case 'TRIM':
    case 'WRITE_ZEROES':
      return [dataHeader(Opcode[frame.op] | REPLY_BIT, Status.OK, frame, 0)];
    case 'FLUSH':
      if (frame.offset !== 0n || frame.length !== 0) return undefined;
      return [dataHeader(Opcode.FLUSH | REPLY_BIT, Status.OK, frame, 0)];
    default:
      return undefined;
  }
}

/** A checked header in a pooled buffer (every byte is written). Throws RangeError like the generic path. */
function dataHeader(
  opcode: number,
  flags: number,
  f: { requestId: bigint; epoch: bigint; offset: bigint; length: number },
  payloadLength: number,
): Buffer {
  if (payloadLength > MAX_PAYLOAD)
    throw new RangeError(`cannot encode: payload of ${payloadLength} bytes exceeds ${MAX_PAYLOAD}`);
  const buf = Buffer.allocUnsafe(HEADER_SIZE);
  buf.writeUInt32BE(MAGIC_U32, 0);
  buf.writeUInt8(PROTOCOL_VERSION, 4);
  buf.writeUInt8(opcode, 5);
  buf.writeUInt16BE(flags, 6);
  buf.writeBigUInt64BE(u64('requestId', f.requestId), 8);
  buf.writeBigUInt64BE(u64('epoch', f.epoch), 16);
  buf.writeBigUInt64BE(u64('offset', f.offset), 24);
  buf.writeUInt32BE(u32('length', f.length), 32);
  buf.writeUInt32BE(payloadLength, 36);
  return buf;
}

/** The frame as one buffer (copies the payload; prefer encodeFrameParts for large writes). */
export function encodeFrame(frame: Frame): Buffer {
  return Buffer.concat(encodeFrameParts(frame));
}
