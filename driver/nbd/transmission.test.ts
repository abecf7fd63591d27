import { NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO } from './constants.js';
import {
  type DecodeEvent,
  type DecoderConfig,
  encodeRequest,
  encodeSimpleReply,
  encodeSimpleReplyHeader,
  type NbdRequest,
  RequestDecoder,
} from './transmission.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const SIZE = 1n << 20n; // 1 MiB export
const MAX = 64 * 1024;
const rw: DecoderConfig = { size: SIZE, maxPayload: MAX };

function req(command: number, offset: bigint, length: number, extra: Partial<NbdRequest> = {}): NbdRequest {
  return { flags: 0, command, cookie: 0x1122334455667788n, offset, length, ...extra };
}

/** Feeds the bytes in chunks of `step` and returns every event. */
function decode(bytes: Buffer, cfg: DecoderConfig = rw, step = bytes.length || 1): DecodeEvent[] {
  const decoder = new RequestDecoder(cfg);
  const events: DecodeEvent[] = [];
  for (let i = 0; i < bytes.length; i += step) events.push(...decoder.push(bytes.subarray(i, i + step)));
  return events;
}

const wire = (...requests: NbdRequest[]): Buffer => Buffer.concat(requests.map(encodeRequest));
const ok = (request: NbdRequest): DecodeEvent => ({ type: 'request', request });
const refused = (errno: number, cookie = 0x1122334455667788n): DecodeEvent => ({
  type: 'error',
  cookie,
  errno,
  message: expect.any(String),
});

describe('encoders', () => {
  it('encodes a request as magic, flags, type, cookie, offset, length, payload', () => {
    const bytes = encodeRequest(
      req(NBD_CMD.WRITE, 0x200n, 2, { flags: NBD_CMD_FLAG.FUA, payload: hex('abcd') }),
    );
    expect(bytes).toEqual(hex('25609513 0001 0001 1122334455667788 0000000000000200 00000002 abcd'));
  });

  it('encodes simple replies byte-exactly', () => {
    expect(encodeSimpleReply(7n, 0)).toEqual(hex('67446698 00000000 0000000000000007'));
    expect(encodeSimpleReply(7n, 0, hex('0102'))).toEqual(hex('67446698 00000000 0000000000000007 0102'));
    expect(encodeSimpleReply(0xffffffffffffffffn, NBD_ERRNO.ENOSPC)).toEqual(
      hex('67446698 0000001c ffffffffffffffff'),
    );
    expect(encodeSimpleReplyHeader(1n, NBD_ERRNO.EIO)).toEqual(hex('67446698 00000005 0000000000000001'));
  });

  it('refuses to put data after an error', () => {
    expect(() => encodeSimpleReply(1n, NBD_ERRNO.EIO, hex('00'))).toThrow(RangeError);
  });
});

describe('RequestDecoder: valid requests', () => {
  it('decodes every supported command', () => {
    const requests = [
      req(NBD_CMD.READ, 0n, 4096),
      req(NBD_CMD.WRITE, 4096n, 4, { flags: NBD_CMD_FLAG.FUA, payload: hex('deadbeef') }),
      req(NBD_CMD.FLUSH, 0n, 0),
      req(NBD_CMD.TRIM, 0n, 1 << 20, { flags: NBD_CMD_FLAG.FUA }),
      req(NBD_CMD.WRITE_ZEROES, 512n, 3 * MAX, { flags: NBD_CMD_FLAG.NO_HOLE | NBD_CMD_FLAG.FUA }),
      req(NBD_CMD.READ, SIZE - 1n, 1, { flags: NBD_CMD_FLAG.FUA }),
    ];
    expect(decode(wire(...requests))).toEqual(requests.map(ok));
  });

  it('gives the same result fed one byte at a time, with the payload reassembled', () => {
    const payload = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
    const bytes = wire(req(NBD_CMD.WRITE, 0n, 300, { payload }), req(NBD_CMD.READ, 300n, 300));
    expect(decode(bytes, rw, 1)).toEqual(decode(bytes));
    expect(decode(bytes, rw, 7)).toEqual([
      ok(req(NBD_CMD.WRITE, 0n, 300, { payload })),
      ok(req(NBD_CMD.READ, 300n, 300)),
    ]);
  });

  it('hands out a payload that arrived in one chunk without copying it', () => {
    const bytes = wire(req(NBD_CMD.WRITE, 0n, 4, { payload: hex('01020304') }));
    const [event] = decode(bytes);
    const payload = event?.type === 'request' ? event.request.payload : undefined;
    expect(payload?.buffer).toBe(bytes.buffer);
    expect(payload?.byteOffset).toBe(bytes.byteOffset + 28);
  });

  it('accepts zero-length requests and ranges ending exactly at the export size', () => {
    const requests = [
      req(NBD_CMD.WRITE, SIZE, 0, { payload: Buffer.alloc(0) }),
      req(NBD_CMD.READ, SIZE, 0),
      req(NBD_CMD.TRIM, 0n, Number(SIZE)),
      req(NBD_CMD.WRITE, SIZE - 2n, 2, { payload: hex('ffff') }),
    ];
    expect(decode(wire(...requests), rw, 3)).toEqual(requests.map(ok));
  });

  it('ends the stream at DISC, reporting reserved offset and length as zero', () => {
    const decoder = new RequestDecoder(rw);
    const events = decoder.push(wire(req(NBD_CMD.DISC, 5n, 9), req(NBD_CMD.READ, 0n, 1)));
    expect(events).toEqual([ok(req(NBD_CMD.DISC, 0n, 0))]);
    expect(decoder.done).toBe(true);
    expect(decoder.push(wire(req(NBD_CMD.READ, 0n, 1)))).toEqual([]);
  });

  it('waits for the rest of a header or payload', () => {
    const decoder = new RequestDecoder(rw);
    const bytes = wire(req(NBD_CMD.WRITE, 0n, 8, { payload: Buffer.alloc(8, 1) }));
    expect(decoder.push(bytes.subarray(0, 20))).toEqual([]);
    expect(decoder.push(bytes.subarray(20, 30))).toEqual([]);
    expect(decoder.push(bytes.subarray(30))).toEqual([
      ok(req(NBD_CMD.WRITE, 0n, 8, { payload: Buffer.alloc(8, 1) })),
    ]);
  });
});

