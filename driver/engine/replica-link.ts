/**
 * What the engine needs of a replica connection (ReplicaClient over TCP, LocalReplicaLink in the
 * data-plane process, fakes in unit tests), the errors of its membership, and the size check an
 * expansion waits for.
 */
import type { ReplicaClient } from '../replica/client.js';
import { ReplicaError } from '../replica/client.js';
import type { ReplicaMember } from './membership.js';

export type ReplicaLink = Pick<
  ReplicaClient,
  | 'address'
  | 'epoch'
  | 'size'
  | 'dirty'
  | 'closed'
  | 'onClose'
  | 'read'
  | 'write'
  | 'flush'
  | 'trim'
  | 'writeZeroes'
  | 'probe'
  | 'extents'
  | 'hash'
  | 'close'
>;

export type Connector = (member: ReplicaMember, epoch: bigint) => Promise<ReplicaLink>;

export interface Target {
  member: ReplicaMember;
  link: ReplicaLink;
}

export class SupersededError extends Error {
  override name = 'SupersededError';
}

export class NoReplicaError extends Error {
  override name = 'NoReplicaError';
}

export function isStale(err: unknown): boolean {
  return err instanceof ReplicaError && err.status === 'STALE_EPOCH';
}

/** What EngineHost.resize() / ReplicaSet.resize() found. */
export interface ResizeResult {
  /** The size the engine serves now. */
  sizeBytes: number;
  /** The Volume's spec.sizeBytes (the membership record's size). */
  wanted: number;
  /** Why sizeBytes is still below wanted (a replica not grown yet, two engines attached). */
  waiting?: string;
}

/**
 * The nodes of `targets` whose replica does not (yet) hold `sizeBytes` bytes: a zero-length READ
 * at that offset passes a replica's range check only when its size is at least that (no I/O, no
 * protocol change; a live grow shows at once, whereas the size in a TCP link is HELLO's).
 */
export async function shorterThan(targets: readonly Target[], sizeBytes: number): Promise<string[]> {
  const checks = await Promise.allSettled(targets.map((t) => t.link.read(sizeBytes, 0)));
  return targets.filter((_, i) => checks[i]?.status !== 'fulfilled').map((t) => t.member.node);
}
