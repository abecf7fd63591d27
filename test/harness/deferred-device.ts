import type { BlockDevice } from '../../driver/nbd/device.js';

/** One device call a test completes by hand. */
export interface DeferredCall {
  op: 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes';
  offset: number;
  length: number;
  fua: boolean;
  data?: Buffer;
  settled: boolean;
  /** Completes the call; a read resolves with `data` or a zero-filled buffer of its length. */
  resolve(data?: Buffer): void;
  reject(err: unknown): void;
}

/**
 * A BlockDevice whose calls stay pending until the test resolves them: shows what the server
 * runs concurrently, in which order it replies and when it stops reading.
 */
export class DeferredDevice implements BlockDevice {
  readonly calls: DeferredCall[] = [];

  get pending(): DeferredCall[] {
    return this.calls.filter((c) => !c.settled);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.enqueue('read', offset, length, false) as Promise<Buffer>;
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    await this.enqueue('write', offset, data.length, fua, data);
  }

  async flush(): Promise<void> {
    await this.enqueue('flush', 0, 0, false);
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.enqueue('trim', offset, length, fua);
  }

  async writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    await this.enqueue('writeZeroes', offset, length, fua);
  }

  private enqueue(
    op: DeferredCall['op'],
    offset: number,
    length: number,
    fua: boolean,
    data?: Buffer,
  ): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => {
      const call: DeferredCall = {
        op,
        offset,
        length,
        fua,
        data,
        settled: false,
        resolve: (out) => {
          call.settled = true;
          resolve(op === 'read' ? (out ?? Buffer.alloc(length)) : undefined);
        },
        reject: (err) => {
          call.settled = true;
          reject(err);
        },
      };
      this.calls.push(call);
    });
  }
}

/** Polls until `condition` holds (or fails after timeoutMs). */
export async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Lets pending I/O and timers run for a while (to show that something does NOT happen). */
export function settle(ms = 50): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
