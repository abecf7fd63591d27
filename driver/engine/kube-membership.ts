/**
 * The MembershipStore of a real volume: the record lives in the Volume resource (status.epoch,
 * status.replicas, status.engines; the size in spec.sizeBytes) and changes by a status replace
 * carrying the resourceVersion that was read, so the apiserver refuses a write based on a stale
 * read (409) and the change runs again on the fresh record.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiException } from '@kubernetes/client-node';
import type { ReplicaStatus, Volume } from '../../lib/api/volume.js';
import { errorMessage } from '../../lib/errors.js';
import type { VolumeClient } from '../../lib/kube/volumes.js';
import {
  type Membership,
  type MembershipChange,
  MembershipError,
  type MembershipStore,
  type ReplicaMember,
} from './membership.js';
import {
  checkChange,
  checkRecord,
  conflictBackoffMs,
  copyMembership,
  MAX_UPDATE_ATTEMPTS,
  sameMembership,
} from './membership-rules.js';

/** The part of VolumeClient the store uses (unit tests pass a fake). */
export type VolumeAccess = Pick<VolumeClient, 'get' | 'replaceStatus'>;

export interface KubeMembershipOptions {
  maxAttempts?: number;
  /** Waits between conflicting attempts; tests pass one that does not sleep. */
  backoff?: (attempt: number) => Promise<void>;
}

/**
 * The membership recorded in `volume`. Throws MembershipError when the stored record is not one
 * an engine can use (a replica without an address, an epoch beyond a safe integer...).
 */
export function membershipOf(volume: Volume): Membership {
  const status = volume.status ?? {};
  const record: Membership = {
    epoch: status.epoch ?? 0,
    sizeBytes: volume.spec.sizeBytes,
    replicas: (status.replicas ?? []).map(replicaMember),
    engines: (status.engines ?? []).map(({ node, id }) => ({ node, id })),
  };
  checkRecord(volume.metadata.name, record);
  return record;
}

/**
 * `volume` with `membership` written into its status; every other field, in status and out, is
 * kept as it was (including metadata.resourceVersion, which makes the write conditional).
 */
export function withMembership(volume: Volume, membership: Membership): Volume {
  return {
    ...volume,
    status: {
      ...volume.status,
      epoch: membership.epoch,
      replicas: membership.replicas.map(replicaStatus),
      engines: membership.engines.map(({ node, id }) => ({ node, id })),
    },
  };
}

// The resource stores whole percent (the API conventions avoid floats); the engine works in 0..1.
function replicaMember({ node, address, mode, rebuildProgress }: ReplicaStatus): ReplicaMember {
  const member: ReplicaMember = { node, address: address ?? '', mode };
  if (rebuildProgress !== undefined) member.rebuildProgress = rebuildProgress / 100;
  return member;
}

function replicaStatus({ node, address, mode, rebuildProgress }: ReplicaMember): ReplicaStatus {
  const status: ReplicaStatus = { node, address, mode };
  if (rebuildProgress !== undefined) status.rebuildProgress = Math.round(rebuildProgress * 100);
  return status;
}

export class KubeMembershipStore implements MembershipStore {
  private readonly maxAttempts: number;
  private readonly backoff: (attempt: number) => Promise<void>;

  constructor(
    private readonly volumes: VolumeAccess,
    readonly volumeName: string,
    options: KubeMembershipOptions = {},
  ) {
    this.maxAttempts = options.maxAttempts ?? MAX_UPDATE_ATTEMPTS;
    this.backoff = options.backoff ?? ((attempt) => sleep(conflictBackoffMs(attempt)));
  }

  async read(): Promise<Membership> {
    return membershipOf(await this.fetch());
  }

  async update(change: MembershipChange): Promise<Membership> {
    for (let attempt = 1; ; attempt++) {
      const volume = await this.fetch();
      const stored = membershipOf(volume);
      const next = change(copyMembership(stored));
      if (next === undefined) return stored;
      checkChange(this.volumeName, stored, next);
      const candidate = withMembership(volume, next);
      // Compared after the round trip through the status form, so a change the resource cannot
      // represent (rebuild progress finer than a percent) does not cost a write.
      if (sameMembership(membershipOf(candidate), stored)) return stored;
      try {
        return membershipOf(await this.volumes.replaceStatus(candidate));
      } catch (err) {
        if (!(err instanceof ApiException && err.code === 409)) throw this.failure('writing', err);
        if (attempt >= this.maxAttempts)
          throw new MembershipError(
            `volume ${this.volumeName}: gave up after ${attempt} updates lost to concurrent writers`,
            { cause: err },
          );
        await this.backoff(attempt);
      }
    }
  }

  /** A fresh GET: the engine asks precisely because what it knew turned out stale. */
  private async fetch(): Promise<Volume> {
    let volume: Volume;
    try {
      volume = await this.volumes.get(this.volumeName);
    } catch (err) {
      throw this.failure('reading', err);
    }
    // Without it replaceStatus would overwrite unconditionally and could lose a concurrent change.
    if (!volume.metadata.resourceVersion)
      throw new MembershipError(`volume ${this.volumeName}: the apiserver returned no resourceVersion`);
    return volume;
  }

  private failure(action: 'reading' | 'writing', err: unknown): MembershipError {
    if (err instanceof MembershipError) return err;
    if (err instanceof ApiException) {
      if (err.code === 404) return new MembershipError(`volume ${this.volumeName} not found`, { cause: err });
      return new MembershipError(
        `${action} volume ${this.volumeName}: HTTP ${err.code}: ${apiMessage(err.body)}`,
        { cause: err },
      );
    }
    return new MembershipError(`${action} volume ${this.volumeName}: ${errorMessage(err)}`, { cause: err });
  }
}

/** The message of a Kubernetes Status body, which the client hands over as text or parsed. */
function apiMessage(body: unknown): string {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body || 'no details';
    }
  }
  if (parsed && typeof parsed === 'object' && 'message' in parsed && typeof parsed.message === 'string')
    return parsed.message;
  return parsed === undefined ? 'no details' : JSON.stringify(parsed);
}
