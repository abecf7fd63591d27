/**
 * In-memory replicas for unit tests of the engine. A FakeReplica keeps its data sparse (4 KiB
 * pages, so allocation and SEEK_DATA-style extents are exact) and fences like the real session:
 * a request stamped with an older epoch is refused with STALE_EPOCH, a newer epoch is adopted once
 * every mutation admitted under an older one has finished. A FakeLink is one engine's connection
 * to it (the ReplicaLink the engine uses). Faults (fail, hang, disconnect) are injected per
 * replica, optionally for one engine's links only; fake-network.ts connects engines to replicas.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReplicaLink } from '../../driver/engine/replica-set.js';
import { ReplicaError, type ReplicaFailure } from '../../driver/replica/client.js';
import { hashBlocks } from '../../driver/replica/protocol.js';

export const PAGE = 4096;

export type FakeOp = 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes' | 'probe' | 'extents' | 'hash';

export interface Fault {
  kind: 'fail' | 'hang' | 'disconnect';
  /** Operations it applies to (default: all). */
  ops?: FakeOp[];
  /** Only requests from this engine's links (default: any engine). */
  from?: string;
  /** For 'fail' (default IO_ERROR). */
  status?: ReplicaFailure;
  /** Requests it applies to before it is used up (default: unlimited). */
  count?: number;
}

const zeroDigests = new Map<string, Buffer[]>();

/** Digests of an all-zero block (holes are most of a sparse volume; hashing them is wasted time). */
function zeroDigest(length: number, blockSize: number): Buffer[] {
  const key = `${length}/${blockSize}`;
  let digests = zeroDigests.get(key);
  if (digests === undefined) {
    digests = hashBlocks(Buffer.alloc(length), blockSize);
    zeroDigests.set(key, digests);
  }
  return digests;
}

export class FakeReplica {
  readonly node: string;
  readonly size: number;
  epoch: bigint;
  dirty = false;
  /** Stopped (like a replica server that is down): links drop, connects are refused. */
  down = false;
  readonly pages = new Map<number, Buffer>();
  readonly faults: Fault[] = [];
  /** Requests that reached the replica, by operation (faulted ones not counted). */
  readonly served: Record<FakeOp, number> = {
    read: 0,
    write: 0,
    flush: 0,
    trim: 0,
    writeZeroes: 0,
    probe: 0,
    extents: 0,
    hash: 0,
  };
  /** Ranges read with a non-zero length, in order. */
  readonly reads: { offset: number; length: number; engine: string }[] = [];
  /** Milliseconds a request spends inside the replica before it takes effect (default: none). */
  latency: (op: FakeOp) => number = () => 0;
  readonly links = new Set<FakeLink>();
  readonly #inflight = new Map<Promise<unknown>, bigint>();
  #adoptChain: Promise<void> = Promise.resolve();

  constructor(node: string, size: number, epoch = 0n) {
    this.node = node;
    this.size = size;
    this.epoch = epoch;
  }

