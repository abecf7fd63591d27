// Server side of the NBD fixed newstyle handshake as a pure, incremental state machine: the caller
// feeds bytes read from the socket and performs the returned events in order (write the bytes of a
// 'send', switch to transmission on 'ready', end the connection on 'close'). No I/O happens here, so
// the whole negotiation can be unit- and fuzz-tested. Supported options: EXPORT_NAME, ABORT, LIST,
// INFO and GO; everything else (STARTTLS, STRUCTURED_REPLY, meta contexts…) gets ERR_UNSUP, which
// keeps the transmission phase on simple replies only.

import {
  NBD_CLIENT_FLAG,
  NBD_EXPORT_NAME_PADDING,
  NBD_HANDSHAKE_FLAG,
  NBD_INFO,
  NBD_MAGIC,
  NBD_MAX_STRING,
  NBD_OPT,
  NBD_REP,
  NBD_TX_FLAG,
  optionName,
} from './constants.js';

export interface ExportConfig {
  size: bigint;
  readOnly?: boolean;
  description?: string;
  /** Left out of NBD_OPT_LIST replies (still reachable by name with GO, INFO or EXPORT_NAME). */
  hidden?: boolean;
  /**
   * Requests are refused past this bound as well as past `size`; read for every request, so it
   * may grow while a connection is open (the growable export, server.ts).
   */
  limit?: () => bigint;
}

export interface HandshakeConfig {
  exports: ReadonlyMap<string, ExportConfig>;
  /** Advertise CAN_MULTI_CONN: FLUSH and FUA effects are visible across all connections. */
  multiConn: boolean;
  /** Largest READ/WRITE length accepted; advertised as the maximum block size. */
  maxPayload: number;
  /** Largest option data accepted during haggling; defaults to DEFAULT_MAX_OPTION_LENGTH. */
  maxOptionLength?: number;
}

export interface ReadyEvent {
  type: 'ready';
  exportName: string;
  size: bigint;
  /** The export's moving bound, if it has one (ExportConfig.limit). */
  limit?: () => bigint;
  readOnly: boolean;
  transmissionFlags: number;
  /** Whether the client negotiated NBD_FLAG_C_NO_ZEROES (informational once ready). */
  noZeroes: boolean;
  /** Bytes that followed the final option in the same chunk: feed them to the request decoder. */
  rest: Buffer;
}

export type HandshakeEvent = { type: 'send'; data: Buffer } | ReadyEvent | { type: 'close'; reason: string };

/** Legitimate options carry at most a few strings of ≤ 4 KiB; anything far larger is abuse. */
export const DEFAULT_MAX_OPTION_LENGTH = 64 * 1024;
/** Block size constraints advertised in NBD_INFO_BLOCK_SIZE: any alignment, 4 KiB preferred. */
export const MIN_BLOCK_SIZE = 1;
export const PREFERRED_BLOCK_SIZE = 4096;

const MAX_U32 = 0xffffffff;
const MAX_U64 = (1n << 64n) - 1n;
const CLIENT_FLAGS_LENGTH = 4;
const OPTION_HEADER_LENGTH = 16;
const KNOWN_CLIENT_FLAGS = NBD_CLIENT_FLAG.FIXED_NEWSTYLE | NBD_CLIENT_FLAG.NO_ZEROES;
const EMPTY = Buffer.alloc(0);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The transmission flags Tandem advertises for an export. */
export function transmissionFlags(exp: ExportConfig, multiConn: boolean): number {
  let flags =
    NBD_TX_FLAG.HAS_FLAGS |
    NBD_TX_FLAG.SEND_FLUSH |
    NBD_TX_FLAG.SEND_FUA |
    NBD_TX_FLAG.SEND_TRIM |
    NBD_TX_FLAG.SEND_WRITE_ZEROES;
  if (multiConn) flags |= NBD_TX_FLAG.CAN_MULTI_CONN;
  if (exp.readOnly) flags |= NBD_TX_FLAG.READ_ONLY;
  return flags;
}

