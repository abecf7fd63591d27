import {
  type Accept,
  type DecodedFrame,
  encodeFrame,
  type FatalReason,
  FrameDecoder,
  HEADER_SIZE,
  MAX_MESSAGE_BYTES,
  MAX_PAYLOAD,
} from './protocol.js';

const NONCE = Buffer.alloc(32, 7);
const req = { kind: 'request', requestId: 42n, epoch: 7n } as const;
const range = { offset: 4096n, length: 8192 };

function decodeAll(bytes: Buffer, accept?: Accept): DecodedFrame[] {
  return new FrameDecoder(accept === undefined ? {} : { accept }).push(bytes);
}

function expectFatal(bytes: Buffer, reason: FatalReason, accept?: Accept): void {
  const out = decodeAll(bytes, accept);
  expect(out.at(-1)).toMatchObject({ type: 'fatal', reason });
  expect(out.filter((item) => item.type === 'fatal')).toHaveLength(1);
}

/** A valid READ request header with one field overwritten by `edit`. */
function header(edit: (buf: Buffer) => void, payload = Buffer.alloc(0)): Buffer {
  const buf = Buffer.concat([encodeFrame({ ...req, op: 'READ', ...range }), payload]);
  edit(buf);
  return buf;
}

interface RawFields {
  opcode: number;
  flags?: number;
  requestId?: bigint;
  epoch?: bigint;
  offset?: bigint;
  length?: number;
  payloadLength?: number;
}

/** Builds frame bytes straight from the documented layout, bypassing the encoder's checks. */
function raw(fields: RawFields, payload: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.alloc(HEADER_SIZE);
  buf.write('TDRP', 0, 'latin1');
  buf[4] = 1;
  buf[5] = fields.opcode;
  buf.writeUInt16BE(fields.flags ?? 0, 6);
  buf.writeBigUInt64BE(fields.requestId ?? 1n, 8);
  buf.writeBigUInt64BE(fields.epoch ?? 1n, 16);
  buf.writeBigUInt64BE(fields.offset ?? 0n, 24);
  buf.writeUInt32BE(fields.length ?? 0, 32);
  buf.writeUInt32BE(fields.payloadLength ?? payload.length, 36);
  return Buffer.concat([buf, payload]);
}

function helloPayload(
  parts: { volume?: Buffer; engine?: Buffer; epoch?: bigint; extra?: number } = {},
): Buffer {
  const volume = parts.volume ?? Buffer.from('vol');
  const engine = parts.engine ?? Buffer.from('eng');
  const epoch = Buffer.alloc(8);
  epoch.writeBigUInt64BE(parts.epoch ?? 1n);
  const tail = Buffer.alloc(32 + (parts.extra ?? 0));
  return Buffer.concat([
    Buffer.from([volume.length]),
    volume,
    Buffer.from([engine.length]),
    engine,
    epoch,
    tail,
  ]);
}

function u64s(...values: bigint[]): Buffer {
  const buf = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => {
    buf.writeBigUInt64BE(v, i * 8);
  });
  return buf;
}

function hashReply(blockSize: number, digests: number, length: number): Buffer {
  const payload = Buffer.alloc(4 + 32 * digests);
  payload.writeUInt32BE(blockSize);
  return raw({ opcode: 0x88, offset: 0n, length }, payload);
}

