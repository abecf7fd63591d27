/**
 * The membership record of one volume: which replicas and engines form it, and the fencing epoch
 * that versions both. It lives in the `Volume` custom resource (status.epoch, status.replicas,
 * status.engines); engines read it fresh after a replica answers STALE_EPOCH and change it with
 * optimistic concurrency. Unit tests inject an in-memory store.
 *
 * Every change of either set bumps the epoch: a replica leaving (fenced after an error), a replica
 * turning readable after a rebuild, an engine taking the volume over, a second engine joining
 * for a live migration. Replicas refuse frames stamped with an older epoch, so whoever missed a
 * change learns of it on its next request and must read the record again.
 */
import type { ReplicaMode } from '../../lib/api/volume.js';

export interface ReplicaMember {
  /** Node the replica lives on (one replica per node per volume). */
  node: string;
  /** host:port of the node's replica server. */
  address: string;
  mode: ReplicaMode;
  /** 0..1 while a rebuild fills a WriteOnly replica. */
  rebuildProgress?: number;
}

export interface EngineMember {
  node: string;
  /** Unique per engine process (node/pid/random): a restarted engine is a new member. */
  id: string;
}

export interface Membership {
  /** Safe integer; the replica protocol carries it as u64. */
  epoch: number;
  sizeBytes: number;
  replicas: ReplicaMember[];
  /** At most two, and two only during a live migration. */
  engines: EngineMember[];
}

/** A change to apply to the current record; return undefined to leave the record as it is. */
export type MembershipChange = (current: Membership) => Membership | undefined;

export interface MembershipStore {
  /** The current record, read from the source of truth (never from a cache). */
  read(): Promise<Membership>;
  /**
   * Applies `change` to the current record with optimistic concurrency: on a conflict the record
   * is read again and `change` runs again on it. Resolves with the record as stored afterwards
   * (unchanged if `change` returned undefined).
   */
  update(change: MembershipChange): Promise<Membership>;
}

export class MembershipError extends Error {
  override name = 'MembershipError';
}
