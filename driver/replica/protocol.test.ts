import { createHash } from 'node:crypto';
import {
  type Accept,
  type DecodedFrame,
  digestCount,
  type ErrorStatus,
  encodeFrame,
  encodeFrameParts,
  type Frame,
  FrameDecoder,
  HEADER_SIZE,
  hashBlocks,
  helloProof,
  MAX_PAYLOAD,
  type RequestOp,
  Status,
} from './protocol.js';

const SECRET = 'a-volume-secret-of-some-length';
const NONCE = Buffer.alloc(32, 7);
const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
const req = { kind: 'request', requestId: 42n, epoch: 7n } as const;
const rep = { kind: 'reply', requestId: 42n, epoch: 9n } as const;
const range = { offset: 4096n, length: 8192 };
const none = { offset: 0n, length: 0 };

/** One frame of every shape, each as the decoder must return it. */
const SAMPLES: Frame[] = [
  { kind: 'greeting', nonce: NONCE },
  {
    ...req,
    op: 'HELLO',
    volume: 'pvc-0a1b',
    engineId: 'engine-node-a',
    proof: helloProof(SECRET, NONCE, 'pvc-0a1b', 'engine-node-a', 7n),
  },
  { ...req, op: 'READ', ...range },
  { ...req, op: 'WRITE', offset: 512n, length: 5, fua: false, data: Buffer.from('hello') },
  { ...req, op: 'WRITE', offset: (1n << 64n) - 1n, length: 1, fua: true, data: Buffer.from([1]) },
  { ...req, op: 'FLUSH' },
  { ...req, op: 'TRIM', ...range, fua: true },
  { ...req, op: 'WRITE_ZEROES', ...range, fua: false, noHole: true },
  { ...req, op: 'WRITE_ZEROES', ...range, fua: true, noHole: false },
  { ...req, op: 'EXTENTS', ...range },
  { ...req, op: 'HASH', ...range, blockSize: 4096 },
  { ...rep, ...none, op: 'HELLO', status: 'OK', size: 10n << 30n, dirty: false },
  { ...rep, ...none, op: 'HELLO', status: 'OK', size: 1n << 20n, dirty: true },
  { ...rep, op: 'READ', offset: 0n, length: 3, status: 'OK', data: Buffer.from('abc') },
  { ...rep, op: 'READ', offset: 0n, length: 0, status: 'OK', data: Buffer.alloc(0) },
  { ...rep, ...range, op: 'WRITE', status: 'OK' },
  { ...rep, ...none, op: 'FLUSH', status: 'OK' },
  { ...rep, ...range, op: 'TRIM', status: 'OK' },
  { ...rep, ...range, op: 'WRITE_ZEROES', status: 'OK' },
  {
    ...rep,
    ...range,
    op: 'EXTENTS',
    status: 'OK',
    extents: [
      { offset: 4096n, length: 512n },
      { offset: 8192n, length: 4096n },
    ],
  },
  { ...rep, ...range, op: 'EXTENTS', status: 'OK', extents: [] },
  { ...rep, ...range, op: 'HASH', status: 'OK', blockSize: 4096, digests: [digest('a'), digest('b')] },
  {
    ...rep,
    offset: 0n,
    length: 5000,
    op: 'HASH',
    status: 'OK',
    blockSize: 4096,
    digests: [digest('a'), digest('b')],
  },
  { ...rep, ...none, op: 'HELLO', status: 'STALE_EPOCH', message: '' },
  { ...rep, ...range, op: 'WRITE', status: 'IO_ERROR', message: 'EIO: ünïcode' },
];

const ERROR_STATUSES = (Object.keys(Status) as (keyof typeof Status)[]).filter(
  (s): s is ErrorStatus => s !== 'OK',
);

function decodeAll(bytes: Buffer, accept?: Accept): DecodedFrame[] {
  return new FrameDecoder(accept === undefined ? {} : { accept }).push(bytes);
}

function frames(items: DecodedFrame[]): Frame[] {
  return items.map((item) => {
    if (item.type !== 'frame') throw new Error(`unexpected fatal ${item.reason}: ${item.message}`);
    return item.frame;
  });
}

