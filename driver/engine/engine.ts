/**
 * The engine's I/O paths: the BlockDevice behind the NBD server. Every mutation goes to every
 * replica the volume currently writes to and is acknowledged only when all of them hold it —
 * directly, or because the replicas that failed were fenced first (ReplicaSet.recover). Reads come
 * from one readable replica, the local one first. Overlapping mutations are ordered by a range
 * lock, so concurrent writes to one block reach every replica in the same order.
 *
 * While two engines share the volume (live migration), a read is also validated: every other
 * replica is probed at the engine's epoch in parallel with the read. If the peer engine had
 * fenced the replica we read from, it pushed its new epoch to the other replicas before it
 * acknowledged anything the fenced replica lacks, so a probe answers STALE_EPOCH and the read is
 * retried on the new membership.
 */
import type { Logger } from 'pino';
import { type BlockDevice, NbdIoError } from '../nbd/device.js';
import { ReplicaError } from '../replica/client.js';
import { RangeLock } from '../replica/range-lock.js';
import {
  isStale,
  NoReplicaError,
  type ReplicaLink,
  type ReplicaSet,
  SupersededError,
} from './replica-set.js';

/** Rounds of (send, recover) for one operation before it fails with EIO. */
const MAX_ATTEMPTS = 8;

export class Engine implements BlockDevice {
  readonly volume: string;
  readonly lock: RangeLock;
  readonly #set: ReplicaSet;
  readonly #log: Logger;

  constructor(options: { volume: string; set: ReplicaSet; log: Logger; lock?: RangeLock }) {
    this.volume = options.volume;
    this.#set = options.set;
    this.#log = options.log;
    this.lock = options.lock ?? new RangeLock();
  }

  get set(): ReplicaSet {
    return this.#set;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    try {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const readable = this.#usable().readable();
        const chosen = readable[0];
        if (chosen === undefined) {
          // No open link at all (every replica was unreachable): try to connect again first.
          if (attempt === 0) {
            await this.#set.refresh().catch(() => undefined);
            continue;
          }
          throw new NoReplicaError('no readable replica');
        }
        if (!this.#set.shared) {
          // One engine: nothing to validate against, so no probes and no settled-array bookkeeping.
          try {
            return await chosen.link.read(offset, length);
          } catch (err) {
            const stale = isStale(err);
            await this.#set.recover(stale ? [] : [chosen.link], stale);
            continue;
          }
        }
        const others = this.#set.shared ? this.#set.writable().filter((t) => t.link !== chosen.link) : [];
        const [data, ...probes] = await Promise.allSettled([
          chosen.link.read(offset, length),
          ...others.map((t) => t.link.probe()),
        ]);
        const links = [chosen.link, ...others.map((t) => t.link)];
        const outcome = classify([data, ...probes], links);
        if (outcome.failed.length === 0 && !outcome.stale && data.status === 'fulfilled')
          return data.value as Buffer;
        await this.#set.recover(outcome.failed, outcome.stale);
      }
      throw new NoReplicaError(`read did not succeed after ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw this.#nbdError('read', err);
    }
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.#mutate('write', offset, data.length, (link) => link.write(offset, data, fua));
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.#mutate('trim', offset, length, (link) => link.trim(offset, length, fua));
  }

  writeZeroes(offset: number, length: number, fua: boolean, noHole: boolean): Promise<void> {
    return this.#mutate('write_zeroes', offset, length, (link) =>
      link.writeZeroes(offset, length, fua, noHole),
    );
  }

  /** Every replica makes durable what it acknowledged; NBD FLUSH covers all connections this way. */
  flush(): Promise<void> {
    return this.#mutate('flush', 0, 0, (link) => link.flush());
  }

  async #mutate(
    op: string,
    offset: number,
    length: number,
    send: (link: ReplicaLink) => Promise<void>,
  ): Promise<void> {
    const release = length > 0 ? await this.lock.acquire(offset, length) : undefined;
    try {
      const done = new Set<ReplicaLink>();
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const writable = this.#usable().writable();
        const pending = done.size === 0 ? writable : writable.filter((t) => !done.has(t.link));
        if (pending.length === 0) {
          if (this.#set.readable().some((t) => done.has(t.link))) return;
          if (attempt === 0 && done.size === 0) {
            // No link at all (every replica was unreachable): try to connect again first.
            await this.#set.refresh().catch(() => undefined);
            continue;
          }
          throw new NoReplicaError('no replica to write to');
        }
        const links = pending.map((t) => t.link);
        const results = await Promise.allSettled(links.map(send));
        let failures = 0;
        for (let i = 0; i < results.length; i++) {
          if (results[i]?.status === 'fulfilled') done.add(links[i] as ReplicaLink);
          else failures++;
        }
        // Every replica took it and the membership did not change meanwhile (the set's cached list
        // is the same array): what the next round would check, without computing it again.
        if (failures === 0 && this.#set.writable() === writable && pending === writable) {
          if (this.#set.readable().some((t) => done.has(t.link))) return;
        }
        if (failures === 0) continue;
        const outcome = classify(results, links);
        if (outcome.failed.length > 0 || outcome.stale)
          await this.#set.recover(outcome.failed, outcome.stale).catch((err: unknown) => {
            throw outOfSpace(results, err) ?? err;
          });
      }
      throw new NoReplicaError(`${op} did not reach every replica after ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw this.#nbdError(op, err);
    } finally {
      release?.();
    }
  }

  #usable(): ReplicaSet {
    if (this.#set.superseded) throw new SupersededError('this engine no longer serves the volume');
    return this.#set;
  }

  #nbdError(op: string, err: unknown): NbdIoError {
    if (err instanceof NbdIoError) return err;
    if (err instanceof SupersededError) {
      this.#log.error({ op, err: err.message }, 'I/O refused: the volume is served by another engine now');
      return new NbdIoError('ESHUTDOWN', err.message, { cause: err });
    }
    if (err instanceof ReplicaError && err.status === 'NO_SPACE')
      return new NbdIoError('ENOSPC', err.message);
    this.#log.error({ op, err: (err as Error).message }, 'I/O failed');
    return new NbdIoError('EIO', (err as Error).message, { cause: err });
  }
}

/**
 * When no replica could be left out because every one that failed is full, the client is told
 * ENOSPC (what it can act on) rather than EIO: the first NO_SPACE error, or undefined.
 */
function outOfSpace(results: PromiseSettledResult<unknown>[], err: unknown): ReplicaError | undefined {
  if (!(err instanceof NoReplicaError)) return undefined;
  const reasons = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const full = reasons.filter((e): e is ReplicaError => e instanceof ReplicaError && e.status === 'NO_SPACE');
  return full.length > 0 && full.length === reasons.length ? full[0] : undefined;
}

/** Which links failed (not counting STALE_EPOCH), and whether any replica reported a newer epoch. */
function classify(
  results: PromiseSettledResult<unknown>[],
  links: ReplicaLink[],
): { failed: ReplicaLink[]; stale: boolean } {
  const failed: ReplicaLink[] = [];
  let stale = false;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') return;
    if (isStale(r.reason)) stale = true;
    else failed.push(links[i] as ReplicaLink);
  });
  return { failed, stale };
}
