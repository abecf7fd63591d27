/**
 * Seeded fuzz of FrameDecoder: random bytes, valid streams and mutated valid streams, fed in random
 * chunk sizes. Deterministic (fixed seeds), so a failure reproduces; the seed and case number are
 * in the failure message.
 */

import { seededRandom } from '../../test/harness/random.js';
import {
  type Accept,
  type DecodedFrame,
  type Extent,
  encodeFrame,
  type Frame,
  FrameDecoder,
  MAX_PAYLOAD,
  type RequestOp,
} from './protocol.js';

type Random = () => number;

const int = (r: Random, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Random, items: readonly T[]): T => items[int(r, items.length)] as T;
/** Uniformly random bytes, for garbage input and headers. */
function bytes(r: Random, n: number): Buffer {
  const buf = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) buf[i] = (r() * 256) | 0;
  return buf;
}

/** Cheap patterned bytes for frame data, whose content the decoder never looks at. */
function data(r: Random, n: number): Buffer {
  const buf = Buffer.allocUnsafe(n);
  const seed = int(r, 256);
  const step = 1 + 2 * int(r, 128);
  for (let i = 0; i < n; i++) buf[i] = (seed + i * step) & 0xff;
  return buf;
}
const u64 = (r: Random): bigint =>
  pick(r, [0n, 1n, (1n << 64n) - 1n, BigInt(int(r, 2 ** 31)) << BigInt(int(r, 33))]);

const OPS: RequestOp[] = ['HELLO', 'READ', 'WRITE', 'FLUSH', 'TRIM', 'WRITE_ZEROES', 'EXTENTS', 'HASH'];
const NAMES = ['v', 'pvc-1234', 'é', '節點-a', '\uFEFFbom', 'x'.repeat(253), '🙂'.repeat(63)];
const ERRORS = [
  'STALE_EPOCH',
  'AUTH_REQUIRED',
  'AUTH_FAILED',
  'UNKNOWN_VOLUME',
  'IO_ERROR',
  'NO_SPACE',
] as const;

function request(r: Random, op: RequestOp): Frame {
  const base = { kind: 'request', requestId: u64(r), epoch: u64(r) } as const;
  const offset = u64(r);
  const length = int(r, 1200);
  switch (op) {
    case 'HELLO':
      return { ...base, op, volume: pick(r, NAMES), engineId: pick(r, NAMES), proof: bytes(r, 32) };
    case 'WRITE':
      return { ...base, op, offset, length, fua: r() < 0.5, data: data(r, length) };
    case 'FLUSH':
      return { ...base, op };
    case 'TRIM':
      return { ...base, op, offset, length, fua: r() < 0.5 };
    case 'WRITE_ZEROES':
      return { ...base, op, offset, length, fua: r() < 0.5, noHole: r() < 0.5 };
    case 'HASH':
      return { ...base, op, offset, length, blockSize: 512 << int(r, 5) };
    case 'READ':
    case 'EXTENTS':
      return { ...base, op, offset, length };
  }
}

function extents(r: Random, offset: bigint, length: number): Extent[] {
  const out: Extent[] = [];
  let at = 0;
  while (at < length && out.length < 8) {
    at += int(r, 200);
    const len = 1 + int(r, 300);
    if (at + len > length) break;
    out.push({ offset: offset + BigInt(at), length: BigInt(len) });
    at += len;
  }
  return out;
}

function reply(r: Random, op: RequestOp): Frame {
  const ranged = op !== 'HELLO' && op !== 'FLUSH';
  const length = ranged ? int(r, 1200) : 0;
  const offset = ranged ? BigInt(int(r, 2 ** 31)) : 0n;
  const base = { kind: 'reply', requestId: u64(r), epoch: u64(r), offset, length } as const;
  if (r() < 0.25)
    return { ...base, op, status: pick(r, ERRORS), message: pick(r, ['', 'EIO', 'é'.repeat(300)]) };
  switch (op) {
    case 'HELLO':
      return { ...base, op, status: 'OK', size: u64(r), dirty: r() < 0.5 };
    case 'READ':
      return { ...base, op, status: 'OK', data: data(r, length) };
    case 'EXTENTS':
      return { ...base, op, status: 'OK', extents: extents(r, offset, length) };
    case 'HASH': {
      const blockSize = 512 << int(r, 3);
      const digests = Array.from({ length: Math.ceil(length / blockSize) }, () => bytes(r, 32));
      return { ...base, op, status: 'OK', blockSize, digests };
    }
    default:
      return { ...base, op, status: 'OK' };
  }
}

function randomFrame(r: Random): Frame {
  if (r() < 0.05) return { kind: 'greeting', nonce: bytes(r, 32) };
  return r() < 0.5 ? request(r, pick(r, OPS)) : reply(r, pick(r, OPS));
}

const EDGE_U32 = [0, 1, 31, 32, 40, MAX_PAYLOAD, MAX_PAYLOAD + 1, 0xffffffff];