describe('RequestDecoder: refused requests keep the stream in sync', () => {
  const next = req(NBD_CMD.READ, 0n, 1, { cookie: 99n });

  it.each([
    ['READ past the end', req(NBD_CMD.READ, SIZE - 1n, 2), NBD_ERRNO.EINVAL],
    ['READ at an offset past the end', req(NBD_CMD.READ, SIZE + 1n, 0), NBD_ERRNO.EINVAL],
    ['READ at an offset near 2^64', req(NBD_CMD.READ, (1n << 64n) - 1n, 1), NBD_ERRNO.EINVAL],
    ['READ longer than maxPayload', req(NBD_CMD.READ, 0n, MAX + 1), NBD_ERRNO.EINVAL],
    ['TRIM past the end', req(NBD_CMD.TRIM, 1n, Number(SIZE)), NBD_ERRNO.EINVAL],
    ['WRITE_ZEROES past the end', req(NBD_CMD.WRITE_ZEROES, SIZE, 1), NBD_ERRNO.ENOSPC],
    ['FLUSH with an offset', req(NBD_CMD.FLUSH, 1n, 0), NBD_ERRNO.EINVAL],
    ['FLUSH with a length', req(NBD_CMD.FLUSH, 0n, 1), NBD_ERRNO.EINVAL],
    ['CACHE (not advertised)', req(NBD_CMD.CACHE, 0n, 1), NBD_ERRNO.EINVAL],
    ['BLOCK_STATUS (no meta context)', req(NBD_CMD.BLOCK_STATUS, 0n, 1), NBD_ERRNO.EINVAL],
    ['an unknown command', req(0xbeef, 0n, 1), NBD_ERRNO.EINVAL],
    ['READ with DF (not advertised)', req(NBD_CMD.READ, 0n, 1, { flags: NBD_CMD_FLAG.DF }), NBD_ERRNO.EINVAL],
    ['READ with NO_HOLE', req(NBD_CMD.READ, 0n, 1, { flags: NBD_CMD_FLAG.NO_HOLE }), NBD_ERRNO.EINVAL],
    [
      'WRITE_ZEROES with FAST_ZERO',
      req(NBD_CMD.WRITE_ZEROES, 0n, 1, { flags: NBD_CMD_FLAG.FAST_ZERO }),
      NBD_ERRNO.EINVAL,
    ],
    ['TRIM with an unknown flag', req(NBD_CMD.TRIM, 0n, 1, { flags: 0x8000 }), NBD_ERRNO.EINVAL],
  ])('%s', (_name, request, errno) => {
    expect(decode(wire(request, next), rw, 5)).toEqual([refused(errno), ok(next)]);
  });

  it.each([
    ['past the end', req(NBD_CMD.WRITE, SIZE - 1n, 2, { payload: hex('0102') }), NBD_ERRNO.ENOSPC],
    [
      'with NO_HOLE',
      req(NBD_CMD.WRITE, 0n, 2, { flags: NBD_CMD_FLAG.NO_HOLE, payload: hex('0102') }),
      NBD_ERRNO.EINVAL,
    ],
  ])('a WRITE %s is refused after its payload is consumed', (_name, request, errno) => {
    expect(decode(wire(request, next), rw, 1)).toEqual([refused(errno), ok(next)]);
  });

  it('refuses WRITE, TRIM and WRITE_ZEROES on a read-only export with EPERM, but serves READ and FLUSH', () => {
    const ro: DecoderConfig = { ...rw, readOnly: true };
    const bytes = wire(
      req(NBD_CMD.WRITE, 0n, 3, { payload: hex('010203') }),
      req(NBD_CMD.TRIM, 0n, 1),
      req(NBD_CMD.WRITE_ZEROES, 0n, 1),
      req(NBD_CMD.READ, 0n, 1),
      req(NBD_CMD.FLUSH, 0n, 0),
    );
    expect(decode(bytes, ro, 2)).toEqual([
      refused(NBD_ERRNO.EPERM),
      refused(NBD_ERRNO.EPERM),
      refused(NBD_ERRNO.EPERM),
      ok(req(NBD_CMD.READ, 0n, 1)),
      ok(req(NBD_CMD.FLUSH, 0n, 0)),
    ]);
  });
});

