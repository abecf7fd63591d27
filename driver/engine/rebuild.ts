/**
 * Rebuild: the only way a fenced replica comes back. The engine checks its Failed replicas every
 * few seconds; one that answers is
 *   1. trimmed past the volume's size (its old contents are of an older epoch),
 *   2. joined write-only in a new epoch (it receives every write from then on),
 *   3. made equal to a readable replica window by window under the range lock (no write to the
 *      window can interleave): the source's data extents copied, the holes between them trimmed,
 *   4. flushed and made readable in a new epoch.
 * A rebuild does not start, and a running one stops, while two engines share the volume.
 */
import type { Logger } from 'pino';
import type { RangeLock } from '../replica/range-lock.js';
import type { ReplicaMember } from './membership.js';
import { type Piece, pieces, REQUEST_RANGE_STEP } from './ranges.js';
import type { ReplicaLink, ReplicaSet } from './replica-set.js';

export interface RebuildOptions {
  /** Bytes copied per locked chunk. */
  chunkBytes?: number;
  /** Chunks in flight at once. */
  parallel?: number;
  /** How often Failed replicas are retried. */
  checkIntervalMs?: number;
  onProgress?: (node: string, copiedBytes: number, totalBytes: number) => void;
  onFinished?: (
    node: string,
    outcome: 'done' | 'failed' | 'aborted',
    copiedBytes: number,
    seconds: number,
  ) => void;
}

const PROGRESS_RECORD_MS = 5000;

class RebuildAborted extends Error {}