/** One random corruption: flip, overwrite, truncate, insert, delete, or poison a header field. */
function mutate(r: Random, input: Buffer): Buffer {
  const buf = Buffer.from(input);
  const at = int(r, Math.max(buf.length, 1));
  switch (int(r, 7)) {
    case 0:
      if (buf.length > 0) buf[at] = (buf[at] ?? 0) ^ (1 << int(r, 8));
      return buf;
    case 1:
      if (buf.length > 0) buf[at] = int(r, 256);
      return buf;
    case 2:
      return buf.subarray(0, at);
    case 3:
      return Buffer.concat([buf.subarray(0, at), bytes(r, 1 + int(r, 8)), buf.subarray(at)]);
    case 4:
      return Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + int(r, 16))]);
    case 5: // a header's length or payload length field (of the first frame: offset 32 or 36)
      if (buf.length >= 40) buf.writeUInt32BE(pick(r, EDGE_U32), pick(r, [32, 36]));
      return buf;
    default: // opcode or flags/status
      if (buf.length >= 8) buf.writeUInt16BE(int(r, 0x10000), pick(r, [4, 6]));
      return buf;
  }
}

/** Feeds `input` in random chunk sizes, checking push-level invariants; returns everything. */
function feed(r: Random, input: Buffer, accept: Accept): DecodedFrame[] {
  const decoder = new FrameDecoder({ accept });
  const out: DecodedFrame[] = [];
  const oneByte = r() < 0.1;
  for (let at = 0; at < input.length; ) {
    const size = oneByte ? 1 : 1 + int(r, pick(r, [4, 64, 1024, 70_000]));
    const items = decoder.push(input.subarray(at, at + size));
    at += size;
    const fatalAt = items.findIndex((item) => item.type === 'fatal');
    if (fatalAt !== -1 && fatalAt !== items.length - 1) throw new Error('fatal is not the last item');
    if (out.some((item) => item.type === 'fatal') && items.length > 0) throw new Error('output after fatal');
    out.push(...items);
  }
  if (out.some((item) => item.type === 'fatal') && !decoder.dead) throw new Error('fatal but not dead');
  return out;
}

/** Per-frame invariants, and that the frames re-encode to exactly the bytes they came from. */
function checkFrames(input: Buffer, out: DecodedFrame[]): void {
  const decoded: Buffer[] = [];
  for (const item of out) {
    if (item.type === 'fatal') {
      if (item.reason === 'internal') throw new Error(`internal decoder error: ${item.message}`);
      continue;
    }
    const frame = item.frame;
    if (frame.kind === 'request' && frame.op === 'WRITE' && frame.data.length !== frame.length) {
      throw new Error('WRITE payload length differs from length');
    }
    if (
      frame.kind === 'reply' &&
      frame.status === 'OK' &&
      frame.op === 'READ' &&
      frame.data.length !== frame.length
    ) {
      throw new Error('READ reply data length differs from length');
    }
    const encoded = encodeFrame(frame); // throws if the decoder let through something the encoder refuses
    if (encoded.length - 40 > MAX_PAYLOAD) throw new Error('payload over the limit');
    decoded.push(encoded);
  }
  const prefix = Buffer.concat(decoded);
  if (!prefix.equals(input.subarray(0, prefix.length)))
    throw new Error('frames do not re-encode to their bytes');
}

const summary = (out: DecodedFrame[]): string[] =>
  out.map((item) => (item.type === 'fatal' ? `fatal:${item.reason}` : 'frame'));

function runCase(r: Random, kind: number): void {
  const frames = Array.from({ length: 1 + int(r, 4) }, () => randomFrame(r));
  const valid = Buffer.concat(frames.map(encodeFrame));
  let input: Buffer;
  if (kind === 0) input = bytes(r, int(r, 300));
  else if (kind === 1) input = Buffer.concat([Buffer.from('TDRP\x01', 'latin1'), bytes(r, int(r, 200))]);
  else if (kind === 2) input = valid;
  else {
    input = valid;
    for (let n = 1 + int(r, 3); n > 0; n--) input = mutate(r, input);
  }
  const accept = kind === 2 ? 'any' : pick(r, ['any', 'requests', 'replies'] as const);
  const out = feed(r, input, accept);
  checkFrames(input, out);
  if (summary(new FrameDecoder({ accept }).push(input)).join() !== summary(out).join()) {
    throw new Error('result depends on chunking');
  }
  // A valid stream decodes to as many frames as were encoded, and (checkFrames) they re-encode to
  // the whole stream: with a canonical encoding, that is the original frames back.
  if (kind === 2 && (out.length !== frames.length || out.some((item) => item.type !== 'frame'))) {
    throw new Error(`valid stream decoded as ${summary(out).join()}`);
  }
}

describe('FrameDecoder fuzz', () => {
  it.each([11, 22, 33, 44])('holds its invariants on 6,000 inputs (seed %i)', (seed) => {
    const r = seededRandom(seed);
    for (let i = 0; i < 6000; i++) {
      const kind = i % 8 < 1 ? 0 : i % 8 < 2 ? 1 : i % 8 < 3 ? 2 : 3;
      try {
        runCase(r, kind);
      } catch (err) {
        throw new Error(`seed ${seed}, case ${i}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  });
});
