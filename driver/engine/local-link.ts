/**
 * The link from an engine to the replica on its own node when both run in the node's
 * `tandem dataplane` process: the same rules as a TCP session (credential, epoch fencing, dirty
 * flag — replica/replica-ops.ts) as direct calls on the shared store, with no socket and no second
 * process. The benchmark profile showed every local I/O crossing two processes and a TCP loopback
 * as the main cost of a one-replica volume.
 *
 * Like a TCP link, a request that does not finish within the timeout fails the whole link, so a
 * hung local disk gets its replica fenced instead of hanging the volume.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { ReplicaError } from '../replica/client.js';
import { MAX_PAYLOAD } from '../replica/protocol.js';
import { admitEpoch, atEpoch, checkRange, failureOf, flushReplica, mutate } from '../replica/replica-ops.js';
import type { OpenVolume, VolumeRegistry } from '../replica/volume-registry.js';
import type { ReplicaLink } from './replica-set.js';

interface Pending {
  deadline: number;
  reject: (err: ReplicaError) => void;
}

export class LocalReplicaLink implements ReplicaLink {
  readonly address: string;
  epoch: bigint;
  readonly dirty: boolean;
  readonly #registry: VolumeRegistry;
  readonly #volume: string;
  readonly #open: OpenVolume;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #pending = new Set<Pending>();
  readonly #closeListeners: ((err: ReplicaError) => void)[] = [];
  readonly #sweeper: NodeJS.Timeout;
  #failure: ReplicaError | undefined;

  private constructor(
    registry: VolumeRegistry,
    volume: string,
    open: OpenVolume,
    epoch: bigint,
    timeoutMs: number,
    log: Logger,
  ) {
    this.#registry = registry;
    this.#volume = volume;
    this.#open = open;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
    this.address = `local:${registry.dataDir}`;
    this.epoch = epoch;
    this.dirty = open.store.dirty;
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(50, Math.min(1000, timeoutMs / 4)));
    this.#sweeper.unref();
  }

  /** Opens the local replica as a HELLO would: credential, then epoch. Rejects with ReplicaError. */
  static async open(options: {
    registry: VolumeRegistry;
    volume: string;
    secret: Buffer;
    epoch: bigint;
    requestTimeoutMs: number;
    log: Logger;
  }): Promise<LocalReplicaLink> {
    let open: OpenVolume;
    try {
      open = await options.registry.acquire(options.volume);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new ReplicaError('UNKNOWN_VOLUME', `no local replica of volume ${options.volume}`);
      }
      throw new ReplicaError('IO_ERROR', `opening the local replica: ${(err as Error).message}`);
    }
    const stored = open.store.secret;
    if (stored.length !== options.secret.length || !timingSafeEqual(stored, options.secret)) {
      await options.registry.release(options.volume, open);
      throw new ReplicaError('AUTH_FAILED', 'the credential does not match the local replica');
    }
    try {
      await admitEpoch(open, options.epoch, options.log);
    } catch (err) {
      await options.registry.release(options.volume, open);
      const failure = failureOf(err);
      throw new ReplicaError(failure.status, `local replica: ${failure.message}`, BigInt(open.store.epoch));
    }
    return new LocalReplicaLink(
      options.registry,
      options.volume,
      open,
      options.epoch,
      options.requestTimeoutMs,
      options.log,
    );
  }

  /** The replica's size now (a grow through the registry shows at once; a TCP link's is HELLO's). */
  get size(): number {
    return this.#open.store.sizeBytes;
  }

  get closed(): boolean {
    return this.#failure !== undefined;
  }

  onClose(listener: (err: ReplicaError) => void): void {
    if (this.#failure !== undefined) listener(this.#failure);
    else this.#closeListeners.push(listener);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.#call(async (open, epoch) => {
      if (!atEpoch(open, epoch)) await admitEpoch(open, epoch, this.#log);
      const at = checkRange(open, offset, length);
      if (length > MAX_PAYLOAD) throw new ReplicaError('TOO_LARGE', `READ over ${MAX_PAYLOAD} bytes`);
      return length === 0 ? Buffer.alloc(0) : open.store.read(at, length);
    });
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.#mutation(offset, data.length, fua, (open, at) => open.store.write(at, data));
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.#mutation(offset, length, fua, (open, at) => open.store.trim(at, length));
  }

  writeZeroes(offset: number, length: number, fua: boolean, noHole: boolean): Promise<void> {
    return this.#mutation(offset, length, fua, (open, at) => open.store.writeZeroes(at, length, noHole));
  }

  flush(): Promise<void> {
    return this.#call(async (open, epoch) => {
      if (!atEpoch(open, epoch)) await admitEpoch(open, epoch, this.#log);
      await flushReplica(open);
    });
  }

  async probe(): Promise<void> {
    await this.read(0, 0);
  }

  extents(offset: number, length: number): Promise<{ offset: number; length: number }[]> {
    return this.#call(async (open, epoch) => {
      if (!atEpoch(open, epoch)) await admitEpoch(open, epoch, this.#log);
      return open.store.extents(checkRange(open, offset, length), length);
    });
  }

  hash(offset: number, length: number, blockSize: number): Promise<Buffer[]> {
    return this.#call(async (open, epoch) => {
      if (!atEpoch(open, epoch)) await admitEpoch(open, epoch, this.#log);
      return open.store.hash(checkRange(open, offset, length), length, blockSize);
    });
  }

  close(): void {
    this.#fail(new ReplicaError('DISCONNECTED', `${this.address}: closed by the engine`));
  }

  #mutation(
    offset: number,
    length: number,
    fua: boolean,
    op: (open: OpenVolume, at: number) => Promise<void>,
  ): Promise<void> {
    return this.#call(async (open, epoch) => {
      if (!atEpoch(open, epoch)) await admitEpoch(open, epoch, this.#log);
      const at = checkRange(open, offset, length);
      await mutate(open, epoch, fua, () => op(open, at));
    });
  }

  /** Runs one request with the link's timeout; failures become ReplicaErrors like a TCP link's. */
  #call<T>(work: (open: OpenVolume, epoch: bigint) => Promise<T>): Promise<T> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { deadline: Date.now() + this.#timeoutMs, reject };
      this.#pending.add(pending);
      work(this.#open, this.epoch).then(
        (value) => {
          if (!this.#pending.delete(pending)) return; // the link failed meanwhile
          resolve(value);
        },
        (err: unknown) => {
          if (!this.#pending.delete(pending)) return;
          if (err instanceof ReplicaError) return reject(err);
          const failure = failureOf(err);
          reject(
            new ReplicaError(
              failure.status,
              `${this.address}: ${failure.message}`,
              BigInt(this.#open.store.epoch),
            ),
          );
        },
      );
    });
  }

  #sweep(): void {
    const now = Date.now();
    for (const p of this.#pending) {
      if (p.deadline <= now) {
        this.#fail(new ReplicaError('TIMEOUT', `${this.address}: no answer within ${this.#timeoutMs} ms`));
        return;
      }
    }
  }

  #fail(err: ReplicaError): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    clearInterval(this.#sweeper);
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
    for (const listener of this.#closeListeners.splice(0)) listener(err);
    // The store is shared with the replica server's sessions; the registry closes it with the last user.
    void Promise.allSettled([...this.#open.inflight.keys()]).then(() =>
      this.#registry.release(this.#volume, this.#open),
    );
  }
}
