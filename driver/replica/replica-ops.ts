/**
 * The replica's rules for one request, shared by the two ways an engine reaches a replica: a TCP
 * session (session.ts) and, for the replica on the engine's own node, a direct in-process link
 * (engine/local-link.ts). Fencing, the dirty flag and range checks live here once.
 */
import type { Logger } from 'pino';
import type { ErrorStatus } from './protocol.js';
import { type OpenVolume, updateMetadata } from './volume-registry.js';

export class RequestFailure extends Error {
  constructor(
    readonly status: ErrorStatus,
    message: string,
    /** The replica epoch to report with the failure, when it differs from the session's view. */
    readonly epoch?: bigint,
  ) {
    super(message);
  }
}

function stale(open: OpenVolume, epoch: bigint): RequestFailure {
  return new RequestFailure('STALE_EPOCH', `epoch ${epoch} is older than the replica's ${open.store.epoch}`);
}

/** True when `epoch` is the replica's: the common case, which needs no admitEpoch call (and no promise). */
export function atEpoch(open: OpenVolume, epoch: bigint): boolean {
  return epoch === BigInt(open.store.epoch);
}

/** Refuses an older epoch; persists a newer one once the older epoch's mutations have finished. */
export async function admitEpoch(open: OpenVolume, epoch: bigint, log: Logger): Promise<void> {
  const current = BigInt(open.store.epoch);
  if (epoch === current) return;
  if (epoch < current) throw stale(open, epoch);
  await updateMetadata(open, async (store) => {
    if (epoch <= BigInt(store.epoch)) return;
    const older = [...open.inflight].filter(([, e]) => e < epoch).map(([p]) => p);
    await Promise.allSettled(older);
    await store.setEpoch(Number(epoch));
    log.info({ volume: store.volume, epoch: String(epoch) }, 'epoch advanced');
  });
  if (epoch < BigInt(open.store.epoch)) throw stale(open, epoch);
}

/**
 * Runs a write, trim or write-zeroes: marks the replica dirty first (durably), counts it for the
 * clean-close rule and for epoch changes, and makes it durable before returning when `fua`.
 */
export async function mutate(
  open: OpenVolume,
  epoch: bigint,
  fua: boolean,
  op: () => Promise<void>,
): Promise<void> {
  if (!open.store.dirty) {
    await updateMetadata(open, (store) => (store.dirty ? Promise.resolve() : store.setDirty(true)));
  }
  // The epoch may have moved while the dirty flag was written.
  if (epoch < BigInt(open.store.epoch)) throw stale(open, epoch);
  open.startedMutations += 1;
  const work = fua ? op().then(() => open.store.flush()) : op();
  open.inflight.set(work, epoch);
  try {
    await work;
  } finally {
    open.inflight.delete(work);
    open.completedMutations += 1;
  }
}

/** fdatasync, and record which mutations it covered (a clean close needs all of them covered). */
export async function flushReplica(open: OpenVolume): Promise<void> {
  const covered = open.completedMutations;
  await open.store.flush();
  open.flushedMutations = Math.max(open.flushedMutations, covered);
}

/** The range as a number, or OUT_OF_RANGE when it does not fit inside the volume. */
export function checkRange(open: OpenVolume, offset: bigint | number, length: number): number {
  const size = BigInt(open.store.sizeBytes);
  const start = BigInt(offset);
  if (start > size || BigInt(length) > size - start) {
    throw new RequestFailure('OUT_OF_RANGE', `range ${offset}+${length} is outside the ${size}-byte volume`);
  }
  return Number(start);
}

/** The status and message an error becomes on the wire (errno codes of I/O errors kept). */
export function failureOf(err: unknown): { status: ErrorStatus; message: string; epoch?: bigint } {
  if (err instanceof RequestFailure) {
    return {
      status: err.status,
      message: err.message,
      ...(err.epoch === undefined ? {} : { epoch: err.epoch }),
    };
  }
  if (err instanceof RangeError) return { status: 'OUT_OF_RANGE', message: err.message.slice(0, 500) };
  const code = (err as NodeJS.ErrnoException).code;
  return { status: code === 'ENOSPC' ? 'NO_SPACE' : 'IO_ERROR', message: (code ?? 'EIO').slice(0, 100) };
}
