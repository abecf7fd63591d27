import { IoBuffers } from './io-buffers.js';

describe('IoBuffers', () => {
  it('hands out exactly the asked length and reuses released memory of the same class', () => {
    const pool = new IoBuffers();
    const a = pool.acquire(4096);
    expect(a.length).toBe(4096);
    a.fill(1);
    pool.release(a);
    const b = pool.acquire(3000); // same 4 KiB class
    expect(b.length).toBe(3000);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.reused).toBe(1);
    expect(pool.acquire(1024 * 1024).buffer.byteLength).toBe(1024 * 1024);
  });

  it('never hands the same memory to two holders', () => {
    const pool = new IoBuffers();
    const held = Array.from({ length: 8 }, () => pool.acquire(65536));
    expect(new Set(held.map((b) => b.buffer)).size).toBe(8);
    pool.release(held[0] as Buffer);
    pool.release(held[0] as Buffer); // twice: the second is ignored
    const again = [pool.acquire(65536), pool.acquire(65536)];
    expect(again[0]?.buffer).toBe(held[0]?.buffer);
    expect(again[1]?.buffer).not.toBe(held[0]?.buffer);
  });

  it('ignores buffers it did not hand out, slices of its own, and sizes past its classes', () => {
    const pool = new IoBuffers();
    pool.release(Buffer.alloc(4096));
    const mine = pool.acquire(8192);
    pool.release(mine.subarray(4096)); // a slice, not the buffer: ignored
    expect(pool.acquire(8192).buffer).not.toBe(mine.buffer);
    const big = pool.acquire(5 * 1024 * 1024);
    expect(big.length).toBe(5 * 1024 * 1024);
    pool.release(big);
    expect(pool.acquire(5 * 1024 * 1024).buffer).not.toBe(big.buffer);
  });
});
