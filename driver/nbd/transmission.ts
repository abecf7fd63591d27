// Transmission phase of NBD, without sockets: an incremental request decoder that validates every
// request against the export before the engine sees it, and the simple-reply encoder. A request the
// server must refuse but can still frame (bad range, bad flags, unknown command, write to a
// read-only export) becomes an 'error' event carrying the cookie to answer; only input that breaks
// framing (bad magic, a WRITE payload larger than we will ever buffer) is 'fatal'.

import { ioBuffers } from '../../lib/io-buffers.js';
import { commandName, NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO, NBD_MAGIC } from './constants.js';

export interface NbdRequest {
  flags: number;
  command: number;
  /** Opaque client value (the spec's "handle"); echo it in the reply. */
  cookie: bigint;
  offset: bigint;
  length: number;
  /** WRITE data; may share memory with the pushed chunks, so copy it if the chunks are reused. */
  payload?: Buffer;
}

export type DecodeEvent =
  | { type: 'request'; request: NbdRequest }
  | { type: 'error'; cookie: bigint; errno: number; message: string }
  | { type: 'fatal'; message: string };

export interface DecoderConfig {
  /** Export size in bytes: no yielded request reaches past it. */
  size: bigint;
  /**
   * A bound below `size` that may move, read for every request: requests past it are refused
   * like requests past the end (a growable export, handshake.ts ExportConfig.limit).
   */
  limit?: () => bigint;
  readOnly?: boolean;
  /** Largest READ or WRITE length; WRITE beyond it is fatal, READ beyond it is EINVAL. */
  maxPayload: number;
}

export const REQUEST_HEADER_LENGTH = 28;
export const SIMPLE_REPLY_HEADER_LENGTH = 16;

const MAX_U32 = 0xffffffff;
const MAX_U64 = (1n << 64n) - 1n;

/** Commands Tandem advertises (FLUSH, TRIM and WRITE_ZEROES via transmission flags). */
const SUPPORTED = new Set<number>([
  NBD_CMD.READ,
  NBD_CMD.WRITE,
  NBD_CMD.DISC,
  NBD_CMD.FLUSH,
  NBD_CMD.TRIM,
  NBD_CMD.WRITE_ZEROES,
]);
const MUTATING = new Set<number>([NBD_CMD.WRITE, NBD_CMD.TRIM, NBD_CMD.WRITE_ZEROES]);

/** FUA must be accepted on every command once SEND_FUA is advertised; NO_HOLE only on WRITE_ZEROES. */
function allowedFlags(command: number): number {
  return command === NBD_CMD.WRITE_ZEROES ? NBD_CMD_FLAG.FUA | NBD_CMD_FLAG.NO_HOLE : NBD_CMD_FLAG.FUA;
}

type Phase = 'header' | 'payload' | 'skip' | 'done';

interface Rejection {
  errno: number;
  message: string;
}

export class RequestDecoder {
  private readonly size: bigint;
  private readonly limit: (() => bigint) | undefined;
  private readonly readOnly: boolean;
  private readonly maxPayload: number;
  private phase: Phase = 'header';
  private readonly header = Buffer.alloc(REQUEST_HEADER_LENGTH);
  private filled = 0;
  /** The WRITE whose payload is being collected, or the refused one whose payload is skipped. */
  private current: NbdRequest | undefined;
  private rejection: Rejection | undefined;
  private slices: Buffer[] = [];
  private remaining = 0;

  constructor(config: DecoderConfig) {
    if (config.size < 0n || config.size > MAX_U64) throw new RangeError('size must fit in 64 bits');
    if (!Number.isInteger(config.maxPayload) || config.maxPayload < 1 || config.maxPayload > MAX_U32) {
      throw new RangeError(`maxPayload must be an integer in [1, ${MAX_U32}]`);
    }
    this.size = config.size;
    this.limit = config.limit;
    this.readOnly = config.readOnly === true;
    this.maxPayload = config.maxPayload;
  }

