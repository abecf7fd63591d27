import { createHash } from 'node:crypto';
import { encodeFrame, type Frame, MAX_PAYLOAD } from './protocol.js';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
const req = { kind: 'request', requestId: 42n, epoch: 7n } as const;
const rep = { kind: 'reply', requestId: 42n, epoch: 9n } as const;
const range = { offset: 4096n, length: 8192 };

describe('encoder refuses frames the decoder would refuse', () => {
  const bad: [string, () => Frame][] = [
    [
      'WRITE length differs from data',
      () => ({ ...req, op: 'WRITE', ...range, fua: false, data: Buffer.alloc(3) }),
    ],
    ['negative epoch', () => ({ ...req, epoch: -1n, op: 'FLUSH' })],
    ['request id over u64', () => ({ ...req, requestId: 1n << 64n, op: 'FLUSH' })],
    ['fractional length', () => ({ ...req, op: 'READ', offset: 0n, length: 1.5 })],
    ['length over u32', () => ({ ...req, op: 'READ', offset: 0n, length: 2 ** 32 })],
    ['empty volume', () => ({ ...req, op: 'HELLO', volume: '', engineId: 'e', proof: Buffer.alloc(32) })],
    [
      'long volume',
      () => ({ ...req, op: 'HELLO', volume: 'v'.repeat(254), engineId: 'e', proof: Buffer.alloc(32) }),
    ],
    [
      'lone surrogate',
      () => ({ ...req, op: 'HELLO', volume: '\uD800', engineId: 'e', proof: Buffer.alloc(32) }),
    ],
    ['short proof', () => ({ ...req, op: 'HELLO', volume: 'v', engineId: 'e', proof: Buffer.alloc(31) })],
    ['odd block size', () => ({ ...req, op: 'HASH', ...range, blockSize: 3000 })],
    ['tiny block size', () => ({ ...req, op: 'HASH', ...range, blockSize: 256 })],
    ['short nonce', () => ({ kind: 'greeting', nonce: Buffer.alloc(16) })],
    [
      'READ data differs from length',
      () => ({ ...rep, ...range, op: 'READ', status: 'OK', data: Buffer.alloc(1) }),
    ],
    ['long message', () => ({ ...rep, ...range, op: 'READ', status: 'IO_ERROR', message: 'x'.repeat(1025) })],
    [
      'extent outside the range',
      () => ({ ...rep, ...range, op: 'EXTENTS', status: 'OK', extents: [{ offset: 0n, length: 1n }] }),
    ],
    [
      'wrong digest count',
      () => ({ ...rep, ...range, op: 'HASH', status: 'OK', blockSize: 4096, digests: [digest('x')] }),
    ],
  ];
  it.each(bad)('%s', (_name, make) => {
    expect(() => encodeFrame(make())).toThrow(RangeError);
  });

  it('refuses a payload over the limit', () => {
    const data = Buffer.alloc(MAX_PAYLOAD + 1);
    expect(() =>
      encodeFrame({ ...req, op: 'WRITE', offset: 0n, length: data.length, fua: false, data }),
    ).toThrow(/exceeds/);
  });
});
