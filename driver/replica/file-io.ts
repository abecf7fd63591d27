/**
 * The low-level file helpers of a replica store (store.ts): positioned reads and writes on a
 * kept-open descriptor with node:fs's callback API (the cheapest path Node has), the promisified
 * descriptor calls, and the per-directory lock that keeps create, open and remove of one replica
 * from interleaving within this process.
 */
import * as fs from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

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
  const buffer = Buffer.allocUnsafe(length);
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