  /** True after 'fatal' or NBD_CMD_DISC: the connection is over and later input is ignored. */
  get done(): boolean {
    return this.phase === 'done';
  }

  /** Consumes client bytes; a request cut short just waits for the next chunk. */
  push(chunk: Buffer): DecodeEvent[] {
    const out: DecodeEvent[] = [];
    let pos = 0;
    while (this.phase !== 'done') {
      // A payload is complete once nothing remains: at once for a zero-length WRITE.
      if (this.phase !== 'header' && this.remaining === 0) {
        this.finishPayload(out);
        continue;
      }
      if (pos >= chunk.length) break;
      pos += this.phase === 'header' ? this.fillHeader(chunk, pos, out) : this.takePayload(chunk, pos);
    }
    return out;
  }

  private fillHeader(chunk: Buffer, pos: number, out: DecodeEvent[]): number {
    const copied = chunk.copy(this.header, this.filled, pos, pos + (REQUEST_HEADER_LENGTH - this.filled));
    this.filled += copied;
    if (this.filled === REQUEST_HEADER_LENGTH) {
      this.filled = 0;
      this.onHeader(this.header, out);
    }
    return copied;
  }

  /** Payload bytes are sliced, not copied: memory grows only with bytes actually received. */
  private takePayload(chunk: Buffer, pos: number): number {
    const n = Math.min(this.remaining, chunk.length - pos);
    if (this.phase === 'payload') this.slices.push(chunk.subarray(pos, pos + n));
    this.remaining -= n;
    return n;
  }

  private onHeader(header: Buffer, out: DecodeEvent[]): void {
    if (header.readUInt32BE(0) !== NBD_MAGIC.REQUEST) {
      this.phase = 'done';
      out.push({ type: 'fatal', message: `bad request magic 0x${header.readUInt32BE(0).toString(16)}` });
      return;
    }
    const request: NbdRequest = {
      flags: header.readUInt16BE(4),
      command: header.readUInt16BE(6),
      cookie: header.readBigUInt64BE(8),
      offset: header.readBigUInt64BE(16),
      length: header.readUInt32BE(24),
    };
    if (request.command === NBD_CMD.WRITE) {
      this.onWriteHeader(request, out);
    } else if (request.command === NBD_CMD.DISC) {
      // Offset and length are reserved; a disconnect is honoured whatever they hold.
      this.phase = 'done';
      out.push({ type: 'request', request: { ...request, offset: 0n, length: 0 } });
    } else {
      const rejection = this.check(request);
      if (rejection) out.push({ type: 'error', cookie: request.cookie, ...rejection });
      else out.push({ type: 'request', request });
    }
  }

  private onWriteHeader(request: NbdRequest, out: DecodeEvent[]): void {
    if (request.length > this.maxPayload) {
      // Skipping the payload would keep framing, but a client this far outside the advertised
      // maximum block size is broken or hostile: disconnect as the spec allows.
      this.phase = 'done';
      out.push({
        type: 'fatal',
        message: `WRITE of ${request.length} bytes exceeds maxPayload ${this.maxPayload}`,
      });
      return;
    }
    this.current = request;
    this.rejection = this.check(request);
    this.phase = this.rejection ? 'skip' : 'payload';
    this.remaining = request.length;
    this.slices = [];
  }

  private finishPayload(out: DecodeEvent[]): void {
    const request = this.current;
    const rejection = this.rejection;
    const slices = this.slices;
    this.current = undefined;
    this.rejection = undefined;
    this.slices = [];
    this.phase = 'header';
    if (request === undefined) return;
    if (rejection) {
      out.push({ type: 'error', cookie: request.cookie, ...rejection });
      return;
    }
    const payload = slices.length === 1 && slices[0] ? slices[0] : gather(slices, request.length);
    // A literal rather than a spread: this runs for every write (one hidden class, no clone).
    const { flags, command, cookie, offset, length } = request;
    out.push({ type: 'request', request: { flags, command, cookie, offset, length, payload } });
  }