describe('RequestDecoder: a moving limit (the growable export)', () => {
  it('refuses past the limit read at each request, up to the export size', () => {
    let limit = 8192n;
    const growable: DecoderConfig = { size: SIZE, maxPayload: MAX, limit: () => limit };
    const decoder = new RequestDecoder(growable);
    const payload = Buffer.alloc(4096, 1);
    const writeLast = req(NBD_CMD.WRITE, 4096n, 4096, { payload });
    const writePast = req(NBD_CMD.WRITE, 8192n, 4096, { payload });
    const readAcross = req(NBD_CMD.READ, 6144n, 4096);
    const trimPast = req(NBD_CMD.TRIM, 8192n, 1);
    const zeroesPast = req(NBD_CMD.WRITE_ZEROES, 8192n, 1);
    expect(decoder.push(wire(writeLast, writePast, readAcross, trimPast, zeroesPast))).toEqual([
      ok(writeLast),
      refused(NBD_ERRNO.ENOSPC),
      refused(NBD_ERRNO.EINVAL),
      refused(NBD_ERRNO.EINVAL),
      refused(NBD_ERRNO.ENOSPC),
    ]);
    limit = 16384n; // the volume grew: the same connection may now use it
    expect(decoder.push(wire(writePast, readAcross))).toEqual([ok(writePast), ok(readAcross)]);
    limit = 2n * SIZE; // a limit past the export size does not widen the export
    const pastExport = req(NBD_CMD.READ, SIZE, 1);
    expect(decoder.push(wire(pastExport))).toEqual([refused(NBD_ERRNO.EINVAL)]);
  });
});

describe('RequestDecoder: fatal input', () => {
  it('stops at a bad request magic', () => {
    const bytes = Buffer.concat([hex(`25609514 ${'00'.repeat(24)}`), wire(req(NBD_CMD.READ, 0n, 1))]);
    const decoder = new RequestDecoder(rw);
    expect(decoder.push(bytes)).toEqual([{ type: 'fatal', message: 'bad request magic 0x25609514' }]);
    expect(decoder.done).toBe(true);
    expect(decoder.push(wire(req(NBD_CMD.READ, 0n, 1)))).toEqual([]);
  });

  it('stops at a WRITE longer than maxPayload without waiting for (or buffering) its payload', () => {
    const header = wire(req(NBD_CMD.WRITE, 0n, MAX + 1));
    expect(decode(header)).toEqual([{ type: 'fatal', message: expect.stringContaining(String(MAX + 1)) }]);
  });

  it('emits the requests before the fatal one, then nothing', () => {
    const bytes = Buffer.concat([
      wire(req(NBD_CMD.FLUSH, 0n, 0)),
      hex('00'.repeat(28)),
      wire(req(NBD_CMD.FLUSH, 0n, 0)),
    ]);
    expect(decode(bytes, rw, 1).map((e) => e.type)).toEqual(['request', 'fatal']);
  });

  it('rejects decoder configurations outside the protocol', () => {
    for (const cfg of [
      { size: -1n, maxPayload: 1 },
      { size: 1n << 64n, maxPayload: 1 },
      { size: 1n, maxPayload: 0 },
      { size: 1n, maxPayload: 2 ** 32 },
    ]) {
      expect(() => new RequestDecoder(cfg)).toThrow(RangeError);
    }
  });
});
