/**
 * Constants and frame types of the replica protocol. The byte layout is documented in
 * protocol.ts, which is the module other code imports.
 */

export const MAGIC = 'TDRP';
/** MAGIC as the big-endian u32 it is on the wire. */
export const MAGIC_U32 = 0x54445250;
export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 40;
/** Largest payload of any frame; also bounds READ/WRITE size and the EXTENTS/HASH reply lists. */
export const MAX_PAYLOAD = 32 * 1024 * 1024;
/** Largest diagnostic message in an error reply. */
export const MAX_MESSAGE_BYTES = 1024;
export const DIGEST_SIZE = 32;
export const EXTENT_SIZE = 16;
/** HASH block sizes are powers of two in this range (a block is read whole to hash it). */
export const MIN_HASH_BLOCK = 512;
/** HELLO OK payload: volume size u64, then flags u32 (HelloFlag). */
export const HELLO_OK_PAYLOAD = 12;
export const HelloFlag = { DIRTY: 0x1 } as const;
export const MAX_HASH_BLOCK = MAX_PAYLOAD;

/** Request opcodes; a reply is the request's opcode with REPLY_BIT set. */
export const Opcode = {
  HELLO: 0x01,
  READ: 0x02,
  WRITE: 0x03,
  FLUSH: 0x04,
  TRIM: 0x05,
  WRITE_ZEROES: 0x06,
  EXTENTS: 0x07,
  HASH: 0x08,
} as const;
export type RequestOp = keyof typeof Opcode;
export const REPLY_BIT = 0x80;
/** The server's first frame on a connection (REPLY_BIT alone: server to client, answers nothing). */
export const GREETING_OPCODE = 0x80;

export const REQUEST_OPS: readonly RequestOp[] = Object.keys(Opcode) as RequestOp[];
const OP_BY_CODE = new Map<number, RequestOp>(REQUEST_OPS.map((op) => [Opcode[op], op]));
export function requestOpOf(code: number): RequestOp | undefined {
  return OP_BY_CODE.get(code);
}

/** Request flag bits (u16 at header offset 6 of a request). */
export const Flag = {
  /** WRITE, TRIM, WRITE_ZEROES: durable on the replica before the reply (fdatasync). */
  FUA: 0x0001,
  /** WRITE_ZEROES: allocate the zeroes instead of punching a hole. */
  NO_HOLE: 0x0002,
} as const;

/** Reply status (u16 at header offset 6 of a reply). */
export const Status = {
  OK: 0,
  /** The request's epoch is older than the replica's; the reply's epoch field is the replica's. */
  STALE_EPOCH: 1,
  /** A request other than HELLO before a successful HELLO. */
  AUTH_REQUIRED: 2,
  AUTH_FAILED: 3,
  UNKNOWN_VOLUME: 4,
  OUT_OF_RANGE: 5,
  /** The reply would exceed MAX_PAYLOAD (READ length, too many HASH digests). */
  TOO_LARGE: 6,
  BAD_REQUEST: 7,
  IO_ERROR: 8,
  NO_SPACE: 9,
} as const;
export type StatusName = keyof typeof Status;
export type ErrorStatus = Exclude<StatusName, 'OK'>;
const STATUS_BY_CODE = new Map<number, StatusName>(
  (Object.keys(Status) as StatusName[]).map((name) => [Status[name], name]),
);
export function statusOf(code: number): StatusName | undefined {
  return STATUS_BY_CODE.get(code);
}

/** An allocated (data) extent: absolute byte offset and length. */
export interface Extent {
  offset: bigint;
  length: bigint;
}

export interface Greeting {
  kind: 'greeting';
  nonce: Buffer;
}

interface RequestBase {
  kind: 'request';
  requestId: bigint;
  epoch: bigint;
}
interface Ranged {
  offset: bigint;
  length: number;
}
export interface HelloRequest extends RequestBase {
  op: 'HELLO';
  volume: string;
  engineId: string;
  proof: Buffer;
}
export interface ReadRequest extends RequestBase, Ranged {
  op: 'READ';
}
/** `length` is carried for uniformity with other ranged requests and always equals data.length. */
export interface WriteRequest extends RequestBase, Ranged {
  op: 'WRITE';
  fua: boolean;
  data: Buffer;
}
export interface FlushRequest extends RequestBase {
  op: 'FLUSH';
}
export interface TrimRequest extends RequestBase, Ranged {
  op: 'TRIM';
  fua: boolean;
}
export interface WriteZeroesRequest extends RequestBase, Ranged {
  op: 'WRITE_ZEROES';
  fua: boolean;
  noHole: boolean;
}
export interface ExtentsRequest extends RequestBase, Ranged {
  op: 'EXTENTS';
}
export interface HashRequest extends RequestBase, Ranged {
  op: 'HASH';
  blockSize: number;
}
export type Request =
  | HelloRequest
  | ReadRequest
  | WriteRequest
  | FlushRequest
  | TrimRequest
  | WriteZeroesRequest
  | ExtentsRequest
  | HashRequest;

/**
 * Every reply echoes the request's id, offset and length (zero for HELLO and FLUSH) and carries the
 * replica's current epoch, whatever the status.
 */
interface ReplyBase extends Ranged {
  kind: 'reply';
  requestId: bigint;
  epoch: bigint;
}
export interface ErrorReply extends ReplyBase {
  op: RequestOp;
  status: ErrorStatus;
  /** Diagnostic text (e.g. an errno code), possibly empty; at most MAX_MESSAGE_BYTES of UTF-8. */
  message: string;
}
export interface HelloOk extends ReplyBase {
  op: 'HELLO';
  status: 'OK';
  /** The replica's volume size in bytes. */
  size: bigint;
  /**
   * Writes reached the replica since it was last closed cleanly (after a FLUSH), so an engine
   * that crashed may have left the replicas different where its last writes were in flight.
   */
  dirty: boolean;
}
export interface ReadOk extends ReplyBase {
  op: 'READ';
  status: 'OK';
  data: Buffer;
}
export interface EmptyOk extends ReplyBase {
  op: 'WRITE' | 'FLUSH' | 'TRIM' | 'WRITE_ZEROES';
  status: 'OK';
}
export interface ExtentsOk extends ReplyBase {
  op: 'EXTENTS';
  status: 'OK';
  /** Sorted, disjoint, non-empty, inside [offset, offset + length). */
  extents: Extent[];
}
export interface HashOk extends ReplyBase {
  op: 'HASH';
  status: 'OK';
  blockSize: number;
  /** SHA-256 of each block of the range in order; the last block may be short. */
  digests: Buffer[];
}
export type OkReply = HelloOk | ReadOk | EmptyOk | ExtentsOk | HashOk;
export type Reply = OkReply | ErrorReply;

export type Frame = Greeting | Request | Reply;

export type FatalReason =
  | 'bad-magic'
  | 'unsupported-version'
  | 'unknown-opcode'
  | 'unexpected-frame'
  | 'bad-flags'
  | 'unknown-status'
  | 'payload-too-large'
  | 'bad-header'
  | 'bad-length'
  | 'malformed-hello'
  | 'malformed-hash'
  | 'malformed-extents'
  | 'malformed-message'
  | 'internal';

export interface Fatal {
  type: 'fatal';
  reason: FatalReason;
  message: string;
}
export type DecodedFrame = { type: 'frame'; frame: Frame } | Fatal;

export function fatal(reason: FatalReason, message: string): Fatal {
  return { type: 'fatal', reason, message };
}