export class Rebuilder {
  readonly #set: ReplicaSet;
  readonly #lock: RangeLock;
  readonly #log: Logger;
  readonly #options: Required<Omit<RebuildOptions, 'onProgress' | 'onFinished'>> & RebuildOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(set: ReplicaSet, lock: RangeLock, log: Logger, options: RebuildOptions = {}) {
    this.#set = set;
    this.#lock = lock;
    this.#log = log;
    this.#options = { chunkBytes: 4 * 1024 * 1024, parallel: 4, checkIntervalMs: 3000, ...options };
  }

  start(): void {
    this.#timer = setInterval(() => void this.runOnce(), this.#options.checkIntervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#running;
  }

  get running(): boolean {
    return this.#running !== undefined;
  }

  /** Rebuilds the first Failed replica that answers; resolves when that attempt ends. */
  runOnce(): Promise<void> {
    if (this.#running !== undefined || this.#stopped || this.#set.superseded)
      return this.#running ?? Promise.resolve();
    const degraded = this.#set.record.replicas.some((r) => r.mode === 'Failed');
    if (!degraded && !this.#set.shared) return Promise.resolve();
    this.#running = (async () => {
      // An idle engine learns of record changes (the peer engine leaving, a replica fenced by
      // it) only here: reads and writes are what normally bring STALE_EPOCH news.
      await this.#set.refresh().catch((err: unknown) => this.#log.debug({ err }, 'record refresh failed'));
      if (this.#stopped || this.#set.superseded || this.#set.shared) return;
      const candidates = this.#set.record.replicas.filter((r) => r.mode === 'Failed');
      if (candidates.length > 0) await this.#rebuildFirstReachable(candidates);
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** A Failed replica on a dead node must not keep the others from being rebuilt. */
  async #rebuildFirstReachable(candidates: ReplicaMember[]): Promise<void> {
    for (const member of candidates) {
      let link: ReplicaLink;
      try {
        link = await this.#set.connectTo(member);
      } catch (err) {
        this.#log.debug(
          { node: member.node, err: (err as Error).message },
          'failed replica still unreachable',
        );
        continue;
      }
      await this.#rebuild(member, link);
      return;
    }
  }

  async #rebuild(member: ReplicaMember, link: ReplicaLink): Promise<void> {
    // Larger is fine: a replica grown ahead of the engine (expansion); the engine uses the start.
    const big = () => link.size >= this.#set.sizeBytes;
    if (!big()) {
      this.#log.warn(
        { node: member.node, replicaSize: link.size, size: this.#set.sizeBytes },
        'replica is smaller than the volume (not grown yet?); not rebuilding it',
      );
      link.close();
      return;
    }
    const started = process.hrtime.bigint();
    let copied = 0;
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      // Past the engine's size, nothing of an older epoch may stay; below it, the copy trims
      // every range the source holds no data in (#copy), so the old contents go either way.
      const tail = this.#set.sizeBytes;
      for (const piece of pieces(tail, link.size - tail, REQUEST_RANGE_STEP))
        await link.trim(piece.offset, piece.length, false);
      const joined = await this.#set.changeReplicas(
        (r) =>
          // Checked in the same exclusive step as ReplicaSet.resize(): a resize that ran first
          // must not let in a replica smaller than what writes may now reach.
          big()
            ? {
                ...r,
                epoch: r.epoch + 1,
                replicas: r.replicas.map((x) =>
                  x.node === member.node ? { ...x, mode: 'WriteOnly' as const, rebuildProgress: 0 } : x,
                ),
              }
            : undefined,
        new Map([[member.node, link]]),
      );
      if (!joined)
        throw new RebuildAborted(
          big() ? 'the volume record changed before the replica joined' : 'the volume grew past the replica',
        );
      this.#log.info({ node: member.node, epoch: this.#set.record.epoch }, 'rebuild started');
      // The size when it joined: writes past it (after a later resize) reach the replica directly.
      copied = await this.#copy(member.node, link, this.#set.sizeBytes);
      await link.flush();
      this.#checkStillRebuilding(member.node, link);
      const promoted = await this.#set.changeReplicas((r) =>
        r.replicas.some((x) => x.node === member.node && x.mode === 'WriteOnly')
          ? {
              ...r,
              epoch: r.epoch + 1,
              replicas: r.replicas.map((x) =>
                x.node === member.node ? { ...x, mode: 'ReadWrite' as const, rebuildProgress: undefined } : x,
              ),
            }
          : undefined,
      );
      if (!promoted) throw new RebuildAborted('the volume record changed before the replica became readable');
      this.#log.info({ node: member.node, copiedBytes: copied, seconds: seconds() }, 'rebuild finished');
      this.#options.onFinished?.(member.node, 'done', copied, seconds());
    } catch (err) {
      const aborted = err instanceof RebuildAborted;
      this.#log.warn(
        { node: member.node, err: (err as Error).message },
        aborted ? 'rebuild stopped' : 'rebuild failed',
      );
      this.#options.onFinished?.(member.node, aborted ? 'aborted' : 'failed', copied, seconds());
      // A half-filled replica must not stay in the write set: fence it (it is retried later). The
      // record is read again first: when another engine moved it (a join), fencing against the
      // old epoch would be a no-op and leave the replica WriteOnly, which nobody rebuilds.
      if (this.#set.linkOf(member.node) === link)
        await this.#set.recover([link], true).catch(() => undefined);
      else link.close();
    }
  }

  /**
   * Makes [0, size) of the target equal to a readable replica, window by window, each under the
   * range lock: the source's extents are read again inside the lock (a write may have filled a
   * hole since the rebuild began), data is copied and the holes are trimmed on the target.
   * Trimming holes instead of wiping the whole replica first leaves the blocks the copy overwrites
   * allocated: rewriting them is several times cheaper than allocating them again (a returning
   * replica keeps its file; docs/performance.md, rebuild). Returns the data bytes copied.
   */
  async #copy(node: string, target: ReplicaLink, size: number): Promise<number> {
    const source = this.#source();
    let total = 0;
    for (const window of pieces(0, size, REQUEST_RANGE_STEP))
      for (const e of await source.extents(window.offset, window.length)) total += e.length;
    const windows = [...pieces(0, size, this.#options.chunkBytes)];
    let copied = 0;
    let next = 0;
    let lastRecord = Date.now();
    const worker = async (): Promise<void> => {
      while (next < windows.length) {
        const window = windows[next++] as Piece;
        this.#checkStillRebuilding(node, target);
        const release = await this.#lock.acquire(window.offset, window.length);
        let bytes: number;
        try {
          bytes = await this.#copyWindow(window, target);
        } finally {
          release();
        }
        copied += bytes; // after the await: `copied += await ...` would read `copied` before it
        this.#options.onProgress?.(node, Math.min(copied, total), total);
        if (Date.now() - lastRecord > PROGRESS_RECORD_MS) {
          lastRecord = Date.now();
          const progress = Math.min(1, Math.round((copied / Math.max(1, total)) * 1000) / 1000);
          void this.#set.noteProgress(node, progress).catch(() => undefined);
        }
      }
    };
    await Promise.all(Array.from({ length: this.#options.parallel }, worker));
    return copied;
  }

  /** One locked window: data extents copied, the gaps between them trimmed; returns bytes copied. */
  async #copyWindow(window: Piece, target: ReplicaLink): Promise<number> {
    const from = this.#source();
    // A failing source is fenced and the rebuild stops; a failing target fails the rebuild.
    const fromSource = async <T>(call: () => Promise<T>): Promise<T> => {
      try {
        return await call();
      } catch (err) {
        await this.#set.recover([from], false);
        throw new RebuildAborted(`source replica failed: ${(err as Error).message}`);
      }
    };
    let copied = 0;
    let at = window.offset;
    const end = window.offset + window.length;
    for (const e of await fromSource(() => from.extents(window.offset, window.length))) {
      if (e.offset > at) await target.trim(at, e.offset - at, false);
      const data = await fromSource(() => from.read(e.offset, e.length));
      await target.write(e.offset, data, false);
      copied += e.length;
      at = e.offset + e.length;
    }
    if (at < end) await target.trim(at, end - at, false);
    return copied;
  }

  #source(): ReplicaLink {
    const source = this.#set.readable()[0];
    if (source === undefined) throw new RebuildAborted('no readable replica to copy from');
    return source.link;
  }

  #checkStillRebuilding(node: string, link: ReplicaLink): void {
    if (this.#stopped) throw new RebuildAborted('the engine is stopping');
    if (this.#set.superseded) throw new RebuildAborted('the engine no longer serves the volume');
    if (this.#set.shared) throw new RebuildAborted('a second engine attached (live migration)');
    const member = this.#set.record.replicas.find((r) => r.node === node);
    if (member?.mode !== 'WriteOnly' || this.#set.linkOf(node) !== link || link.closed) {
      throw new RebuildAborted('the replica left the write set');
    }
  }
}
