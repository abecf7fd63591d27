// Numeric values of the NBD protocol, as given by the NetworkBlockDevice/nbd `doc/proto.md`
// specification. Everything on the wire is big-endian. Only values are defined here; the
// handshake and transmission modules decide which of them Tandem supports.

/** Magic numbers. The 64-bit ones are bigint because they exceed Number's exact range. */
export const NBD_MAGIC = {
  /** ASCII 'NBDMAGIC', the first 8 bytes the server sends (a.k.a. INIT_PASSWD). */
  INIT_PASSWD: 0x4e42444d41474943n,
  /** ASCII 'IHAVEOPT': sent by the server in the greeting and by the client before every option. */
  IHAVEOPT: 0x49484156454f5054n,
  /** Prefix of every fixed-newstyle option reply. */
  OPTION_REPLY: 0x3e889045565a9n,
  /** Prefix of every transmission request. */
  REQUEST: 0x25609513,
  /** Prefix of a simple reply (formerly NBD_REPLY_MAGIC). */
  SIMPLE_REPLY: 0x67446698,
  /** Prefix of a structured reply chunk. */
  STRUCTURED_REPLY: 0x668e33ef,
} as const;

/** Handshake flags (16 bits, server → client, right after the greeting magics). */
export const NBD_HANDSHAKE_FLAG = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Client flags (32 bits, client → server, answering the handshake flags). */
export const NBD_CLIENT_FLAG = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Transmission flags (16 bits, describe the chosen export). */
export const NBD_TX_FLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Option codes sent by the client during option haggling. */
export const NBD_OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

/** Bit 31 marks an option reply type as an error. */
export const NBD_REP_FLAG_ERROR = 0x80000000;

/** Option reply types. */
export const NBD_REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: NBD_REP_FLAG_ERROR + 1,
  ERR_POLICY: NBD_REP_FLAG_ERROR + 2,
  ERR_INVALID: NBD_REP_FLAG_ERROR + 3,
  ERR_PLATFORM: NBD_REP_FLAG_ERROR + 4,
  ERR_TLS_REQD: NBD_REP_FLAG_ERROR + 5,
  ERR_UNKNOWN: NBD_REP_FLAG_ERROR + 6,
  ERR_SHUTDOWN: NBD_REP_FLAG_ERROR + 7,
  ERR_BLOCK_SIZE_REQD: NBD_REP_FLAG_ERROR + 8,
  ERR_TOO_BIG: NBD_REP_FLAG_ERROR + 9,
} as const;

/** Information types requested by NBD_OPT_INFO / NBD_OPT_GO and carried in NBD_REP_INFO. */
export const NBD_INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission request types. */
export const NBD_CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;

/** Command flags (16 bits per request). */
export const NBD_CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Structured reply flags and chunk types (listed for completeness; Tandem sends simple replies). */
export const NBD_REPLY_FLAG = { DONE: 1 << 0 } as const;
export const NBD_REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;

/** The only error values the protocol allows in a reply (they match common Linux errno values). */
export const NBD_ERRNO = {
  OK: 0,
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Reserved zero padding after an NBD_OPT_EXPORT_NAME reply unless NO_ZEROES was negotiated. */
export const NBD_EXPORT_NAME_PADDING = 124;

/** Strings (export names, messages) MUST NOT exceed this many bytes. */
export const NBD_MAX_STRING = 4096;

/** The IANA port for newstyle negotiation. */
export const NBD_DEFAULT_PORT = 10809;

/** Human-readable name of a command, for logs and error messages. */
export function commandName(command: number): string {
  return COMMAND_NAMES.get(command) ?? `CMD_${command}`;
}

/** Built once: the request decoder names every command it checks (a hot path). */
const COMMAND_NAMES = new Map<number, string>(Object.entries(NBD_CMD).map(([name, value]) => [value, name]));

/** Human-readable name of an option, for logs and error messages. */
export function optionName(option: number): string {
  for (const [name, value] of Object.entries(NBD_OPT)) if (value === option) return name;
  return `OPT_${option}`;
}