describe('frame codec', () => {
  it('round-trips every frame type and every error status', () => {
    const errors: Frame[] = ERROR_STATUSES.map((status) => ({
      ...rep,
      ...range,
      op: 'READ',
      status,
      message: status,
    }));
    for (const frame of [...SAMPLES, ...errors]) {
      expect(frames(decodeAll(encodeFrame(frame)))).toEqual([frame]);
    }
  });

  it('lays out the header as documented', () => {
    const data = Buffer.from('abcdef');
    const bytes = encodeFrame({
      kind: 'request',
      op: 'WRITE',
      requestId: 0x0102030405060708n,
      epoch: 0x1112131415161718n,
      offset: 0x2122232425262728n,
      length: 6,
      fua: true,
      data,
    });
    expect(HEADER_SIZE).toBe(40);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('TDRP');
    expect(bytes[4]).toBe(1);
    expect(bytes[5]).toBe(0x03);
    expect(bytes.readUInt16BE(6)).toBe(0x0001);
    expect(bytes.subarray(8, 16).toString('hex')).toBe('0102030405060708');
    expect(bytes.subarray(16, 24).toString('hex')).toBe('1112131415161718');
    expect(bytes.subarray(24, 32).toString('hex')).toBe('2122232425262728');
    expect(bytes.readUInt32BE(32)).toBe(6);
    expect(bytes.readUInt32BE(36)).toBe(6);
    expect(bytes.subarray(40)).toEqual(data);
    expect(bytes).toHaveLength(46);
  });

  it('puts the reply bit in the opcode and the status where request flags go', () => {
    const bytes = encodeFrame({ ...rep, ...range, op: 'TRIM', status: 'NO_SPACE', message: '' });
    expect(bytes[5]).toBe(0x85);
    expect(bytes.readUInt16BE(6)).toBe(9);
    expect(bytes.readBigUInt64BE(16)).toBe(9n);
    const greeting = encodeFrame({ kind: 'greeting', nonce: NONCE });
    expect(greeting[5]).toBe(0x80);
    expect(greeting.subarray(6, 36).equals(Buffer.alloc(30))).toBe(true);
    expect(greeting.readUInt32BE(36)).toBe(32);
    expect(greeting.subarray(40)).toEqual(NONCE);
  });

  it('numbers opcodes and statuses as documented', () => {
    const ops: RequestOp[] = ['HELLO', 'READ', 'WRITE', 'FLUSH', 'TRIM', 'WRITE_ZEROES', 'EXTENTS', 'HASH'];
    const codes = SAMPLES.filter((f) => f.kind === 'request').map((f) => [f.op, encodeFrame(f)[5]]);
    for (const [op, code] of codes) expect(code).toBe(ops.indexOf(op as RequestOp) + 1);
    expect(ERROR_STATUSES.map((s) => Status[s])).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('decodes a stream fed one byte at a time', () => {
    const stream = Buffer.concat(SAMPLES.map(encodeFrame));
    const decoder = new FrameDecoder();
    const out: DecodedFrame[] = [];
    for (let i = 0; i < stream.length; i++) out.push(...decoder.push(stream.subarray(i, i + 1)));
    expect(frames(out)).toEqual(SAMPLES);
    expect(decoder.buffered).toBe(0);
  });

  it('decodes several frames from one chunk and keeps a partial one for later', () => {
    const stream = Buffer.concat(SAMPLES.map(encodeFrame));
    const decoder = new FrameDecoder();
    const first = decoder.push(stream.subarray(0, stream.length - 3));
    expect(frames(first)).toEqual(SAMPLES.slice(0, -1));
    expect(frames(decoder.push(stream.subarray(stream.length - 3)))).toEqual(SAMPLES.slice(-1));
  });

  it('hands out write data without copying when it sits in one chunk', () => {
    const bytes = encodeFrame({
      ...req,
      op: 'WRITE',
      offset: 0n,
      length: 4,
      fua: false,
      data: Buffer.from('data'),
    });
    const [item] = decodeAll(bytes);
    expect(item?.type === 'frame' && item.frame.kind === 'request' && item.frame.op === 'WRITE').toBe(true);
    if (item?.type === 'frame' && item.frame.kind === 'request' && item.frame.op === 'WRITE') {
      expect(item.frame.data.buffer).toBe(bytes.buffer);
    }
  });

  it('encodes parts without copying the payload', () => {
    const data = Buffer.alloc(1 << 20, 1);
    const parts = encodeFrameParts({
      ...req,
      op: 'WRITE',
      offset: 0n,
      length: data.length,
      fua: false,
      data,
    });
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBe(data);
    expect(encodeFrameParts({ ...req, op: 'FLUSH' })).toHaveLength(1);
  });

  it('keeps multi-byte and BOM-prefixed names intact up to 253 bytes', () => {
    const volume = `\uFEFF${'é'.repeat(125)}`; // 3 + 250 bytes
    const engineId = '節點'.repeat(42); // 252 bytes
    const proof = helloProof(SECRET, NONCE, volume, engineId, 1n);
    const hello: Frame = { kind: 'request', requestId: 1n, epoch: 1n, op: 'HELLO', volume, engineId, proof };
    expect(frames(decodeAll(encodeFrame(hello)))).toEqual([hello]);
  });

  it('accepts a maximum-size WRITE', () => {
    const data = Buffer.alloc(MAX_PAYLOAD, 3);
    const out = decodeAll(
      encodeFrame({ ...req, op: 'WRITE', offset: 0n, length: MAX_PAYLOAD, fua: false, data }),
    );
    expect(out).toHaveLength(1);
    expect(out[0]?.type).toBe('frame');
  });

  it('hashes blocks with a short last block', () => {
    const data = Buffer.alloc(5000, 1);
    const digests = hashBlocks(data, 4096);
    expect(digests).toHaveLength(digestCount(5000, 4096));
    expect(digests[1]).toEqual(createHash('sha256').update(data.subarray(4096)).digest());
    expect(digestCount(0, 4096)).toBe(0);
    expect(digestCount(8192, 4096)).toBe(2);
  });

  it('decodes replies and greetings on a client and requests on a server', () => {
    const requests = SAMPLES.filter((f) => f.kind === 'request');
    const replies = SAMPLES.filter((f) => f.kind !== 'request');
    expect(frames(decodeAll(Buffer.concat(requests.map(encodeFrame)), 'requests'))).toEqual(requests);
    expect(frames(decodeAll(Buffer.concat(replies.map(encodeFrame)), 'replies'))).toEqual(replies);
  });
});
