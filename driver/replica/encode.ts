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
  HELLO_OK_PAYLOAD,
  HelloFlag,
  MAGIC_U32,
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

/** The frame as one buffer (copies the payload; prefer encodeFrameParts for large writes). */
export function encodeFrame(frame: Frame): Buffer {
  return Buffer.concat(encodeFrameParts(frame));
}
