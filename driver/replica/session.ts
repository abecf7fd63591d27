/**
 * One engine connection to the replica server: greeting with a fresh nonce, then HELLO (volume,
 * epoch, engine id, HMAC proof of the volume secret), then requests answered concurrently and
 * possibly out of order (every reply carries its request id).
 *
 * Fencing rule: a request stamped with an epoch older than the replica's is refused with
 * STALE_EPOCH; one stamped with a newer epoch first persists the new epoch (after every mutation
 * admitted under an older epoch has finished), so once a replica has answered anything at epoch
 * e+1, no write stamped e or older will ever change its data.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { BatchedWriter } from '../../lib/batched-writer.js';
import { ioBuffers } from '../../lib/io-buffers.js';
import type { ReplicaServerMetrics } from './metrics.js';
import {
  digestCount,
  encodeFrame,
  encodeFrameParts,
  FrameDecoder,
  type HelloRequest,
  MAX_PAYLOAD,
  newNonce,
  type Reply,
  type Request,
  verifyHello,
} from './protocol.js';
import {
  admitEpoch,
  atEpoch,
  checkRange,
  failureOf,
  flushReplica,
  mutate,
  RequestFailure,
} from './replica-ops.js';
import type { OpenVolume, VolumeRegistry } from './volume-registry.js';

/** Stop reading from a connection with this many requests in progress (backpressure). */
const MAX_INFLIGHT = 256;
const EXTENTS_MAX = Math.floor(MAX_PAYLOAD / 16);
const EMPTY = Buffer.alloc(0);

function okReply(
  requestId: bigint,
  op: 'WRITE' | 'FLUSH',
  offset: bigint,
  length: number,
  epoch: bigint,
): Reply {
  return { kind: 'reply', requestId, offset, length, op, status: 'OK', epoch };
}

export class ReplicaSession {
  readonly #socket: Socket;
  readonly #out: BatchedWriter;
  readonly #registry: VolumeRegistry;
  readonly #metrics: ReplicaServerMetrics;
  readonly #log: Logger;
  readonly #nonce = newNonce();
  readonly #decoder = new FrameDecoder({ accept: 'requests' });
  #volume: { name: string; open: OpenVolume; engineId: string } | undefined;
  #helloPending = false;
  #inflight = 0;
  #closed = false;