/** NBDMAGIC, IHAVEOPT, handshake flags FIXED_NEWSTYLE|NO_ZEROES: 18 bytes. */
export function serverGreeting(): Buffer {
  const out = Buffer.alloc(18);
  out.writeBigUInt64BE(NBD_MAGIC.INIT_PASSWD, 0);
  out.writeBigUInt64BE(NBD_MAGIC.IHAVEOPT, 8);
  out.writeUInt16BE(NBD_HANDSHAKE_FLAG.FIXED_NEWSTYLE | NBD_HANDSHAKE_FLAG.NO_ZEROES, 16);
  return out;
}

type Phase = 'clientFlags' | 'optionHeader' | 'optionData' | 'done';

export class HandshakeParser {
  private readonly config: HandshakeConfig;
  private readonly maxOptionLength: number;
  private started = false;
  private phase: Phase = 'clientFlags';
  /** The frame being filled: client flags, an option header or option data (length checked). */
  private frame = Buffer.alloc(CLIENT_FLAGS_LENGTH);
  private filled = 0;
  private option = 0;
  private noZeroes = false;
  /** Replies produced by the current push(), written out as one 'send'. */
  private outgoing: Buffer[] = [];
  /** The terminal event, emitted after the replies that precede it. */
  private ending: Omit<ReadyEvent, 'rest'> | { type: 'close'; reason: string } | undefined;

  constructor(config: HandshakeConfig) {
    validateConfig(config);
    this.config = config;
    this.maxOptionLength = config.maxOptionLength ?? DEFAULT_MAX_OPTION_LENGTH;
  }

  /** True once 'ready' or 'close' has been emitted; later input is ignored. */
  get done(): boolean {
    return this.phase === 'done';
  }

  /** The greeting the server sends on connect. Idempotent; push() sends it if the caller did not. */
  start(): HandshakeEvent[] {
    this.greet();
    return this.drain(EMPTY);
  }

  /** Consumes client bytes; a frame cut short just waits for the next chunk. */
  push(chunk: Buffer): HandshakeEvent[] {
    this.greet();
    let pos = 0;
    while (this.phase !== 'done') {
      if (this.filled === this.frame.length) {
        this.onFrame();
        continue;
      }
      if (pos >= chunk.length) break;
      const copied = chunk.copy(this.frame, this.filled, pos, pos + (this.frame.length - this.filled));
      this.filled += copied;
      pos += copied;
    }
    return this.drain(chunk.subarray(pos));
  }

  private greet(): void {
    if (this.started) return;
    this.started = true;
    this.outgoing.push(serverGreeting());
  }

  /** Everything produced so far: one 'send' (one socket write), then 'ready' or 'close' if reached. */
  private drain(rest: Buffer): HandshakeEvent[] {
    const events: HandshakeEvent[] = [];
    if (this.outgoing.length > 0) events.push({ type: 'send', data: Buffer.concat(this.outgoing) });
    if (this.ending) events.push(this.ending.type === 'ready' ? { ...this.ending, rest } : this.ending);
    this.outgoing = [];
    this.ending = undefined;
    return events;
  }

  private expect(phase: Phase, length: number): void {
    this.phase = phase;
    this.frame = length === 0 ? EMPTY : Buffer.alloc(length);
    this.filled = 0;
  }

  private close(reason: string): void {
    this.phase = 'done';
    this.ending = { type: 'close', reason };
  }

  private onFrame(): void {
    const frame = this.frame;
    if (this.phase === 'clientFlags') {
      this.onClientFlags(frame.readUInt32BE(0));
    } else if (this.phase === 'optionHeader') {
      this.onOptionHeader(frame);
    } else {
      this.onOption(this.option, frame);
      if (this.phase !== 'done') this.expect('optionHeader', OPTION_HEADER_LENGTH);
    }
  }

