/**
 * Reusable I/O buffers for the data path. Every read and every NBD write payload used to be a
 * fresh allocation outside the V8 heap; at hundreds of MiB/s of 1 MiB I/O that external memory
 * made V8 run full collections back to back (40 % of the engine's CPU in the sequential-read
 * profile, docs/performance.md), and every 4 KiB read was a malloc and a free.
 *
 * Buffers come in power-of-two classes from 4 KiB to 4 MiB; a released buffer's memory goes back
 * to its class (at most MAX_FREE_BYTES kept per class). Only memory handed out by acquire() and
 * not yet released is taken back: releasing anything else (a socket chunk, a buffer released
 * twice) is ignored, so a caller may release whatever it was given. The rule for callers: release
 * only once nothing can read or write the buffer any more (after the socket's write callback, or
 * after every replica acknowledged the write it carried).
 */

const MIN_CLASS = 4096;
const MAX_CLASS = 4 * 1024 * 1024;
const MAX_FREE_BYTES = 32 * 1024 * 1024;

export class IoBuffers {
  readonly #free = new Map<number, ArrayBuffer[]>();
  /** Memory handed out and not yet released. */
  readonly #out = new WeakSet<ArrayBuffer>();
  /** Counters, for tests and for the curious. */
  allocated = 0;
  reused = 0;

  /** A buffer of exactly `length` bytes (contents undefined: the caller overwrites all of it). */
  acquire(length: number): Buffer {
    if (length > MAX_CLASS || length <= 0) return Buffer.allocUnsafe(length);
    const size = classOf(length);
    const memory = this.#free.get(size)?.pop();
    let buffer: ArrayBuffer;
    if (memory === undefined) {
      buffer = new ArrayBuffer(size);
      this.allocated++;
    } else {
      buffer = memory;
      this.reused++;
    }
    this.#out.add(buffer);
    return Buffer.from(buffer, 0, length);
  }

  /** Gives the memory behind `buffer` back, when acquire() handed it out; otherwise does nothing. */
  release(buffer: Buffer): void {
    const memory = buffer.buffer;
    if (!(memory instanceof ArrayBuffer) || !this.#out.has(memory) || buffer.byteOffset !== 0) return;
    this.#out.delete(memory);
    const list = this.#free.get(memory.byteLength) ?? [];
    if ((list.length + 1) * memory.byteLength > MAX_FREE_BYTES) return;
    list.push(memory);
    this.#free.set(memory.byteLength, list);
  }
}

function classOf(length: number): number {
  let size = MIN_CLASS;
  while (size < length) size *= 2;
  return size;
}

/** The process's pool: reads of replica stores, NBD write payloads, replica frame payloads. */
export const ioBuffers = new IoBuffers();
