/**
 * XDR (RFC 4506): big-endian 4-byte units, opaque data padded to a multiple of four. Only what
 * ONC RPC and NFSv4.1 need. A reader that runs past its buffer throws XdrError, so a short or
 * malformed reply from a server is an error with a name, never a silent zero.
 */

export class XdrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XdrError';
  }
}

const UINT32_MAX = 0xffff_ffff;

export class XdrWriter {
  private chunks: Buffer[] = [];
  private current = Buffer.allocUnsafe(256);
  private used = 0;

  uint32(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > UINT32_MAX)
      throw new XdrError(`uint32 out of range: ${value}`);
    this.reserve(4).writeUInt32BE(value, this.used - 4);
    return this;
  }

  uint64(value: bigint): this {
    if (value < 0n || value > 0xffff_ffff_ffff_ffffn) throw new XdrError(`uint64 out of range: ${value}`);
    this.reserve(8).writeBigUInt64BE(value, this.used - 8);
    return this;
  }

  bool(value: boolean): this {
    return this.uint32(value ? 1 : 0);
  }

  /** Fixed-length opaque: the length is part of the type, so it is checked, not written. */
  fixedOpaque(data: Buffer, length: number): this {
    if (data.length !== length) throw new XdrError(`fixed opaque of ${length} bytes given ${data.length}`);
    return this.raw(data);
  }

  opaque(data: Buffer): this {
    this.uint32(data.length);
    return this.raw(data);
  }

  string(value: string): this {
    return this.opaque(Buffer.from(value, 'utf8'));
  }

  uint32Array(values: readonly number[]): this {
    this.uint32(values.length);
    for (const value of values) this.uint32(value);
    return this;
  }

  /** Appends bytes (already XDR) with the padding to four bytes. */
  raw(data: Buffer): this {
    const padding = (4 - (data.length % 4)) % 4;
    if (data.length >= 1024) {
      // Large payloads (WRITE data) go in as their own chunk instead of being copied.
      this.flushCurrent();
      this.chunks.push(data);
      if (padding) this.chunks.push(Buffer.alloc(padding));
      return this;
    }
    const target = this.reserve(data.length + padding);
    data.copy(target, this.used - data.length - padding);
    target.fill(0, this.used - padding, this.used);
    return this;
  }

  toBuffer(): Buffer {
    this.flushCurrent();
    return this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
  }

  private reserve(bytes: number): Buffer {
    if (this.used + bytes > this.current.length) {
      this.flushCurrent();
      this.current = Buffer.allocUnsafe(Math.max(256, bytes));
    }
    this.used += bytes;
    return this.current;
  }

  private flushCurrent(): void {
    if (this.used > 0) this.chunks.push(this.current.subarray(0, this.used));
    this.current = this.current.subarray(this.used);
    this.used = 0;
  }
}

export class XdrReader {
  private offset = 0;

  constructor(private readonly buffer: Buffer) {}

  get remaining(): number {
    return this.buffer.length - this.offset;
  }

  uint32(): number {
    const value = this.take(4).readUInt32BE(0);
    return value;
  }

  uint64(): bigint {
    return this.take(8).readBigUInt64BE(0);
  }

  bool(): boolean {
    const value = this.uint32();
    if (value > 1) throw new XdrError(`bool encoded as ${value}`);
    return value === 1;
  }

  fixedOpaque(length: number): Buffer {
    const data = this.take(length);
    this.skipPadding(length);
    return data;
  }

  opaque(limit = 1 << 26): Buffer {
    const length = this.uint32();
    if (length > limit) throw new XdrError(`opaque of ${length} bytes exceeds its limit of ${limit}`);
    return this.fixedOpaque(length);
  }

  string(limit = 1 << 16): string {
    return this.opaque(limit).toString('utf8');
  }

  uint32Array(limit = 64): number[] {
    const count = this.uint32();
    if (count > limit) throw new XdrError(`array of ${count} elements exceeds its limit of ${limit}`);
    return Array.from({ length: count }, () => this.uint32());
  }

  private take(length: number): Buffer {
    if (length > this.remaining)
      throw new XdrError(
        `truncated: ${length} bytes wanted at offset ${this.offset}, ${this.remaining} left`,
      );
    const data = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return data;
  }

  private skipPadding(length: number): void {
    const padding = (4 - (length % 4)) % 4;
    if (padding) this.take(padding);
  }
}
