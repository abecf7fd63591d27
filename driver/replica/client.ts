/**
 * The engine's connection to one replica: TCP, greeting, authenticated HELLO, then pipelined
 * requests matched to replies by request id. Any timeout or protocol violation ends the whole
 * connection (every pending request fails): a replica that stalls one request cannot be trusted
 * with the next, and the engine fences it.
 */
import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { BatchedWriter } from '../../lib/batched-writer.js';
import { parseHostPort } from '../../lib/config.js';
import {
  type ErrorStatus,
  type Extent,
  encodeFrameParts,
  FrameDecoder,
  helloProof,
  type OkReply,
  type Reply,
  type Request,
} from './protocol.js';

export type ReplicaFailure = ErrorStatus | 'TIMEOUT' | 'DISCONNECTED' | 'PROTOCOL';

export class ReplicaError extends Error {
  override name = 'ReplicaError';
  constructor(
    readonly status: ReplicaFailure,
    message: string,
    /** The replica's epoch, from the reply (meaningful for STALE_EPOCH). */
    readonly replicaEpoch?: bigint,
  ) {
    super(message);
  }
}

export interface ReplicaClientOptions {
  address: string;
  volume: string;
  engineId: string;
  secret: Buffer;
  epoch: bigint;
  /** A request not answered within this time fails the connection. */
  requestTimeoutMs: number;
  connectTimeoutMs?: number;
  log: Logger;
}

interface Pending {
  resolve: (reply: OkReply) => void;
  reject: (err: ReplicaError) => void;
  deadline: number;
}

type RequestBody = Request extends infer R
  ? R extends Request
    ? Omit<R, 'kind' | 'requestId' | 'epoch'>
    : never
  : never;

export class ReplicaClient {
  readonly address: string;
  epoch: bigint;
  size = 0;
  dirty = false;
  readonly #socket: Socket;
  readonly #out: BatchedWriter;
  readonly #decoder = new FrameDecoder({ accept: 'replies' });
  readonly #pending = new Map<bigint, Pending>();
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #closeListeners: ((err: ReplicaError) => void)[] = [];
  #nextId = 1n;
  #failure: ReplicaError | undefined;
  #greeting: ((nonce: Buffer) => void) | undefined;
  #sweeper: NodeJS.Timeout;

