/**
 * Tandem replica protocol (TDRP), version 1: what engines and the replica server exchange over TCP.
 * Pure code, no sockets. All integers are big-endian; 64-bit fields are bigint.
 *
 * Every frame is a fixed 40-byte header followed by `payload length` bytes of payload:
 *
 * | offset | size | field          | meaning                                                        |
 * |--------|------|----------------|----------------------------------------------------------------|
 * | 0      | 4    | magic          | ASCII "TDRP" (0x54 0x44 0x52 0x50)                             |
 * | 4      | 1    | version        | 1                                                              |
 * | 5      | 1    | opcode         | request 0x01..0x08; reply = request + 0x80; greeting 0x80      |
 * | 6      | 2    | flags / status | request: flag bits; reply: status code                         |
 * | 8      | 8    | request id     | chosen by the client, echoed by the reply; 0 in the greeting   |
 * | 16     | 8    | epoch          | request: the sender's epoch; reply: the replica's epoch        |
 * | 24     | 8    | offset         | byte offset of the range (0 where the opcode has no range)     |
 * | 32     | 4    | length         | byte length of the range (0 where the opcode has no range)     |
 * | 36     | 4    | payload length | bytes that follow the header, at most MAX_PAYLOAD (32 MiB)     |
 * | 40     | n    | payload        | per opcode, below                                              |
 *
 * Opcodes and payloads (a reply echoes the request's id, offset and length):
 *
 * | opcode | name         | flags        | request payload             | OK reply payload (opcode + 0x80)  |
 * |--------|--------------|--------------|-----------------------------|-----------------------------------|
 * | 0x80   | GREETING     | -            | server → client, unasked: 32-byte nonce; other fields 0         |
 * | 0x01   | HELLO        | -            | names, epoch, proof         | volume size u64, flags u32        |
 * |        |              |              | (layout in hello.ts)        | (bit 0: dirty, others zero)       |
 * | 0x02   | READ         | -            | none                        | data, exactly `length` bytes      |
 * | 0x03   | WRITE        | FUA          | data, exactly `length` bytes| none                              |
 * | 0x04   | FLUSH        | -            | none                        | none                              |
 * | 0x05   | TRIM         | FUA          | none                        | none                              |
 * | 0x06   | WRITE_ZEROES | FUA, NO_HOLE | none                        | none                              |
 * | 0x07   | EXTENTS      | -            | none                        | k × (offset u64, length u64):     |
 * |        |              |              |                             | allocated extents, ascending,     |
 * |        |              |              |                             | disjoint, non-empty, in the range |
 * | 0x08   | HASH         | -            | block size u32: power of    | block size u32, then              |
 * |        |              |              | two, 512 B .. 32 MiB        | ceil(length / block size) × 32-   |
 * |        |              |              |                             | byte SHA-256 digests, in order    |
 *
 * Flags: FUA = 0x0001, NO_HOLE = 0x0002. Status: OK 0, STALE_EPOCH 1, AUTH_REQUIRED 2,
 * AUTH_FAILED 3, UNKNOWN_VOLUME 4, OUT_OF_RANGE 5, TOO_LARGE 6, BAD_REQUEST 7, IO_ERROR 8,
 * NO_SPACE 9. A reply with any status but OK has an optional UTF-8 diagnostic message of at most
 * 1024 bytes as its payload. A reply always carries the replica's current epoch, so STALE_EPOCH
 * tells the engine which epoch fenced it.
 *
 * The decoder is strict: a bad magic, an unknown version, opcode, status or flag bit, a payload
 * longer than 32 MiB or inconsistent with its opcode, a non-zero field the opcode does not use, or
 * a malformed HELLO/EXTENTS/HASH/message payload ends the connection (a `fatal`). Semantic
 * problems of a well-formed request (a range past the end, a READ longer than 32 MiB, a HASH whose
 * digests would not fit) are answered with a status instead, since the stream is still in sync.
 *
 * Why SHA-256 for HASH: rebuild and scrub skip a block when the digests match, so the hash must be
 * collision-resistant against whatever data a guest writes; a non-cryptographic hash (xxHash) is
 * faster but can be made to collide, and would be a dependency. node:crypto's SHA-256 uses the
 * CPU's SHA extensions where present (GB/s per core), ample for a background scrub.
 */
import { ioBuffers } from '../../lib/io-buffers.js';
import { type Accept, buildFrame, checkHeader, parseHeader, type RawHeader } from './codec.js';
import { type DecodedFrame, fatal, HEADER_SIZE, MAGIC, PROTOCOL_VERSION } from './wire.js';

export { type Accept, digestCount, hashBlocks, validBlockSize } from './codec.js';
export { encodeFrame, encodeFrameParts } from './encode.js';
export * from './hello.js';
export * from './wire.js';

const EMPTY = Buffer.alloc(0);
const PREFIX = Buffer.concat([Buffer.from(MAGIC, 'latin1'), Buffer.from([PROTOCOL_VERSION])]);
/** Consumed chunks are dropped from the queue in batches, so 1-byte pushes stay linear. */
const COMPACT_AFTER = 64;