  constructor(socket: Socket, registry: VolumeRegistry, metrics: ReplicaServerMetrics, log: Logger) {
    this.#socket = socket;
    this.#out = new BatchedWriter(socket);
    this.#registry = registry;
    this.#metrics = metrics;
    this.#log = log.child({ peer: `${socket.remoteAddress}:${socket.remotePort}` });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#log.debug({ err }, 'connection error'));
    socket.on('close', () => this.#onClose());
    socket.write(encodeFrame({ kind: 'greeting', nonce: this.#nonce }));
  }

  #onData(chunk: Buffer): void {
    for (const item of this.#decoder.push(chunk)) {
      if (item.type === 'fatal') {
        this.#metrics.fatalFrames.inc({ reason: item.reason });
        this.#log.warn(
          { reason: item.reason, detail: item.message },
          'malformed frame; closing the connection',
        );
        this.#socket.destroy();
        return;
      }
      if (item.frame.kind !== 'request') continue; // the decoder accepts requests only
      this.#dispatch(item.frame);
    }
  }

  #dispatch(request: Request): void {
    this.#inflight += 1;
    if (this.#inflight >= MAX_INFLIGHT) this.#socket.pause();
    const started = performance.now();
    // Two callbacks instead of a catch/then/finally chain: three promises fewer per request.
    this.#handle(request).then(
      (reply) => this.#finish(request, reply, started),
      (err: unknown) => this.#finish(request, this.#errorReply(request, err), started),
    );
  }

  #finish(request: Request, reply: Reply, started: number): void {
    try {
      this.#send(reply);
      const seconds = (performance.now() - started) / 1000;
      const volume = this.#volume?.name ?? '';
      this.#metrics.requests.inc({ volume, op: request.op, status: reply.status });
      this.#metrics.latency.observe({ op: request.op }, seconds);
      if (reply.status === 'OK' && (request.op === 'READ' || request.op === 'WRITE')) {
        this.#metrics.bytes.inc({ volume, op: request.op }, request.length);
      }
    } finally {
      this.#inflight -= 1;
      if (this.#inflight < MAX_INFLIGHT / 2 && !this.#closed) this.#socket.resume();
    }
  }

  #send(reply: Reply): void {
    if (this.#closed) return;
    const parts = encodeFrameParts(reply);
    // A READ's data is a pooled buffer of the store: back to the pool once the socket has it.
    if (reply.op === 'READ' && reply.status === 'OK')
      this.#out.write(parts, () => ioBuffers.release(reply.data));
    else this.#out.write(parts);
  }

  async #handle(request: Request): Promise<Reply> {
    if (request.op === 'HELLO') return this.#hello(request);
    const session = this.#volume;
    if (session === undefined) throw new RequestFailure('AUTH_REQUIRED', 'send HELLO first');
    const { open } = session;
    if (!atEpoch(open, request.epoch)) await admitEpoch(open, request.epoch, this.#log);
    const { requestId } = request;
    // Replies of the I/O operations are literals of one shape each: object spreads on this path
    // made V8 create new hidden classes per request (Factory::NewMap in the replica's profile).
    if (request.op === 'WRITE') {
      const offset = checkRange(open, request.offset, request.length);
      await mutate(open, request.epoch, request.fua, () => open.store.write(offset, request.data));
      ioBuffers.release(request.data); // written: a payload the decoder gathered goes back to the pool
      return okReply(requestId, 'WRITE', request.offset, request.length, this.#epoch(open));
    }
    if (request.op === 'FLUSH') {
      await flushReplica(open);
      return okReply(requestId, 'FLUSH', 0n, 0, this.#epoch(open));
    }
    const base = { kind: 'reply', requestId, offset: 0n, length: 0 } as const;
    const offset = checkRange(open, request.offset, request.length);
    const ranged = { ...base, offset: request.offset, length: request.length };
    switch (request.op) {
      case 'READ': {
        if (request.length > MAX_PAYLOAD)
          throw new RequestFailure('TOO_LARGE', `READ over ${MAX_PAYLOAD} bytes`);
        // A zero-length READ is an engine's epoch probe: no I/O.
        const data = request.length === 0 ? EMPTY : await open.store.read(offset, request.length);
        const epoch = this.#epoch(open);
        return {
          kind: 'reply',
          requestId,
          offset: request.offset,
          length: request.length,
          op: 'READ',
          status: 'OK',
          epoch,
          data,
        };
      }
      case 'TRIM':
        await mutate(open, request.epoch, request.fua, () => open.store.trim(offset, request.length));
        return { ...ranged, op: 'TRIM', status: 'OK', epoch: this.#epoch(open) };
      case 'WRITE_ZEROES':
        await mutate(open, request.epoch, request.fua, () =>
          open.store.writeZeroes(offset, request.length, request.noHole),
        );
        return { ...ranged, op: 'WRITE_ZEROES', status: 'OK', epoch: this.#epoch(open) };
      case 'EXTENTS': {
        const found = await open.store.extents(offset, request.length);
        if (found.length > EXTENTS_MAX)
          throw new RequestFailure('TOO_LARGE', 'too many extents; ask for a shorter range');
        const extents = found.map((e) => ({ offset: BigInt(e.offset), length: BigInt(e.length) }));
        return { ...ranged, op: 'EXTENTS', status: 'OK', epoch: this.#epoch(open), extents };
      }
      case 'HASH': {
        if (4 + digestCount(request.length, request.blockSize) * 32 > MAX_PAYLOAD) {
          throw new RequestFailure('TOO_LARGE', 'too many digests; ask for a shorter range or larger blocks');
        }
        const digests = await open.store.hash(offset, request.length, request.blockSize);
        return {
          ...ranged,
          op: 'HASH',
          status: 'OK',
          epoch: this.#epoch(open),
          blockSize: request.blockSize,
          digests,
        };
      }
    }
  }

  async #hello(request: HelloRequest): Promise<Reply> {
    if (this.#volume !== undefined || this.#helloPending) {
      throw new RequestFailure('BAD_REQUEST', 'this connection already sent HELLO');
    }
    this.#helloPending = true;
    try {
      let open: OpenVolume;
      try {
        open = await this.#registry.acquire(request.volume);
      } catch (err) {
        this.#metrics.refusedHellos.inc({ reason: 'unknown-volume' });
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new RequestFailure('UNKNOWN_VOLUME', `no replica of volume ${request.volume} on this node`);
        }
        throw err;
      }
      const { store } = open;
      const proofOk = verifyHello(
        store.secret,
        this.#nonce,
        request.volume,
        request.engineId,
        request.epoch,
        request.proof,
      );
      if (!proofOk) {
        await this.#registry.release(request.volume, open);
        this.#metrics.refusedHellos.inc({ reason: 'bad-credential' });
        this.#log.warn(
          { volume: request.volume, engineId: request.engineId },
          'HELLO with a wrong credential',
        );
        // Nothing more is read from a peer that failed to prove the secret.
        setImmediate(() => this.#socket.end());
        throw new RequestFailure('AUTH_FAILED', 'the proof does not match the volume credential');
      }
      if (request.epoch < BigInt(store.epoch)) {
        await this.#registry.release(request.volume, open);
        this.#metrics.refusedHellos.inc({ reason: 'stale-epoch' });
        // The proof checked out, so the peer may learn the epoch it has to catch up with.
        throw new RequestFailure(
          'STALE_EPOCH',
          `epoch ${request.epoch} is older than the replica's ${store.epoch}`,
          BigInt(store.epoch),
        );
      }
      if (this.#closed) {
        await this.#registry.release(request.volume, open);
        throw new RequestFailure('BAD_REQUEST', 'connection closed');
      }
      this.#volume = { name: request.volume, open, engineId: request.engineId };
      this.#metrics.sessions.inc({ volume: request.volume });
      this.#log.info(
        { volume: request.volume, engineId: request.engineId, epoch: String(request.epoch) },
        'session open',
      );
      await admitEpoch(open, request.epoch, this.#log);
      return {
        kind: 'reply',
        op: 'HELLO',
        status: 'OK',
        requestId: request.requestId,
        epoch: this.#epoch(open),
        offset: 0n,
        length: 0,
        size: BigInt(store.sizeBytes),
        dirty: store.dirty,
      };
    } finally {
      this.#helloPending = false;
    }
  }

  #epoch(open: OpenVolume): bigint {
    return BigInt(open.store.epoch);
  }

  #errorReply(request: Request, err: unknown): Reply {
    const base = {
      kind: 'reply',
      op: request.op,
      requestId: request.requestId,
      epoch:
        err instanceof RequestFailure && err.epoch !== undefined
          ? err.epoch
          : this.#volume === undefined
            ? 0n
            : this.#epoch(this.#volume.open),
      offset: 'offset' in request ? request.offset : 0n,
      length: 'length' in request ? request.length : 0,
    } as const;
    const failure = failureOf(err);
    if (failure.status === 'IO_ERROR' || failure.status === 'NO_SPACE') {
      this.#log.error({ err, op: request.op, volume: this.#volume?.name }, 'replica I/O failed');
    }
    return { ...base, status: failure.status, message: failure.message };
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const session = this.#volume;
    if (session === undefined) return;
    this.#metrics.sessions.dec({ volume: session.name });
    this.#log.info({ volume: session.name, engineId: session.engineId }, 'session closed');
    // Let in-flight mutations finish before the flags are judged.
    void Promise.allSettled([...session.open.inflight.keys()]).then(() =>
      this.#registry.release(session.name, session.open),
    );
  }
}
