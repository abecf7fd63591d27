/**
 * An NBD client for one unix-socket connection: fixed-newstyle handshake with NBD_OPT_GO, then
 * requests with simple replies matched by cookie, any number in flight. The node's relay
 * (relay-device.ts) uses it to reach the engine; it never negotiates structured replies, so a
 * READ's reply is its header followed by exactly the bytes asked for.
 */
import { connect, type Socket } from 'node:net';
import {
  NBD_CLIENT_FLAG,
  NBD_CMD,
  NBD_INFO,
  NBD_MAGIC,
  NBD_OPT,
  NBD_REP,
  NBD_REP_FLAG_ERROR,
} from './constants.js';
import { encodeRequest, SIMPLE_REPLY_HEADER_LENGTH } from './transmission.js';

const GREETING_LENGTH = 18;
const OPTION_REPLY_HEADER_LENGTH = 20;
const MAX_OPTION_REPLY = 64 * 1024;

export interface NbdReply {
  /** 0, or the errno the server answered with (NBD_ERRNO values). */
  errno: number;
  data?: Buffer;
}

export interface NbdRequestSpec {
  command: number;
  flags?: number;
  offset: number;
  length: number;
  payload?: Buffer;
}

interface Pending {
  length: number;
  read: boolean;
  resolve: (reply: NbdReply) => void;
  reject: (err: Error) => void;
}

export class NbdClient {
  readonly size: number;
  readonly transmissionFlags: number;
  /** Resolves with the reason once the connection is gone; every pending request was rejected. */
  readonly closed: Promise<Error>;
  readonly #socket: Socket;
  readonly #pending = new Map<bigint, Pending>();
  #buffer: Buffer = Buffer.alloc(0);
  #nextCookie = 1n;
  #failure: Error | undefined;

  private constructor(socket: Socket, size: number, flags: number, rest: Buffer) {
    this.#socket = socket;
    this.size = size;
    this.transmissionFlags = flags;
    this.#buffer = rest;
    this.closed = new Promise((resolve) => {
      const end = (err: Error) => {
        this.#failure ??= err;
        for (const p of this.#pending.values()) p.reject(this.#failure);
        this.#pending.clear();
        resolve(this.#failure);
      };
      socket.on('error', (err) => end(err));
      socket.on('close', () => end(new Error('the NBD server closed the connection')));
    });
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
      this.#parse();
    });
  }

  /** Connects to `path`, negotiates `exportName`; rejects with the server's words if it refuses. */
  static async connect(path: string, exportName: string, timeoutMs = 10_000): Promise<NbdClient> {
    const socket = connect(path);
    const timer = setTimeout(
      () => socket.destroy(new Error(`NBD handshake with ${path} timed out`)),
      timeoutMs,
    );
    try {
      const reader = new HandshakeReader(socket);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      const greeting = await reader.take(GREETING_LENGTH);
      if (greeting.readBigUInt64BE(8) !== NBD_MAGIC.IHAVEOPT)
        throw new Error(`${path} is not a newstyle NBD server`);
      const clientFlags = Buffer.alloc(4);
      clientFlags.writeUInt32BE(NBD_CLIENT_FLAG.FIXED_NEWSTYLE | NBD_CLIENT_FLAG.NO_ZEROES);
      const name = Buffer.from(exportName, 'utf8');
      const option = Buffer.alloc(16 + 6 + name.length);
      option.writeBigUInt64BE(NBD_MAGIC.IHAVEOPT, 0);
      option.writeUInt32BE(NBD_OPT.GO, 8);
      option.writeUInt32BE(6 + name.length, 12);
      option.writeUInt32BE(name.length, 16);
      name.copy(option, 20);
      option.writeUInt16BE(0, 20 + name.length); // no information requests beyond the default
      socket.write(Buffer.concat([clientFlags, option]));
      let size: number | undefined;
      let flags = 0;
      for (;;) {
        const header = await reader.take(OPTION_REPLY_HEADER_LENGTH);
        const type = header.readUInt32BE(12);
        const length = header.readUInt32BE(16);
        if (length > MAX_OPTION_REPLY) throw new Error(`option reply of ${length} bytes from ${path}`);
        const body = await reader.take(length);
        if (type === NBD_REP.ACK) break;
        if ((type & NBD_REP_FLAG_ERROR) !== 0)
          throw new Error(
            `${path} refused export "${exportName}": ${body.toString('utf8') || `error 0x${type.toString(16)}`}`,
          );
        if (type === NBD_REP.INFO && body.readUInt16BE(0) === NBD_INFO.EXPORT) {
          size = Number(body.readBigUInt64BE(2));
          flags = body.readUInt16BE(10);
        }
      }
      if (size === undefined) throw new Error(`${path} did not say the size of "${exportName}"`);
      return new NbdClient(socket, size, flags, reader.detach());
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get open(): boolean {
    return this.#failure === undefined && !this.#socket.destroyed;
  }

  request(spec: NbdRequestSpec): Promise<NbdReply> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const cookie = this.#nextCookie++;
    return new Promise<NbdReply>((resolve, reject) => {
      this.#pending.set(cookie, {
        length: spec.length,
        read: spec.command === NBD_CMD.READ,
        resolve,
        reject,
      });
      this.#socket.write(
        encodeRequest({
          flags: spec.flags ?? 0,
          command: spec.command,
          cookie,
          offset: BigInt(spec.offset),
          length: spec.length,
          payload: spec.payload,
        }),
      );
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #parse(): void {
    while (this.#buffer.length >= SIMPLE_REPLY_HEADER_LENGTH) {
      const magic = this.#buffer.readUInt32BE(0);
      if (magic !== NBD_MAGIC.SIMPLE_REPLY) {
        this.#socket.destroy(new Error(`unexpected NBD reply magic 0x${magic.toString(16)}`));
        return;
      }
      const errno = this.#buffer.readUInt32BE(4);
      const cookie = this.#buffer.readBigUInt64BE(8);
      const pending = this.#pending.get(cookie);
      if (pending === undefined) {
        this.#socket.destroy(new Error(`NBD reply for unknown cookie ${cookie}`));
        return;
      }
      const dataLength = pending.read && errno === 0 ? pending.length : 0;
      if (this.#buffer.length < SIMPLE_REPLY_HEADER_LENGTH + dataLength) return;
      const end = SIMPLE_REPLY_HEADER_LENGTH + dataLength;
      const data =
        dataLength > 0 ? Buffer.from(this.#buffer.subarray(SIMPLE_REPLY_HEADER_LENGTH, end)) : undefined;
      this.#buffer = this.#buffer.subarray(end);
      this.#pending.delete(cookie);
      pending.resolve(data === undefined ? { errno } : { errno, data });
    }
  }
}

/** Exact byte counts from a socket during the handshake; hands over what is left afterwards. */
class HandshakeReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #wake: (() => void) | undefined;
  #failure: Error | undefined;
  readonly #onData = (chunk: Buffer) => {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    this.#wakeUp();
  };

  constructor(private readonly socket: Socket) {
    socket.on('data', this.#onData);
    socket.once('error', (err) => this.#fail(err));
    socket.once('close', () =>
      this.#fail(new Error('the NBD server closed the connection during the handshake')),
    );
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async take(n: number): Promise<Buffer> {
    while (this.#buffered < n) {
      if (this.#failure !== undefined) throw this.#failure;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all.subarray(n)];
    this.#buffered -= n;
    return all.subarray(0, n);
  }

  /** Stops reading; returns the bytes received beyond what was taken. */
  detach(): Buffer {
    this.socket.off('data', this.#onData);
    return Buffer.concat(this.#chunks);
  }
}