  private onClientFlags(flags: number): void {
    // The spec requires dropping clients that set flags we did not offer; without FIXED_NEWSTYLE
    // the client could not parse our option replies at all.
    if ((flags & NBD_CLIENT_FLAG.FIXED_NEWSTYLE) === 0) {
      this.close('client does not support fixed newstyle negotiation');
    } else if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
      this.close(`client sent unknown flags 0x${flags.toString(16)}`);
    } else {
      this.noZeroes = (flags & NBD_CLIENT_FLAG.NO_ZEROES) !== 0;
      this.expect('optionHeader', OPTION_HEADER_LENGTH);
    }
  }

  private onOptionHeader(header: Buffer): void {
    if (header.readBigUInt64BE(0) !== NBD_MAGIC.IHAVEOPT) {
      this.close('bad option magic (expected IHAVEOPT)');
      return;
    }
    this.option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > this.maxOptionLength) {
      // EXPORT_NAME cannot be answered with an error; for the others say why before hanging up
      // rather than buffer or skip up to 4 GiB of a client that is not playing by the rules.
      const reason = `${optionName(this.option)} data of ${length} bytes exceeds ${this.maxOptionLength}`;
      if (this.option !== NBD_OPT.EXPORT_NAME) {
        this.outgoing.push(errorReply(this.option, NBD_REP.ERR_TOO_BIG, reason));
      }
      this.close(reason);
      return;
    }
    this.expect('optionData', length);
  }

  private onOption(option: number, data: Buffer): void {
    switch (option) {
      case NBD_OPT.EXPORT_NAME:
        this.onExportName(data);
        break;
      case NBD_OPT.ABORT:
        // The spec asks servers to ignore any data sent with ABORT.
        this.outgoing.push(optionReply(option, NBD_REP.ACK));
        this.close('client aborted the handshake');
        break;
      case NBD_OPT.LIST:
        this.onList(data);
        break;
      case NBD_OPT.INFO:
      case NBD_OPT.GO:
        this.onInfoOrGo(option, data);
        break;
      default:
        this.outgoing.push(errorReply(option, NBD_REP.ERR_UNSUP, `${optionName(option)} is not supported`));
    }
  }

  /** Old-style entry into transmission: no way to report errors, so an unknown name hangs up. */
  private onExportName(data: Buffer): void {
    const name = decodeString(data);
    const exp = name === undefined ? undefined : this.config.exports.get(name);
    if (name === undefined || exp === undefined) {
      this.close(`NBD_OPT_EXPORT_NAME for unknown export ${quote(name)}`);
      return;
    }
    const flags = transmissionFlags(exp, this.config.multiConn);
    const reply = Buffer.alloc(10 + (this.noZeroes ? 0 : NBD_EXPORT_NAME_PADDING));
    reply.writeBigUInt64BE(exp.size, 0);
    reply.writeUInt16BE(flags, 8);
    this.outgoing.push(reply);
    this.enterTransmission(name, exp, flags);
  }

  private onList(data: Buffer): void {
    if (data.length !== 0) {
      this.outgoing.push(errorReply(NBD_OPT.LIST, NBD_REP.ERR_INVALID, 'NBD_OPT_LIST takes no data'));
      return;
    }
    for (const [name, exp] of this.config.exports) {
      if (exp.hidden === true) continue;
      const nameBytes = Buffer.from(name, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(nameBytes.length, 0);
      const details = Buffer.from(exp.description ?? '', 'utf8');
      this.outgoing.push(
        optionReply(NBD_OPT.LIST, NBD_REP.SERVER, Buffer.concat([length, nameBytes, details])),
      );
    }
    this.outgoing.push(optionReply(NBD_OPT.LIST, NBD_REP.ACK));
  }

  private onInfoOrGo(option: number, data: Buffer): void {
    const request = parseInfoRequest(data);
    if (typeof request === 'string') {
      this.outgoing.push(errorReply(option, NBD_REP.ERR_INVALID, request));
      return;
    }
    const { name, infos } = request;
    const exp = this.config.exports.get(name);
    if (exp === undefined) {
      this.outgoing.push(errorReply(option, NBD_REP.ERR_UNKNOWN, `no export named ${quote(name)}`));
      return;
    }
    const flags = transmissionFlags(exp, this.config.multiConn);
    const exportInfo = Buffer.alloc(10);
    exportInfo.writeBigUInt64BE(exp.size, 0);
    exportInfo.writeUInt16BE(flags, 8);
    this.outgoing.push(infoReply(option, NBD_INFO.EXPORT, exportInfo));
    if (infos.has(NBD_INFO.NAME))
      this.outgoing.push(infoReply(option, NBD_INFO.NAME, Buffer.from(name, 'utf8')));
    if (infos.has(NBD_INFO.DESCRIPTION) && exp.description !== undefined) {
      this.outgoing.push(infoReply(option, NBD_INFO.DESCRIPTION, Buffer.from(exp.description, 'utf8')));
    }
    // Always sent on GO so that a client which asked for nothing still learns maxPayload.
    if (infos.has(NBD_INFO.BLOCK_SIZE) || option === NBD_OPT.GO) {
      const sizes = Buffer.alloc(12);
      sizes.writeUInt32BE(MIN_BLOCK_SIZE, 0);
      sizes.writeUInt32BE(PREFERRED_BLOCK_SIZE, 4);
      sizes.writeUInt32BE(this.config.maxPayload, 8);
      this.outgoing.push(infoReply(option, NBD_INFO.BLOCK_SIZE, sizes));
    }
    this.outgoing.push(optionReply(option, NBD_REP.ACK));
    if (option === NBD_OPT.GO) this.enterTransmission(name, exp, flags);
  }

  private enterTransmission(exportName: string, exp: ExportConfig, flags: number): void {
    this.phase = 'done';
    this.ending = {
      type: 'ready',
      exportName,
      size: exp.size,
      ...(exp.limit === undefined ? {} : { limit: exp.limit }),
      readOnly: exp.readOnly === true,
      transmissionFlags: flags,
      noZeroes: this.noZeroes,
    };
  }
}