/**
 * Incremental decoder for one connection's byte stream. `push` returns every frame completed by
 * the chunk, in order; after a `fatal` (always the last item) the decoder is dead and returns []
 * forever. push never throws. Memory is only allocated for a payload after its header has passed
 * every check, and decoded payloads may share memory with pushed chunks (zero-copy), so a chunk
 * must not be modified after it is pushed (socket chunks never are).
 */
export class FrameDecoder {
  readonly #accept: Accept;
  #chunks: Buffer[] = [];
  /** Index of the first live chunk, and bytes of it already consumed. */
  #first = 0;
  #head = 0;
  #buffered = 0;
  /** A header that passed its checks and waits for its payload. */
  #pending: RawHeader | undefined;
  #dead = false;

  constructor(options: { accept?: Accept } = {}) {
    this.#accept = options.accept ?? 'any';
  }

  /** True once a fatal has been returned. */
  get dead(): boolean {
    return this.#dead;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): DecodedFrame[] {
    if (this.#dead) return [];
    const out: DecodedFrame[] = [];
    try {
      this.#append(chunk);
      for (let item = this.#next(); item !== undefined; item = this.#dead ? undefined : this.#next()) {
        out.push(item);
        if (item.type === 'fatal') this.#kill();
      }
    } catch (err) {
      // Unreachable by design (the fuzz test checks it never happens); a decoder that throws
      // would leave the connection handler in an undefined state, so fail the stream instead.
      out.push(fatal('internal', `decoder error: ${err instanceof Error ? err.message : String(err)}`));
      this.#kill();
    }
    return out;
  }

  #append(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(
      Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length),
    );
    this.#buffered += chunk.length;
  }

  #kill(): void {
    this.#dead = true;
    this.#chunks = [];
    this.#first = 0;
    this.#head = 0;
    this.#buffered = 0;
    this.#pending = undefined;
  }

  #next(): DecodedFrame | undefined {
    if (this.#pending === undefined) {
      if (this.#buffered < HEADER_SIZE) return this.#checkPrefix();
      const header = parseHeader(this.#take(HEADER_SIZE));
      const problem = checkHeader(header, this.#accept);
      if (problem !== undefined) return problem;
      this.#pending = header;
    }
    if (this.#buffered < this.#pending.payloadLength) return undefined;
    const header = this.#pending;
    this.#pending = undefined;
    return buildFrame(header, this.#take(header.payloadLength));
  }

  /**
   * Refuses a wrong magic or version as soon as those bytes arrive: a peer speaking another
   * protocol (HTTP, NBD) may send fewer than 40 bytes and then wait forever for an answer.
   */
  #checkPrefix(): DecodedFrame | undefined {
    const prefix = this.#peek(Math.min(this.#buffered, PREFIX.length));
    const magicBytes = Math.min(prefix.length, 4);
    if (!prefix.subarray(0, magicBytes).equals(PREFIX.subarray(0, magicBytes))) {
      return fatal('bad-magic', `bad magic 0x${prefix.subarray(0, magicBytes).toString('hex')}`);
    }
    const version = prefix[4];
    if (version !== undefined && version !== PROTOCOL_VERSION) {
      return fatal('unsupported-version', `unsupported version ${version}`);
    }
    return undefined;
  }

  /** Copies the first n buffered bytes without consuming them (n is small). */
  #peek(n: number): Buffer {
    const out = Buffer.alloc(n);
    let filled = 0;
    let head = this.#head;
    for (let i = this.#first; filled < n && i < this.#chunks.length; i++) {
      const chunk = this.#chunks[i] ?? EMPTY;
      filled += chunk.copy(out, filled, head, head + n - filled);
      head = 0;
    }
    return out;
  }

  /** Consumes n buffered bytes (n <= buffered, and n was checked against MAX_PAYLOAD). */
  #take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const first = this.#chunks[this.#first] ?? EMPTY;
    let out: Buffer;
    if (first.length - this.#head >= n) {
      out = first.subarray(this.#head, this.#head + n);
      this.#advance(n);
    } else {
      out = ioBuffers.acquire(n); // every byte is overwritten below; pooled (see lib/io-buffers.ts)
      let filled = 0;
      while (filled < n) {
        const chunk = this.#chunks[this.#first] ?? EMPTY;
        const copied = chunk.copy(out, filled, this.#head, this.#head + n - filled);
        if (copied === 0) throw new Error('buffer accounting out of step'); // never loop forever
        filled += copied;
        this.#advance(copied);
      }
    }
    this.#buffered -= n;
    return out;
  }

  /** Moves the read position n bytes forward within the first chunk, dropping it when used up. */
  #advance(n: number): void {
    this.#head += n;
    if (this.#head < (this.#chunks[this.#first]?.length ?? 0)) return;
    this.#first++;
    this.#head = 0;
    if (this.#first >= COMPACT_AFTER && this.#first * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#first);
      this.#first = 0;
    }
  }
}
