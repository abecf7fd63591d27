/**
 * The low-level file helpers of a replica store (store.ts): positioned reads and writes on a
 * kept-open descriptor with node:fs's callback API (the cheapest path Node has), the promisified
 * descriptor calls, and the per-directory lock that keeps create, open and remove of one replica
 * from interleaving within this process.
 */
import * as fs from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { ioBuffers } from '../../lib/io-buffers.js';

export const openFd = promisify(fs.open);
export const closeFd = promisify(fs.close);
export const fdatasync = promisify(fs.fdatasync);
export const fsync = promisify(fs.fsync);
export const ftruncate = promisify(fs.ftruncate);
export const fstat = promisify(fs.fstat);

/** Create, open and remove of one replica directory run one at a time within this process. */
const dirLocks = new Map<string, Promise<unknown>>();

export function withDirLock<T>(dir: string, task: () => Promise<T>): Promise<T> {
  const key = resolve(dir);
  const result = (dirLocks.get(key) ?? Promise.resolve()).then(task);
  const settled = result.catch(() => {});
  dirLocks.set(key, settled);
  void settled.then(() => {
    if (dirLocks.get(key) === settled) dirLocks.delete(key);
  });
  return result;
}

/** Reads until `length` bytes or end of file (the rest is zero-filled); loops over short reads. */
export function readAt(fd: number, position: number, length: number): Promise<Buffer> {
  // Pooled: the NBD connection or the replica session gives it back once the reply is sent.
  const buffer = length === 0 ? Buffer.alloc(0) : ioBuffers.acquire(length);
  if (length === 0) return Promise.resolve(buffer);
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (): void =>
      fs.read(fd, buffer, done, length - done, position + done, (err, n) => {
        if (err) return reject(err);
        if (n === 0) buffer.fill(0, done);
        done = n === 0 ? length : done + n;
        if (done < length) step();
        else resolve(buffer);
      });
    step();
  });
}

/** Writes all of `data` at `position`, looping over short writes. */
export function writeAt(fd: number, position: number, data: Buffer): Promise<void> {
  if (data.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (): void =>
      fs.write(fd, data, done, data.length - done, position + done, (err, n) => {
        if (err) return reject(err);
        done += n;
        if (done < data.length) step();
        else resolve();
      });
    step();
  });
}

/** Writes up to this size may be written on the calling thread (see InlineWrites). */
export const INLINE_WRITE_MAX = 128 * 1024;
/** A write on the calling thread slower than this sends the store's writes to the pool for a while. */
const INLINE_SLOW_MS = 2;
/** How long writes stay on the pool after a slow one. */
const INLINE_BACKOFF_MS = 5000;

/**
 * Small writes on the event loop's own thread while the disk keeps up, through the thread pool
 * otherwise. A buffered write of a few KiB is a copy into the page cache (~5 µs here), while a
 * pool round trip costs ~30 µs of CPU and as much latency at queue depth 1 (a futex wake of a
 * worker, then an eventfd wake of the loop — measured in docs/dataplane.md): the data-plane
 * profile showed that hand-off, not the write, as the cost of a QD1 write on every replica.
 * A write that blocks (dirty-page throttling, a stalling disk) would block the whole process, so
 * one that takes longer than INLINE_SLOW_MS sends writes to the pool for INLINE_BACKOFF_MS: a disk
 * that stalls is then handled as before (requests time out, the replica is fenced) after at most
 * one slow inline write.
 */
export class InlineWrites {
  readonly #slowMs: number;
  readonly #backoffMs: number;
  readonly #now: () => number;
  #poolUntil = 0;
  /** Writes done on the calling thread, and those of them that were too slow. */
  inlineWrites = 0;
  slowWrites = 0;

  constructor(options: { slowMs?: number; backoffMs?: number; now?: () => number } = {}) {
    this.#slowMs = options.slowMs ?? INLINE_SLOW_MS;
    this.#backoffMs = options.backoffMs ?? INLINE_BACKOFF_MS;
    this.#now = options.now ?? (() => performance.now());
  }

  write(fd: number, position: number, data: Buffer): Promise<void> {
    if (data.length > INLINE_WRITE_MAX || data.length === 0 || this.#poolUntil > this.#now()) {
      return writeAt(fd, position, data);
    }
    this.inlineWrites++;
    const started = this.#now();
    try {
      let done = 0;
      while (done < data.length) {
        const n = fs.writeSync(fd, data, done, data.length - done, position + done);
        if (n <= 0) throw Object.assign(new Error(`short write at ${position + done}`), { code: 'EIO' });
        done += n;
      }
    } catch (err) {
      return Promise.reject(err);
    } finally {
      const now = this.#now();
      if (now - started > this.#slowMs) {
        this.#poolUntil = now + this.#backoffMs;
        this.slowWrites++;
      }
    }
    return Promise.resolve();
  }
}