/** INFO/GO data: u32 name length, name, u16 count, count × u16 info types. Returns an error text. */
function parseInfoRequest(data: Buffer): { name: string; infos: Set<number> } | string {
  if (data.length < 6) return 'option data too short';
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) return 'export name length exceeds the option data';
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 6 + nameLength + 2 * count) return 'info request count does not match the length';
  const name = decodeString(data.subarray(4, 4 + nameLength));
  if (name === undefined) return 'export name is not valid UTF-8';
  const infos = new Set<number>();
  for (let i = 0; i < count; i++) infos.add(data.readUInt16BE(6 + nameLength + 2 * i));
  return { name, infos };
}

function decodeString(bytes: Buffer): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Client-chosen names go into messages; keep those well under the 4096-byte string limit. */
function quote(name: string | undefined): string {
  if (name === undefined) return '(invalid UTF-8)';
  return JSON.stringify(name.length > 256 ? `${name.slice(0, 256)}…` : name);
}

function optionReply(option: number, type: number, data: Buffer = EMPTY): Buffer {
  const header = Buffer.alloc(20);
  header.writeBigUInt64BE(NBD_MAGIC.OPTION_REPLY, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(type, 12);
  header.writeUInt32BE(data.length, 16);
  return Buffer.concat([header, data]);
}

function errorReply(option: number, type: number, message: string): Buffer {
  return optionReply(option, type, Buffer.from(message, 'utf8'));
}

function infoReply(option: number, infoType: number, payload: Buffer): Buffer {
  const type = Buffer.alloc(2);
  type.writeUInt16BE(infoType, 0);
  return optionReply(option, NBD_REP.INFO, Buffer.concat([type, payload]));
}

/** Bad configuration is a programming error: fail at construction so push() never throws. */
function validateConfig({ exports, maxPayload, maxOptionLength = 0 }: HandshakeConfig): void {
  if (!Number.isInteger(maxPayload) || maxPayload < PREFERRED_BLOCK_SIZE || maxPayload > MAX_U32) {
    throw new RangeError(`maxPayload must be an integer in [${PREFERRED_BLOCK_SIZE}, ${MAX_U32}]`);
  }
  if (!Number.isInteger(maxOptionLength) || maxOptionLength < 0) throw new RangeError('bad maxOptionLength');
  for (const [name, { size, description = '' }] of exports) {
    const tooLong =
      Buffer.byteLength(name) > NBD_MAX_STRING || Buffer.byteLength(description) > NBD_MAX_STRING;
    if (size < 0n || size > MAX_U64 || tooLong) {
      throw new RangeError(`export ${quote(name)}: size or strings out of range`);
    }
  }
}
