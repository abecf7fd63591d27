/**
 * Checks every membership store applies before it stores a record, so an engine unit-tested
 * against the in-memory store meets the same refusals it would meet against the cluster. The
 * Volume CRD enforces most of these too; checking here first gives the engine a MembershipError
 * that names the problem instead of an HTTP 422 body.
 */
import { isDeepStrictEqual } from 'node:util';
import type { ReplicaMode } from '../../lib/api/volume.js';
import { type Membership, MembershipError } from './membership.js';

/** The CRD's maxItems for status.engines and status.replicas. */
export const MAX_ENGINES = 2;
export const MAX_REPLICAS = 5;
/** The CRD's maxLength for engine ids (and node names, which are DNS subdomains). */
export const MAX_NAME_LENGTH = 253;
/**
 * Optimistic-concurrency attempts before a store gives up on a contended record. Each lost attempt
 * means another writer stored a change, so this only stops a writer that never lets go. It is
 * not 10: against a writer updating in a tight loop the other one loses each race about half the
 * time (two stores bumping 20 times each on a real apiserver needed up to 9 attempts in 25 runs).
 */
export const MAX_UPDATE_ATTEMPTS = 30;

const REPLICA_MODES: ReadonlySet<ReplicaMode> = new Set<ReplicaMode>(['ReadWrite', 'WriteOnly', 'Failed']);

const isName = (value: unknown): value is string =>
  typeof value === 'string' && value.length > 0 && value.length <= MAX_NAME_LENGTH;

/** Throws MembershipError when `record` could not be stored for `volume`, whatever was there before. */
export function checkRecord(volume: string, record: Membership): void {
  const refuse = (why: string): never => {
    throw new MembershipError(`volume ${volume}: ${why}`);
  };
  if (!Number.isSafeInteger(record.epoch) || record.epoch < 0)
    refuse(`epoch ${record.epoch} is not a non-negative safe integer`);
  if (!Number.isSafeInteger(record.sizeBytes) || record.sizeBytes < 0)
    refuse(`sizeBytes ${record.sizeBytes} is not a non-negative safe integer`);

  if (!Array.isArray(record.replicas)) refuse('replicas is not a list');
  if (record.replicas.length > MAX_REPLICAS)
    refuse(`${record.replicas.length} replicas, at most ${MAX_REPLICAS} allowed`);
  const nodes = new Set<string>();
  for (const replica of record.replicas) {
    if (!isName(replica.node)) refuse(`replica node name ${JSON.stringify(replica.node)} is invalid`);
    if (nodes.has(replica.node)) refuse(`two replicas on node ${replica.node}; one per node is allowed`);
    nodes.add(replica.node);
    if (typeof replica.address !== 'string' || replica.address.length === 0)
      refuse(`replica on node ${replica.node} has no address`);
    if (!REPLICA_MODES.has(replica.mode))
      refuse(`replica on node ${replica.node} has unknown mode ${JSON.stringify(replica.mode)}`);
    const progress = replica.rebuildProgress;
    if (progress !== undefined && !(Number.isFinite(progress) && progress >= 0 && progress <= 1))
      refuse(`replica on node ${replica.node} has rebuildProgress ${progress}, outside 0..1`);
  }

  if (!Array.isArray(record.engines)) refuse('engines is not a list');
  if (record.engines.length > MAX_ENGINES)
    refuse(`${record.engines.length} engines, at most ${MAX_ENGINES} allowed`);
  const ids = new Set<string>();
  for (const engine of record.engines) {
    if (!isName(engine.node)) refuse(`engine node name ${JSON.stringify(engine.node)} is invalid`);
    if (!isName(engine.id))
      refuse(`engine id ${JSON.stringify(engine.id)} must be 1..${MAX_NAME_LENGTH} characters`);
    if (ids.has(engine.id)) refuse(`two engines with id ${engine.id}`);
    ids.add(engine.id);
  }
}

/**
 * Throws MembershipError unless `next` may replace `stored`: a valid record whose epoch is not
 * lower (fencing only works if epochs never go back) and whose size is unchanged (the size is the
 * volume's spec, owned by the controller, not something a membership change may alter).
 */
export function checkChange(volume: string, stored: Membership, next: Membership): void {
  checkRecord(volume, next);
  if (next.epoch < stored.epoch)
    throw new MembershipError(
      `volume ${volume}: epoch ${next.epoch} is lower than the stored ${stored.epoch}`,
    );
  if (next.sizeBytes !== stored.sizeBytes)
    throw new MembershipError(
      `volume ${volume}: sizeBytes is the volume's spec and cannot change through membership ` +
        `(${stored.sizeBytes} -> ${next.sizeBytes})`,
    );
}

/**
 * A deep copy holding only the fields a Membership defines (optional ones only when set), the
 * same shape whichever store produced it, so records compare equal when their content is equal.
 */
export function copyMembership(record: Membership): Membership {
  return {
    epoch: record.epoch,
    sizeBytes: record.sizeBytes,
    replicas: record.replicas.map(({ node, address, mode, rebuildProgress }) =>
      rebuildProgress === undefined ? { node, address, mode } : { node, address, mode, rebuildProgress },
    ),
    engines: record.engines.map(({ node, id }) => ({ node, id })),
  };
}

export function sameMembership(a: Membership, b: Membership): boolean {
  return isDeepStrictEqual(copyMembership(a), copyMembership(b));
}

/** Full jitter over a doubling window, capped: contenders spread out instead of colliding again. */
export function conflictBackoffMs(attempt: number, random: () => number = Math.random): number {
  const window = Math.min(100, 5 * 2 ** attempt);
  return Math.floor(random() * window);
}