  /** Why the server must refuse a well-framed request, or undefined if the engine may run it. */
  private check(request: NbdRequest): Rejection | undefined {
    const { command, flags, offset, length } = request;
    const name = commandName(command);
    if (!SUPPORTED.has(command)) return { errno: NBD_ERRNO.EINVAL, message: `unsupported command ${name}` };
    const unknownFlags = flags & ~allowedFlags(command);
    if (unknownFlags !== 0) {
      return {
        errno: NBD_ERRNO.EINVAL,
        message: `${name}: flags 0x${unknownFlags.toString(16)} not allowed`,
      };
    }
    if (this.readOnly && MUTATING.has(command)) {
      return { errno: NBD_ERRNO.EPERM, message: `${name} on a read-only export` };
    }
    if (command === NBD_CMD.FLUSH) {
      if (offset !== 0n || length !== 0)
        return { errno: NBD_ERRNO.EINVAL, message: 'FLUSH with nonzero offset/length' };
      return undefined;
    }
    if (command === NBD_CMD.READ && length > this.maxPayload) {
      return {
        errno: NBD_ERRNO.EINVAL,
        message: `READ of ${length} bytes exceeds maxPayload ${this.maxPayload}`,
      };
    }
    const limit = this.limit?.();
    const end = limit !== undefined && limit < this.size ? limit : this.size;
    if (offset > end || BigInt(length) > end - offset) {
      // The spec asks for ENOSPC on writes past the end and EINVAL on reads and trims.
      const errno =
        command === NBD_CMD.WRITE || command === NBD_CMD.WRITE_ZEROES ? NBD_ERRNO.ENOSPC : NBD_ERRNO.EINVAL;
      const bound = end === this.size ? 'the export size' : "the volume's current size";
      return { errno, message: `${name} of ${length} bytes at ${offset} is beyond ${bound} ${end}` };
    }
    return undefined;
  }
}

/**
 * Header of a simple reply: magic, error, cookie. For a successful READ the caller writes the data
 * right after it (separately, to avoid copying large reads).
 */
export function encodeSimpleReplyHeader(cookie: bigint, errno: number): Buffer {
  const header = Buffer.alloc(SIMPLE_REPLY_HEADER_LENGTH);
  header.writeUInt32BE(NBD_MAGIC.SIMPLE_REPLY, 0);
  header.writeUInt32BE(errno, 4);
  header.writeBigUInt64BE(cookie, 8);
  return header;
}

/** A complete simple reply. Data is only legal on success (the spec forbids a payload after an error). */
export function encodeSimpleReply(cookie: bigint, errno: number, data?: Buffer): Buffer {
  if (errno !== NBD_ERRNO.OK && data !== undefined && data.length > 0) {
    throw new RangeError('a simple reply carrying an error must not carry data');
  }
  const header = encodeSimpleReplyHeader(cookie, errno);
  return data === undefined || data.length === 0 ? header : Buffer.concat([header, data]);
}

/** A request as a client sends it (used by tests and client-side tooling). */
export function encodeRequest(request: NbdRequest): Buffer {
  const header = Buffer.alloc(REQUEST_HEADER_LENGTH);
  header.writeUInt32BE(NBD_MAGIC.REQUEST, 0);
  header.writeUInt16BE(request.flags, 4);
  header.writeUInt16BE(request.command, 6);
  header.writeBigUInt64BE(request.cookie, 8);
  header.writeBigUInt64BE(request.offset, 16);
  header.writeUInt32BE(request.length, 24);
  return request.payload === undefined ? header : Buffer.concat([header, request.payload]);
}

/** The slices of a payload in one pooled buffer (released by the connection once written). */
function gather(slices: readonly Buffer[], length: number): Buffer {
  const out = ioBuffers.acquire(length);
  let at = 0;
  for (const slice of slices) at += slice.copy(out, at);
  return out;
}