describe('FrameDecoder fatal conditions', () => {
  const cases: [string, Buffer, FatalReason, Accept?][] = [
    ['bad magic', header((b) => b.write('XDRP', 0, 'latin1')), 'bad-magic'],
    ['unsupported version', header((b) => (b[4] = 2)), 'unsupported-version'],
    ['unknown opcode 0x09', header((b) => (b[5] = 0x09)), 'unknown-opcode'],
    ['unknown opcode 0x00', header((b) => (b[5] = 0x00)), 'unknown-opcode'],
    ['unknown reply opcode 0x89', header((b) => (b[5] = 0x89)), 'unknown-opcode'],
    ['reply sent to a server', raw({ opcode: 0x84 }), 'unexpected-frame', 'requests'],
    [
      'greeting sent to a server',
      raw({ opcode: 0x80, requestId: 0n, epoch: 0n }, NONCE),
      'unexpected-frame',
      'requests',
    ],
    ['request sent to a client', raw({ opcode: 0x04 }), 'unexpected-frame', 'replies'],
    ['flag on READ', header((b) => b.writeUInt16BE(1, 6)), 'bad-flags'],
    ['NO_HOLE on WRITE', raw({ opcode: 0x03, flags: 2, length: 1 }, Buffer.alloc(1)), 'bad-flags'],
    ['undefined flag on WRITE_ZEROES', raw({ opcode: 0x06, flags: 4, length: 1 }), 'bad-flags'],
    ['unknown status', raw({ opcode: 0x84, flags: 10 }), 'unknown-status'],
    [
      'payload over the limit',
      raw({ opcode: 0x03, length: MAX_PAYLOAD + 1, payloadLength: MAX_PAYLOAD + 1 }),
      'payload-too-large',
    ],
    ['payload length 2^32-1', raw({ opcode: 0x02, payloadLength: 0xffffffff }), 'payload-too-large'],
    ['FLUSH with an offset', raw({ opcode: 0x04, offset: 1n }), 'bad-header'],
    ['HELLO with a length', raw({ opcode: 0x01, length: 1 }, helloPayload()), 'bad-header'],
    ['greeting with a request id', raw({ opcode: 0x80, requestId: 1n, epoch: 0n }, NONCE), 'bad-header'],
    ['WRITE payload shorter than length', raw({ opcode: 0x03, length: 8 }, Buffer.alloc(7)), 'bad-length'],
    ['WRITE payload longer than length', raw({ opcode: 0x03, length: 8 }, Buffer.alloc(9)), 'bad-length'],
    ['READ request with a payload', header((b) => b.writeUInt32BE(1, 36), Buffer.alloc(1)), 'bad-length'],
    ['TRIM with a payload', raw({ opcode: 0x05, length: 1 }, Buffer.alloc(1)), 'bad-length'],
    ['HASH request of 3 bytes', raw({ opcode: 0x08, length: 1 }, Buffer.alloc(3)), 'bad-length'],
    ['tiny HELLO', raw({ opcode: 0x01 }, Buffer.alloc(10)), 'bad-length'],
    ['short greeting', raw({ opcode: 0x80, requestId: 0n, epoch: 0n }, Buffer.alloc(31)), 'bad-length'],
    ['READ reply shorter than length', raw({ opcode: 0x82, length: 4 }, Buffer.alloc(3)), 'bad-length'],
    ['WRITE reply with data', raw({ opcode: 0x83, length: 4 }, Buffer.alloc(4)), 'bad-length'],
    ['HELLO reply of 7 bytes', raw({ opcode: 0x81 }, Buffer.alloc(7)), 'bad-length'],
    ['EXTENTS reply of 17 bytes', raw({ opcode: 0x87, length: 100 }, Buffer.alloc(17)), 'bad-length'],
    ['HASH reply of 35 bytes', raw({ opcode: 0x88, length: 100 }, Buffer.alloc(35)), 'bad-length'],
    [
      'error message too long',
      raw({ opcode: 0x82, flags: 8 }, Buffer.alloc(MAX_MESSAGE_BYTES + 1, 65)),
      'bad-length',
    ],
    [
      'HELLO with empty volume',
      raw({ opcode: 0x01 }, helloPayload({ volume: Buffer.alloc(0), extra: 1 })),
      'malformed-hello',
    ],
    ['HELLO with trailing bytes', raw({ opcode: 0x01 }, helloPayload({ extra: 1 })), 'malformed-hello'],
    [
      'HELLO epoch differs from header',
      raw({ opcode: 0x01, epoch: 2n }, helloPayload({ epoch: 1n })),
      'malformed-hello',
    ],
    [
      'HELLO with invalid UTF-8',
      raw({ opcode: 0x01 }, helloPayload({ engine: Buffer.from([0xc3, 0x28]) })),
      'malformed-hello',
    ],
    [
      'HELLO volume length past the end',
      raw({ opcode: 0x01 }, Buffer.concat([Buffer.from([250]), Buffer.alloc(60)])),
      'malformed-hello',
    ],
    [
      'HASH block size not a power of two',
      raw({ opcode: 0x08, length: 1 }, u64s(0n).subarray(4)),
      'malformed-hash',
    ],
    [
      'HASH block size 1000',
      raw({ opcode: 0x08, length: 1 }, Buffer.from([0, 0, 3, 0xe8])),
      'malformed-hash',
    ],
    ['HASH block size 64 MiB', raw({ opcode: 0x08, length: 1 }, Buffer.from([4, 0, 0, 0])), 'malformed-hash'],
    ['HASH reply missing a digest', hashReply(4096, 1, 4097), 'malformed-hash'],
    ['HASH reply with an extra digest', hashReply(4096, 2, 4096), 'malformed-hash'],
    ['HASH reply with a bad block size', hashReply(4095, 1, 4095), 'malformed-hash'],
    [
      'EXTENTS out of order',
      raw({ opcode: 0x87, length: 100 }, u64s(50n, 10n, 0n, 10n)),
      'malformed-extents',
    ],
    ['EXTENTS overlapping', raw({ opcode: 0x87, length: 100 }, u64s(0n, 10n, 5n, 10n)), 'malformed-extents'],
    ['EXTENTS of zero length', raw({ opcode: 0x87, length: 100 }, u64s(0n, 0n)), 'malformed-extents'],
    ['EXTENTS past the range', raw({ opcode: 0x87, length: 100 }, u64s(90n, 11n)), 'malformed-extents'],
    [
      'EXTENTS before the range',
      raw({ opcode: 0x87, offset: 10n, length: 100 }, u64s(0n, 11n)),
      'malformed-extents',
    ],
    ['error message not UTF-8', raw({ opcode: 0x82, flags: 8 }, Buffer.from([0xff])), 'malformed-message'],
  ];
  // Every row gets all four values: a callback with more parameters than its row has is taken
  // by Jest to want a `done` callback, and would time out.
  const rows = cases.map(([name, bytes, reason, accept]) => [name, bytes, reason, accept ?? 'any'] as const);
  it.each(rows)('%s', (_name, bytes, reason, accept) => {
    expectFatal(bytes, reason, accept);
  });

  it('accepts the edge cases next to those conditions', () => {
    const ok = [
      raw({ opcode: 0x87, length: 100 }, u64s(0n, 10n, 10n, 90n)), // adjacent extents filling the range
      raw({ opcode: 0x01 }, helloPayload()),
      raw({ opcode: 0x82, flags: 8 }, Buffer.alloc(MAX_MESSAGE_BYTES, 65)),
      hashReply(512, 2, 1000),
    ];
    for (const bytes of ok) expect(decodeAll(bytes).map((item) => item.type)).toEqual(['frame']);
  });

  it('refuses a foreign protocol on its first bytes, without waiting for a full header', () => {
    expect(new FrameDecoder().push(Buffer.from('G'))).toMatchObject([{ type: 'fatal', reason: 'bad-magic' }]);
    const decoder = new FrameDecoder();
    expect(decoder.push(Buffer.from('TDR'))).toEqual([]);
    expect(decoder.push(Buffer.from([0x50, 9]))).toMatchObject([
      { type: 'fatal', reason: 'unsupported-version' },
    ]);
  });

  it('refuses an oversized payload from the header alone, before any payload arrives', () => {
    const decoder = new FrameDecoder();
    const out = decoder.push(raw({ opcode: 0x03, length: 0xffffffff, payloadLength: 0xffffffff }));
    expect(out).toMatchObject([{ type: 'fatal', reason: 'payload-too-large' }]);
  });

  it('waits for a large valid payload without allocating it', () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(raw({ opcode: 0x03, length: MAX_PAYLOAD, payloadLength: MAX_PAYLOAD }))).toEqual([]);
    expect(decoder.buffered).toBe(0);
    expect(decoder.dead).toBe(false);
  });

  it('returns the frames before a fatal, then nothing ever again', () => {
    const good = encodeFrame({ ...req, op: 'FLUSH' });
    const decoder = new FrameDecoder();
    const out = decoder.push(Buffer.concat([good, good, Buffer.from('garbage'), good]));
    expect(out.map((item) => item.type)).toEqual(['frame', 'frame', 'fatal']);
    expect(decoder.dead).toBe(true);
    expect(decoder.push(good)).toEqual([]);
    expect(decoder.buffered).toBe(0);
  });
});