  /** The bytes of a range as stored (not through a link). */
  peek(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let at = offset; at < offset + length; ) {
      const page = Math.floor(at / PAGE);
      const within = at - page * PAGE;
      const n = Math.min(PAGE - within, offset + length - at);
      this.pages.get(page)?.copy(out, at - offset, within, within + n);
      at += n;
    }
    return out;
  }

  /** Changes stored bytes behind every engine's back (corruption, old contents). */
  poke(offset: number, data: Buffer): void {
    for (let at = offset; at < offset + data.length; ) {
      const page = Math.floor(at / PAGE);
      const within = at - page * PAGE;
      const n = Math.min(PAGE - within, offset + data.length - at);
      let stored = this.pages.get(page);
      if (stored === undefined) {
        stored = Buffer.alloc(PAGE);
        this.pages.set(page, stored);
      }
      data.copy(stored, within, at - offset, at - offset + n);
      at += n;
    }
  }

  /** Deallocates the pages wholly inside the range and zeroes the rest of it. */
  punch(offset: number, length: number): void {
    const end = offset + length;
    for (const page of [...this.pages.keys()]) {
      const start = page * PAGE;
      if (start >= offset && start + PAGE <= end) this.pages.delete(page);
    }
    const head = Math.min(end, Math.ceil(offset / PAGE) * PAGE);
    if (head > offset && this.pages.has(Math.floor(offset / PAGE)))
      this.poke(offset, Buffer.alloc(head - offset));
    const tail = Math.max(head, Math.floor(end / PAGE) * PAGE);
    if (end > tail && this.pages.has(Math.floor(tail / PAGE))) this.poke(tail, Buffer.alloc(end - tail));
  }

  allocatedBytes(): number {
    return this.pages.size * PAGE;
  }

  /** Allocated ranges inside [offset, offset+length), merged, page granular, clipped. */
  extentsOf(offset: number, length: number): { offset: number; length: number }[] {
    const out: { offset: number; length: number }[] = [];
    const first = Math.floor(offset / PAGE);
    const last = Math.ceil((offset + length) / PAGE);
    // Whichever is shorter: the range's pages, or the allocated ones sorted.
    const pages =
      last - first <= this.pages.size
        ? Array.from({ length: last - first }, (_, i) => first + i).filter((p) => this.pages.has(p))
        : [...this.pages.keys()].sort((a, b) => a - b);
    for (const page of pages) {
      const start = Math.max(offset, page * PAGE);
      const end = Math.min(offset + length, (page + 1) * PAGE);
      if (start >= end) continue;
      const last = out[out.length - 1];
      if (last !== undefined && last.offset + last.length === start) last.length += end - start;
      else out.push({ offset: start, length: end - start });
    }
    return out;
  }

  hashOf(offset: number, length: number, blockSize: number): Buffer[] {
    const digests: Buffer[] = [];
    for (let at = offset; at < offset + length; at += blockSize) {
      const n = Math.min(blockSize, offset + length - at);
      const empty = this.extentsOf(at, n).length === 0;
      digests.push(...(empty ? zeroDigest(n, blockSize) : hashBlocks(this.peek(at, n), blockSize)));
    }
    return digests;
  }

  /** The first fault matching a request, used up by it. */
  takeFault(op: FakeOp, engine: string): Fault | undefined {
    const i = this.faults.findIndex(
      (f) => (f.ops === undefined || f.ops.includes(op)) && (f.from === undefined || f.from === engine),
    );
    const fault = this.faults[i];
    if (fault === undefined) return undefined;
    if (fault.count !== undefined && --fault.count <= 0) this.faults.splice(i, 1);
    return fault;
  }

  stop(): void {
    this.down = true;
    for (const link of this.links) link.disconnect('replica stopped');
  }

  start(): void {
    this.down = false;
  }

  /** Admits a request stamped `epoch` (the session's admitEpoch). */
  async admit(epoch: bigint): Promise<void> {
    if (epoch > this.epoch) {
      const run = this.#adoptChain.then(async () => {
        for (;;) {
          if (epoch <= this.epoch) return;
          const older = [...this.#inflight].filter(([, e]) => e < epoch).map(([p]) => p);
          if (older.length === 0) {
            this.epoch = epoch;
            return;
          }
          await Promise.allSettled(older);
        }
      });
      this.#adoptChain = run.catch(() => undefined);
      await run;
    }
    if (epoch < this.epoch) throw this.stale(epoch);
  }

  stale(epoch: bigint): ReplicaError {
    return new ReplicaError(
      'STALE_EPOCH',
      `${this.node}: epoch ${epoch} is older than the replica's ${this.epoch}`,
      this.epoch,
    );
  }

  /** A mutation: admitted and registered in the same tick when its epoch is current. */
  mutate(epoch: bigint, op: FakeOp, apply: () => void): Promise<void> {
    const admitted = epoch > this.epoch ? this.admit(epoch) : undefined;
    const run = (): Promise<void> => {
      if (epoch < this.epoch) return Promise.reject(this.stale(epoch));
      this.served[op]++;
      const work = (async () => {
        await this.pause(op);
        apply();
        this.dirty = true;
      })();
      this.#inflight.set(work, epoch);
      return work.finally(() => this.#inflight.delete(work));
    };
    return admitted === undefined ? run() : admitted.then(run);
  }

  async pause(op: FakeOp): Promise<void> {
    const ms = this.latency(op);
    if (ms > 0) await sleep(ms);
    else await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** One engine's connection to a FakeReplica. */
export class FakeLink implements ReplicaLink {
  readonly address: string;
  readonly engine: string;
  readonly replica: FakeReplica;
  epoch: bigint;
  size: number;
  dirty: boolean;
  #failure: ReplicaError | undefined;
  readonly #pending = new Set<(err: ReplicaError) => void>();
  readonly #closeListeners: ((err: ReplicaError) => void)[] = [];
  readonly #timeoutMs: number | undefined;

  constructor(replica: FakeReplica, engine: string, epoch: bigint, timeoutMs?: number) {
    this.replica = replica;
    this.engine = engine;
    this.address = `fake://${replica.node}`;
    this.epoch = epoch;
    this.size = replica.size;
    this.dirty = replica.dirty;
    this.#timeoutMs = timeoutMs;
    replica.links.add(this);
  }

  get closed(): boolean {
    return this.#failure !== undefined;
  }

  onClose(listener: (err: ReplicaError) => void): void {
    if (this.#failure !== undefined) listener(this.#failure);
    else this.#closeListeners.push(listener);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.#request('read', async (epoch, r) => {
      await r.admit(epoch);
      r.served.read++;
      r.reads.push({ offset, length, engine: this.engine });
      await r.pause('read');
      return r.peek(offset, length);
    });
  }

  write(offset: number, data: Buffer, _fua: boolean): Promise<void> {
    const copy = Buffer.from(data);
    return this.#request('write', (epoch, r) => r.mutate(epoch, 'write', () => r.poke(offset, copy)));
  }

  flush(): Promise<void> {
    return this.#request('flush', async (epoch, r) => {
      await r.admit(epoch);
      r.served.flush++;
      await r.pause('flush');
    });
  }

  trim(offset: number, length: number, _fua: boolean): Promise<void> {
    return this.#request('trim', (epoch, r) => r.mutate(epoch, 'trim', () => r.punch(offset, length)));
  }

  writeZeroes(offset: number, length: number, _fua: boolean, noHole: boolean): Promise<void> {
    return this.#request('writeZeroes', (epoch, r) =>
      r.mutate(epoch, 'writeZeroes', () =>
        noHole ? r.poke(offset, Buffer.alloc(length)) : r.punch(offset, length),
      ),
    );
  }

  probe(): Promise<void> {
    return this.#request('probe', async (epoch, r) => {
      await r.admit(epoch);
      r.served.probe++;
    });
  }

  extents(offset: number, length: number): Promise<{ offset: number; length: number }[]> {
    return this.#request('extents', async (epoch, r) => {
      await r.admit(epoch);
      r.served.extents++;
      await r.pause('extents');
      return r.extentsOf(offset, length);
    });
  }

  hash(offset: number, length: number, blockSize: number): Promise<Buffer[]> {
    return this.#request('hash', async (epoch, r) => {
      await r.admit(epoch);
      r.served.hash++;
      await r.pause('hash');
      return r.hashOf(offset, length, blockSize);
    });
  }

  close(): void {
    this.#fail(new ReplicaError('DISCONNECTED', `${this.address}: closed by the engine`));
  }

  /** The connection drops (network cut, replica stopped): pending requests fail DISCONNECTED. */
  disconnect(why = 'connection lost'): void {
    this.#fail(new ReplicaError('DISCONNECTED', `${this.address}: ${why}`));
  }

  #fail(err: ReplicaError): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    this.replica.links.delete(this);
    for (const reject of [...this.#pending]) reject(err);
    this.#pending.clear();
    for (const listener of this.#closeListeners.splice(0)) listener(err);
  }

  /** Stamps the request with the link's epoch now (as the real client does when it sends). */
  #request<T>(op: FakeOp, run: (epoch: bigint, replica: FakeReplica) => Promise<T>): Promise<T> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const epoch = this.epoch;
    const fault = this.replica.takeFault(op, this.engine);
    if (fault?.kind === 'disconnect') {
      this.disconnect('disconnected by a fault');
      return Promise.reject(this.#failure);
    }
    let work: Promise<T>;
    if (fault?.kind === 'hang') work = new Promise<T>(() => undefined);
    else if (fault?.kind === 'fail') {
      const status = fault.status ?? 'IO_ERROR';
      work = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        throw new ReplicaError(status, `${this.address}: ${op} ${status} (injected)`, this.replica.epoch);
      });
    } else work = run(epoch, this.replica);
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settle = (): void => {
        clearTimeout(timer);
        this.#pending.delete(onFailure);
      };
      const onFailure = (err: ReplicaError): void => {
        settle();
        reject(err);
      };
      this.#pending.add(onFailure);
      if (this.#timeoutMs !== undefined) {
        // Like the real client: an unanswered request ends the whole connection.
        timer = setTimeout(
          () =>
            this.#fail(new ReplicaError('TIMEOUT', `${this.address}: no reply within ${this.#timeoutMs} ms`)),
          this.#timeoutMs,
        );
      }
      work.then(
        (value) => {
          if (this.#failure !== undefined) return; // already rejected with the connection
          settle();
          resolve(value);
        },
        (err: unknown) => {
          if (this.#failure !== undefined) return;
          settle();
          reject(err);
        },
      );
    });
  }
}
