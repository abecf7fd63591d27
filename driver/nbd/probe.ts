/**
 * A minimal NBD client that only asks: the node plugin learns the size an engine serves now (a new
 * connection sees the size after an expansion) and whether the growable export is offered, with
 * NBD_OPT_INFO per name and NBD_OPT_ABORT, never entering transmission. No dependency on
 * nbdinfo; works over a unix socket only (the engine's socket on the node).
 */
import { connect, type Socket } from 'node:net';
import { NBD_CLIENT_FLAG, NBD_INFO, NBD_MAGIC, NBD_OPT, NBD_REP } from './constants.js';

const GREETING_LENGTH = 18;
const REPLY_HEADER_LENGTH = 20;
/** Replies to INFO are small (export info, block sizes, a name); refuse anything absurd. */
const MAX_REPLY_DATA = 64 * 1024;

/** Reads exact byte counts from a socket, in order. */
class Reader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;

  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.wake();
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('the NBD server closed the connection')));
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  async take(n: number): Promise<Buffer> {
    while (this.buffered < n) {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.buffered -= n;
    return all.subarray(0, n);
  }
}

function option(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(NBD_MAGIC.IHAVEOPT, 0);
  header.writeUInt32BE(code, 8);
  header.writeUInt32BE(data.length, 12);
  return Buffer.concat([header, data]);
}

function infoRequest(name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const data = Buffer.alloc(4 + nameBytes.length + 2);
  data.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(data, 4);
  data.writeUInt16BE(0, 4 + nameBytes.length); // no extra info asked: NBD_INFO_EXPORT always comes
  return option(NBD_OPT.INFO, data);
}

/** One INFO exchange: the export's size, or undefined when the server knows no such export. */
async function info(socket: Socket, reader: Reader, name: string): Promise<number | undefined> {
  socket.write(infoRequest(name));
  let size: number | undefined;
  for (;;) {
    const header = await reader.take(REPLY_HEADER_LENGTH);
    if (header.readBigUInt64BE(0) !== NBD_MAGIC.OPTION_REPLY) throw new Error('bad NBD option reply magic');
    const type = header.readUInt32BE(12);
    const length = header.readUInt32BE(16);
    if (length > MAX_REPLY_DATA) throw new Error(`NBD option reply of ${length} bytes`);
    const data = await reader.take(length);
    if (type === NBD_REP.ACK) {
      if (size === undefined) throw new Error(`the NBD server sent no size for export ${name}`);
      return size;
    }
    if (type === NBD_REP.ERR_UNKNOWN) return undefined;
    if (type >= NBD_REP.ERR_UNSUP)
      throw new Error(`NBD_OPT_INFO ${name}: error 0x${type.toString(16)} ${data.toString('utf8')}`);
    if (type === NBD_REP.INFO && data.length >= 10 && data.readUInt16BE(0) === NBD_INFO.EXPORT) {
      const bytes = data.readBigUInt64BE(2);
      if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`export ${name} has ${bytes} bytes`);
      size = Number(bytes);
    }
  }
}

/**
 * The sizes of `names` as the NBD server on `socketPath` offers them to a new connection;
 * undefined for a name it does not serve. Throws when nothing answers, the server breaks the
 * protocol, or `timeoutMs` passes.
 */
export async function probeExportSizes(
  socketPath: string,
  names: readonly string[],
  timeoutMs = 10_000,
): Promise<(number | undefined)[]> {
  const socket = connect(socketPath);
  const reader = new Reader(socket);
  const timer = setTimeout(
    () => reader.fail(new Error(`no NBD answer on ${socketPath} within ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    const greeting = await reader.take(GREETING_LENGTH);
    if (
      greeting.readBigUInt64BE(0) !== NBD_MAGIC.INIT_PASSWD ||
      greeting.readBigUInt64BE(8) !== NBD_MAGIC.IHAVEOPT
    )
      throw new Error(`${socketPath} does not speak fixed-newstyle NBD`);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(NBD_CLIENT_FLAG.FIXED_NEWSTYLE | NBD_CLIENT_FLAG.NO_ZEROES, 0);
    socket.write(flags);
    const sizes: (number | undefined)[] = [];
    for (const name of names) sizes.push(await info(socket, reader, name));
    socket.write(option(NBD_OPT.ABORT));
    return sizes;
  } finally {
    clearTimeout(timer);
    socket.end();
    socket.destroy();
  }
}