  private constructor(socket: Socket, options: ReplicaClientOptions) {
    this.address = options.address;
    this.epoch = options.epoch;
    this.#socket = socket;
    this.#out = new BatchedWriter(socket);
    this.#timeoutMs = options.requestTimeoutMs;
    this.#log = options.log;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) =>
      this.#fail(new ReplicaError('DISCONNECTED', `${this.address}: ${err.message}`)),
    );
    socket.on('close', () =>
      this.#fail(new ReplicaError('DISCONNECTED', `${this.address}: connection closed`)),
    );
    // One sweeper per connection instead of a timer per request: replies come in order of
    // submission often enough that checking the oldest pending request is sufficient.
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(50, Math.min(1000, this.#timeoutMs / 4)));
    this.#sweeper.unref();
  }

  /** Connects, authenticates and returns a ready client; rejects with a ReplicaError. */
  static async connect(options: ReplicaClientOptions): Promise<ReplicaClient> {
    const { host, port } = parseHostPort(options.address);
    const socket = connect({ host, port });
    const client = new ReplicaClient(socket, options);
    const connectTimeout = options.connectTimeoutMs ?? options.requestTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      const nonce = await Promise.race([
        new Promise<Buffer>((resolve, reject) => {
          client.#greeting = resolve;
          client.onClose(reject);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new ReplicaError('TIMEOUT', `${options.address}: no greeting within ${connectTimeout} ms`),
              ),
            connectTimeout,
          );
        }),
      ]);
      const proof = helloProof(options.secret, nonce, options.volume, options.engineId, options.epoch);
      const reply = await client.#call({
        op: 'HELLO',
        volume: options.volume,
        engineId: options.engineId,
        proof,
      });
      if (reply.op !== 'HELLO') throw new ReplicaError('PROTOCOL', 'HELLO answered with another opcode');
      client.size = Number(reply.size);
      client.dirty = reply.dirty;
      return client;
    } catch (err) {
      client.close();
      throw err instanceof ReplicaError ? err : new ReplicaError('PROTOCOL', String(err));
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.#failure !== undefined;
  }

  onClose(listener: (err: ReplicaError) => void): void {
    if (this.#failure !== undefined) listener(this.#failure);
    else this.#closeListeners.push(listener);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const reply = await this.#call({ op: 'READ', offset: BigInt(offset), length });
    return reply.op === 'READ' ? reply.data : Buffer.alloc(0);
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    // The frame as a literal (the generic #call spreads its body): this runs for every write.
    const requestId = this.#nextId++;
    const frame: Request = {
      kind: 'request',
      op: 'WRITE',
      requestId,
      epoch: this.epoch,
      offset: BigInt(offset),
      length: data.length,
      fua,
      data,
    };
    await this.#send(requestId, frame);
  }

  async flush(): Promise<void> {
    await this.#call({ op: 'FLUSH' });
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.#call({ op: 'TRIM', offset: BigInt(offset), length, fua });
  }

  async writeZeroes(offset: number, length: number, fua: boolean, noHole: boolean): Promise<void> {
    await this.#call({ op: 'WRITE_ZEROES', offset: BigInt(offset), length, fua, noHole });
  }

  /** A zero-length READ: proves the replica is reachable and still at this client's epoch. */
  async probe(): Promise<void> {
    await this.#call({ op: 'READ', offset: 0n, length: 0 });
  }

  async extents(offset: number, length: number): Promise<{ offset: number; length: number }[]> {
    const reply = await this.#call({ op: 'EXTENTS', offset: BigInt(offset), length });
    if (reply.op !== 'EXTENTS') return [];
    return reply.extents.map((e: Extent) => ({ offset: Number(e.offset), length: Number(e.length) }));
  }

  async hash(offset: number, length: number, blockSize: number): Promise<Buffer[]> {
    const reply = await this.#call({ op: 'HASH', offset: BigInt(offset), length, blockSize });
    return reply.op === 'HASH' ? reply.digests : [];
  }

  close(): void {
    this.#fail(new ReplicaError('DISCONNECTED', `${this.address}: closed by the engine`));
  }

  #call(body: RequestBody): Promise<OkReply> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const requestId = this.#nextId++;
    return this.#send(requestId, { ...body, kind: 'request', requestId, epoch: this.epoch } as Request);
  }

  #send(requestId: bigint, frame: Request): Promise<OkReply> {
    return new Promise<OkReply>((resolve, reject) => {
      this.#pending.set(requestId, { resolve, reject, deadline: Date.now() + this.#timeoutMs });
      this.#out.write(encodeFrameParts(frame));
    });
  }

  #onData(chunk: Buffer): void {
    for (const item of this.#decoder.push(chunk)) {
      if (item.type === 'fatal') {
        this.#fail(new ReplicaError('PROTOCOL', `${this.address}: ${item.reason}: ${item.message}`));
        return;
      }
      const frame = item.frame;
      if (frame.kind === 'greeting') {
        const greet = this.#greeting;
        this.#greeting = undefined;
        if (greet === undefined)
          this.#fail(new ReplicaError('PROTOCOL', `${this.address}: unexpected greeting`));
        else greet(frame.nonce);
        continue;
      }
      if (frame.kind !== 'reply') continue;
      this.#settle(frame);
    }
  }

  #settle(reply: Reply): void {
    const pending = this.#pending.get(reply.requestId);
    if (pending === undefined) {
      this.#fail(
        new ReplicaError('PROTOCOL', `${this.address}: reply to unknown request ${reply.requestId}`),
      );
      return;
    }
    this.#pending.delete(reply.requestId);
    if (reply.status === 'OK') pending.resolve(reply);
    else {
      const detail = reply.message === '' ? reply.status : `${reply.status}: ${reply.message}`;
      pending.reject(new ReplicaError(reply.status, `${this.address}: ${reply.op} ${detail}`, reply.epoch));
    }
  }

  #sweep(): void {
    const oldest = this.#pending.values().next();
    if (oldest.done === true) return;
    if (oldest.value.deadline <= Date.now()) {
      this.#fail(new ReplicaError('TIMEOUT', `${this.address}: no reply within ${this.#timeoutMs} ms`));
    }
  }

  #fail(err: ReplicaError): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    clearInterval(this.#sweeper);
    this.#socket.destroy();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
    for (const listener of this.#closeListeners.splice(0)) listener(err);
    if (err.status !== 'DISCONNECTED' || !err.message.endsWith('closed by the engine')) {
      this.#log.debug({ address: this.address, status: err.status }, 'replica connection ended');
    }
  }
}
