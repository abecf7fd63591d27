// What the NBD server needs from the thing behind it (the engine's replica fan-out in production, a
// Buffer in tests), and how the device's failures reach the client: NBD replies carry one of a
// handful of errno values, so a device says which one with NbdIoError; anything else is EIO.

import { NBD_ERRNO } from './constants.js';

/**
 * A block device addressed in bytes. Offsets and lengths have already been checked against the
 * export size by the request decoder. Calls overlap freely: the server runs a connection's requests
 * concurrently and several connections share one device.
 */
export interface BlockDevice {
  /** Must resolve to exactly `length` bytes; the server writes the Buffer to the socket as is. */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * `data` is never reused by the server (see connection.ts), so the device may keep it without
   * copying. With `fua` the data must be durable when the promise resolves.
   */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  /** Makes durable every write, trim and zeroing whose promise resolved before flush was called. */
  flush(): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  /** With `noHole` the range must stay allocated (NBD_CMD_FLAG_NO_HOLE); otherwise it may be punched. */
  writeZeroes(offset: number, length: number, fua: boolean, noHole: boolean): Promise<void>;
}

export type NbdErrnoName = Exclude<keyof typeof NBD_ERRNO, 'OK'>;

/** The operations reported to metrics hooks. */
export type NbdOp = 'read' | 'write' | 'flush' | 'trim' | 'write_zeroes';

/** A device failure the client should see with a specific errno (ENOSPC when a replica is full…). */
export class NbdIoError extends Error {
  readonly errno: NbdErrnoName;

  constructor(errno: NbdErrnoName, message: string = errno, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NbdIoError';
    this.errno = errno;
  }
}

/** The NBD errno for whatever a device threw. */
export function nbdErrno(err: unknown): number {
  if (err instanceof NbdIoError) return NBD_ERRNO[err.errno] ?? NBD_ERRNO.EIO;
  return NBD_ERRNO.EIO;
}
