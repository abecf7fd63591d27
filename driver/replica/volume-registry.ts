/**
 * The replica server's view of the replicas on its node: each volume's store is opened once and
 * shared by every session (engine connection) of that volume. The registry also keeps the facts
 * the protocol needs per volume: the epoch (in the store's metadata, persisted before any request
 * stamped with a newer epoch runs), whether writes happened since the last clean close (the
 * replica's `dirty` flag), and how many sessions are open.
 */
import type { Logger } from 'pino';
import type { FsUtil } from './fsutil.js';
import { ReplicaStore } from './store.js';

export interface OpenVolume {
  readonly store: ReplicaStore;
  sessions: number;
  /** Mutating requests (write, trim, write-zeroes) started and completed, counted from open. */
  startedMutations: number;
  completedMutations: number;
  /** completedMutations as it was when the last successful FLUSH began: what that FLUSH covered. */
  flushedMutations: number;
  /** Mutations in progress, with the epoch they were admitted under (an epoch change waits for older ones). */
  inflight: Map<Promise<unknown>, bigint>;
  /** Serializes epoch/dirty metadata updates so they persist in order. */
  metadataChain: Promise<void>;
}

export class VolumeRegistry {
  readonly #dataDir: string;
  readonly #fsutil: FsUtil | undefined;
  readonly #log: Logger;
  readonly #open = new Map<string, Promise<OpenVolume>>();

  constructor(dataDir: string, log: Logger, fsutil?: FsUtil) {
    this.#dataDir = dataDir;
    this.#log = log;
    this.#fsutil = fsutil;
  }

  get dataDir(): string {
    return this.#dataDir;
  }

  /** Opens (or shares) a volume's store; rejects with code ENOENT when the replica does not exist. */
  acquire(volume: string): Promise<OpenVolume> {
    let entry = this.#open.get(volume);
    if (entry === undefined) {
      const opening: Promise<OpenVolume> = ReplicaStore.open(this.#dataDir, volume, this.#fsutil).then(
        (store) => ({
          store,
          sessions: 0,
          startedMutations: 0,
          completedMutations: 0,
          flushedMutations: 0,
          inflight: new Map(),
          metadataChain: Promise.resolve(),
        }),
      );
      this.#open.set(volume, opening);
      // A failed open is not cached: the replica may be created a moment later.
      opening.catch(() => this.#open.delete(volume));
      entry = opening;
    }
    return entry.then((open) => {
      open.sessions += 1;
      return open;
    });
  }

  /**
   * Grows the replica of `volume` to `sizeBytes` and resolves with its size afterwards. When
   * sessions have it open, they see the new size at once (range checks and HELLO replies read it
   * from the shared store); otherwise it is opened just for this. Rejects with code ENOENT when
   * there is no replica, EINVAL when `sizeBytes` is smaller than it (volumes never shrink).
   */
  async grow(volume: string, sizeBytes: number): Promise<number> {
    const open = await this.acquire(volume);
    try {
      await open.store.grow(sizeBytes);
      return open.store.sizeBytes;
    } finally {
      // Not a session that wrote or flushed anything: it must not judge the dirty flag.
      await this.#release(volume, open, false);
    }
  }

  /** A session of `volume` ended; the last one closes the store (clean if everything was flushed). */
  release(volume: string, open: OpenVolume): Promise<void> {
    return this.#release(volume, open, true);
  }

  async #release(volume: string, open: OpenVolume, judgeClean: boolean): Promise<void> {
    open.sessions -= 1;
    if (open.sessions > 0) return;
    if (judgeClean && open.flushedMutations === open.startedMutations && open.store.dirty) {
      await updateMetadata(open, (store) => store.setDirty(false)).catch((err: unknown) =>
        this.#log.warn({ err, volume }, 'could not mark the replica clean'),
      );
    }
    if (open.sessions > 0) return; // a new session arrived while the flag was being written
    this.#open.delete(volume);
    await open.store
      .close()
      .catch((err: unknown) => this.#log.warn({ err, volume }, 'closing the replica failed'));
  }

  async closeAll(): Promise<void> {
    const all = [...this.#open.values()];
    this.#open.clear();
    await Promise.allSettled(all.map(async (p) => (await p).store.close()));
  }
}

/** Runs a metadata update after every earlier one of the same volume. */
export function updateMetadata(
  open: OpenVolume,
  update: (store: ReplicaStore) => Promise<void>,
): Promise<void> {
  const next = open.metadataChain.then(() => update(open.store));
  open.metadataChain = next.catch(() => undefined);
  return next;
}
