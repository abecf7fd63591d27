/**
 * ONC RPC v2 (RFC 5531) calls over one TCP connection with record marking: AUTH_SYS credentials,
 * calls matched to replies by xid, a deadline per call. A connection that drops fails every
 * call in flight with RpcConnectionError, which is what a client needs to tell "the server went
 * away" (reconnect, reclaim) from "the server said no".
 */
import net from 'node:net';
import { XdrReader, XdrWriter } from './xdr.js';

const MSG_CALL = 0;
const MSG_REPLY = 1;
const MSG_ACCEPTED = 0;
const AUTH_NONE = 0;
const AUTH_SYS = 1;
const ACCEPT_STATUS = [
  'SUCCESS',
  'PROG_UNAVAIL',
  'PROG_MISMATCH',
  'PROC_UNAVAIL',
  'GARBAGE_ARGS',
  'SYSTEM_ERR',
];
const LAST_FRAGMENT = 0x8000_0000;
/** Larger than any reply NFSv4.1 negotiates here (1 MiB reads plus headers). */
const MAX_RECORD = 16 << 20;

export class RpcConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RpcConnectionError';
  }
}

/** The server answered, but refused the call at the RPC layer (not an NFS status). */
export class RpcRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RpcRejectedError';
  }
}

export interface RpcEndpoint {
  host: string;
  port: number;
  /** Source address to bind, when the client must come from a particular node's address. */
  localAddress?: string;
}

export interface AuthSys {
  machineName: string;
  uid: number;
  gid: number;
}

interface Pending {
  resolve: (body: XdrReader) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class RpcConnection {
  private nextXid = (Math.random() * 0x7fff_ffff) >>> 0;
  private readonly pending = new Map<number, Pending>();
  private received: Buffer[] = [];
  private receivedBytes = 0;
  private fragments: Buffer[] = [];
  private closedWith: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly auth: AuthSys,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (err) =>
      this.fail(new RpcConnectionError(`connection to the NFS server failed: ${err.message}`)),
    );
    socket.on('close', () => this.fail(new RpcConnectionError('the NFS server closed the connection')));
  }

  static connect(endpoint: RpcEndpoint, auth: AuthSys, timeoutMs = 5_000): Promise<RpcConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: endpoint.host,
        port: endpoint.port,
        localAddress: endpoint.localAddress,
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new RpcConnectionError(
            `no TCP connection to ${endpoint.host}:${endpoint.port} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RpcConnection(socket, auth));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new RpcConnectionError(`cannot connect to ${endpoint.host}:${endpoint.port}: ${err.message}`));
      });
    });
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Calls one procedure; resolves with the reader positioned at the procedure's results. */
  call(
    program: number,
    version: number,
    procedure: number,
    args: Buffer,
    timeoutMs: number,
  ): Promise<XdrReader> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const xid = this.nextXid;
    this.nextXid = (this.nextXid + 1) >>> 0;
    const header = new XdrWriter()
      .uint32(0) // record mark, filled in below
      .uint32(xid)
      .uint32(MSG_CALL)
      .uint32(2)
      .uint32(program)
      .uint32(version)
      .uint32(procedure)
      .uint32(AUTH_SYS)
      .opaque(this.authSysBody())
      .uint32(AUTH_NONE)
      .uint32(0)
      .toBuffer();
    const length = header.length - 4 + args.length;
    if (length > MAX_RECORD)
      return Promise.reject(new RpcRejectedError(`call of ${length} bytes is too large`));
    header.writeUInt32BE((LAST_FRAGMENT | length) >>> 0, 0);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(xid);
        reject(new RpcConnectionError(`no reply from the NFS server within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(xid, { resolve, reject, timer });
      this.socket.cork();
      this.socket.write(header);
      this.socket.write(args);
      this.socket.uncork();
    });
  }

  close(): void {
    this.socket.destroy();
    this.fail(new RpcConnectionError('the connection was closed by this client'));
  }

  private authSysBody(): Buffer {
    return new XdrWriter()
      .uint32(Math.floor(Date.now() / 1000) >>> 0)
      .string(this.auth.machineName)
      .uint32(this.auth.uid)
      .uint32(this.auth.gid)
      .uint32Array([])
      .toBuffer();
  }

  private onData(chunk: Buffer): void {
    this.received.push(chunk);
    this.receivedBytes += chunk.length;
    for (;;) {
      if (this.receivedBytes < 4) return;
      const head = this.peek(4).readUInt32BE(0);
      const length = head & ~LAST_FRAGMENT;
      if (length > MAX_RECORD) {
        this.socket.destroy();
        this.fail(
          new RpcConnectionError(`the server sent a record of ${length} bytes, more than ${MAX_RECORD}`),
        );
        return;
      }
      if (this.receivedBytes < 4 + length) return;
      const fragment = this.consume(4 + length).subarray(4);
      this.fragments.push(fragment);
      if ((head & LAST_FRAGMENT) === 0) continue;
      const record = this.fragments.length === 1 ? fragment : Buffer.concat(this.fragments);
      this.fragments = [];
      this.onRecord(record);
    }
  }

  private peek(bytes: number): Buffer {
    if ((this.received[0] as Buffer).length < bytes) this.received = [Buffer.concat(this.received)];
    return this.received[0] as Buffer;
  }

  private consume(bytes: number): Buffer {
    const all = this.received.length === 1 ? (this.received[0] as Buffer) : Buffer.concat(this.received);
    this.received = all.length > bytes ? [all.subarray(bytes)] : [];
    this.receivedBytes -= bytes;
    return all.subarray(0, bytes);
  }

  private onRecord(record: Buffer): void {
    const reader = new XdrReader(record);
    const xid = reader.uint32();
    const waiting = this.pending.get(xid);
    if (!waiting) return; // a reply to a call that already timed out
    this.pending.delete(xid);
    clearTimeout(waiting.timer);
    try {
      if (reader.uint32() !== MSG_REPLY)
        throw new RpcRejectedError('the server sent a call where a reply was due');
      if (reader.uint32() !== MSG_ACCEPTED)
        throw new RpcRejectedError('the server denied the call (RPC version or authentication)');
      reader.uint32(); // verifier flavor
      reader.opaque(400);
      const accept = reader.uint32();
      if (accept !== 0)
        throw new RpcRejectedError(`the server did not run the call: ${ACCEPT_STATUS[accept] ?? accept}`);
      waiting.resolve(reader);
    } catch (err) {
      waiting.reject(err as Error);
    }
  }

  private fail(err: Error): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const [xid, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      waiting.reject(err);
      this.pending.delete(xid);
    }
  }
}
