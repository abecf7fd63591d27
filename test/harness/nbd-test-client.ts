import { connect, type Socket } from 'node:net';
import {
  NBD_CLIENT_FLAG,
  NBD_CMD,
  NBD_INFO,
  NBD_MAGIC,
  NBD_OPT,
  NBD_REP,
} from '../../driver/nbd/constants.js';
import { encodeRequest, SIMPLE_REPLY_HEADER_LENGTH } from '../../driver/nbd/transmission.js';

/**
 * A minimal NBD client for unit tests of the server: fixed-newstyle handshake with OPT_GO, then
 * requests with automatic cookies and simple replies matched by cookie. It records the order in
 * which replies arrive so tests can observe out-of-order completion; real clients (libnbd, fio)
 * are exercised by the integration tests.
 */
export interface Reply {
  cookie: bigint;
  errno: number;
  data?: Buffer;
}

export interface RequestSpec {
  command: number;
  flags?: number;
  offset?: number;
  length?: number;
  payload?: Buffer;
}

export class NbdTestClient {
  readonly socket: Socket;
  size = 0n;
  transmissionFlags = 0;
  /** Cookies in the order their replies arrived. */
  readonly replyOrder: bigint[] = [];
  /** Resolves when the server closes the connection. */
  readonly closed: Promise<void>;
  private buffer: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private transmission = false;
  private nextCookie = 1n;
  private readonly pending = new Map<
    bigint,
    { length: number; isRead: boolean; resolve: (r: Reply) => void; reject: (e: Error) => void }
  >();

  private constructor(socket: Socket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      if (this.transmission) this.parseReplies();
      else this.waiter?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
      this.waiter?.();
    });
  }

  /** Connects and completes the handshake (unless `handshake` is false). */
  static async connect(
    target: string | { host: string; port: number },
    exportName = 'disk',
    handshake = true,
  ): Promise<NbdTestClient> {
    const socket = typeof target === 'string' ? connect(target) : connect(target.port, target.host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new NbdTestClient(socket);
    if (handshake) await client.negotiate(exportName);
    return client;
  }

  /** Waits for exactly n bytes of handshake data. */
  async take(n: number): Promise<Buffer> {
    while (this.buffer.length < n) {
      if (this.socket.destroyed) throw new Error('connection closed during handshake');
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  private async negotiate(exportName: string): Promise<void> {
    const greeting = await this.take(18);
    if (greeting.readBigUInt64BE(8) !== NBD_MAGIC.IHAVEOPT) throw new Error('not a newstyle server');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(NBD_CLIENT_FLAG.FIXED_NEWSTYLE | NBD_CLIENT_FLAG.NO_ZEROES);
    const name = Buffer.from(exportName, 'utf8');
    const data = Buffer.alloc(6 + name.length);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    const option = Buffer.alloc(16);
    option.writeBigUInt64BE(NBD_MAGIC.IHAVEOPT, 0);
    option.writeUInt32BE(NBD_OPT.GO, 8);
    option.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([flags, option, data]));
    for (;;) {
      const header = await this.take(20);
      const type = header.readUInt32BE(12);
      const body = await this.take(header.readUInt32BE(16));
      if (type === NBD_REP.ACK) break;
      if (type !== NBD_REP.INFO) throw new Error(`OPT_GO failed: ${body.toString('utf8')}`);
      if (body.readUInt16BE(0) === NBD_INFO.EXPORT) {
        this.size = body.readBigUInt64BE(2);
        this.transmissionFlags = body.readUInt16BE(10);
      }
    }
    this.transmission = true;
    this.parseReplies();
  }

  /** Sends a request (cookie assigned here) and resolves with its reply. */
  request(spec: RequestSpec): Promise<Reply> {
    const { promise, bytes } = this.prepare(spec);
    this.socket.write(bytes);
    return promise;
  }

  /** Encodes requests without sending: lets a test write several in one chunk. */
  prepare(spec: RequestSpec): { promise: Promise<Reply>; bytes: Buffer } {
    const cookie = this.nextCookie++;
    const length = spec.length ?? spec.payload?.length ?? 0;
    const bytes = encodeRequest({
      flags: spec.flags ?? 0,
      command: spec.command,
      cookie,
      offset: BigInt(spec.offset ?? 0),
      length,
      payload: spec.payload,
    });
    const promise = new Promise<Reply>((resolve, reject) => {
      if (spec.command === NBD_CMD.DISC) resolve({ cookie, errno: 0 });
      else this.pending.set(cookie, { length, isRead: spec.command === NBD_CMD.READ, resolve, reject });
    });
    return { promise, bytes };
  }

  private parseReplies(): void {
    while (this.buffer.length >= SIMPLE_REPLY_HEADER_LENGTH) {
      const magic = this.buffer.readUInt32BE(0);
      if (magic !== NBD_MAGIC.SIMPLE_REPLY) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
      const errno = this.buffer.readUInt32BE(4);
      const cookie = this.buffer.readBigUInt64BE(8);
      const pending = this.pending.get(cookie);
      if (pending === undefined) throw new Error(`reply for unknown cookie ${cookie}`);
      const dataLength = pending.isRead && errno === 0 ? pending.length : 0;
      if (this.buffer.length < SIMPLE_REPLY_HEADER_LENGTH + dataLength) return;
      const data = Buffer.from(
        this.buffer.subarray(SIMPLE_REPLY_HEADER_LENGTH, SIMPLE_REPLY_HEADER_LENGTH + dataLength),
      );
      this.buffer = this.buffer.subarray(SIMPLE_REPLY_HEADER_LENGTH + dataLength);
      this.pending.delete(cookie);
      this.replyOrder.push(cookie);
      pending.resolve(pending.isRead && errno === 0 ? { cookie, errno, data } : { cookie, errno });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
