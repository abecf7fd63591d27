import { XdrError, XdrReader, XdrWriter } from './xdr.js';

test('values round-trip with four-byte alignment', () => {
  const big = Buffer.alloc(3000, 7);
  const bytes = new XdrWriter()
    .uint32(0xdeadbeef)
    .uint64(2n ** 63n + 5n)
    .bool(true)
    .string('abc')
    .opaque(big)
    .fixedOpaque(Buffer.from('12345678'), 8)
    .uint32Array([1, 2])
    .toBuffer();
  expect(bytes.length % 4).toBe(0);
  const r = new XdrReader(bytes);
  expect(r.uint32()).toBe(0xdeadbeef);
  expect(r.uint64()).toBe(2n ** 63n + 5n);
  expect(r.bool()).toBe(true);
  expect(r.string()).toBe('abc');
  expect(r.opaque().equals(big)).toBe(true);
  expect(r.fixedOpaque(8).toString()).toBe('12345678');
  expect(r.uint32Array()).toEqual([1, 2]);
  expect(r.remaining).toBe(0);
});

test('a truncated or oversized field is an XdrError, never a silent zero', () => {
  expect(() => new XdrReader(Buffer.alloc(2)).uint32()).toThrow(XdrError);
  const huge = new XdrWriter().uint32(1 << 30).toBuffer();
  expect(() => new XdrReader(huge).opaque(1024)).toThrow(/exceeds its limit/);
  expect(() => new XdrReader(new XdrWriter().uint32(2).toBuffer()).bool()).toThrow(/bool encoded as 2/);
  expect(() => new XdrWriter().uint32(-1)).toThrow(/out of range/);
  expect(() => new XdrWriter().fixedOpaque(Buffer.alloc(3), 8)).toThrow(/fixed opaque of 8 bytes/);
});
