/**
 * The migrator's writes to Volumes: read-modify-write with optimistic concurrency (a write based
 * on a stale read is refused with 409 and the change runs again on a fresh copy), spec and status
 * separately since they are separate subresources. Unit tests pass an in-memory implementation.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiException } from '@kubernetes/client-node';
import type { Volume } from '../lib/api/volume.js';
import type { VolumeClient } from '../lib/kube/volumes.js';

export type VolumeAccess = Pick<VolumeClient, 'get' | 'replace' | 'replaceStatus'>;

const ATTEMPTS = 20;

/** undefined when the Volume is gone (404). */
export async function readVolume(volumes: VolumeAccess, name: string): Promise<Volume | undefined> {
  try {
    return await volumes.get(name);
  } catch (err) {
    if (err instanceof ApiException && err.code === 404) return undefined;
    throw err;
  }
}

/**
 * Applies `change` (undefined: nothing to do) to a fresh copy and writes `part`; returns the Volume
 * as stored afterwards, or undefined when it no longer exists.
 */
export async function updateVolume(
  volumes: VolumeAccess,
  name: string,
  part: 'spec' | 'status',
  change: (volume: Volume) => Volume | undefined,
  /** A copy just read or written: the first attempt starts from it instead of a GET (a stale one costs a 409). */
  fresh?: Volume,
): Promise<Volume | undefined> {
  for (let attempt = 1; ; attempt++) {
    const current = attempt === 1 && fresh !== undefined ? fresh : await readVolume(volumes, name);
    if (current === undefined) return undefined;
    const next = change(structuredClone(current));
    if (next === undefined) return current;
    try {
      return part === 'spec' ? await volumes.replace(next) : await volumes.replaceStatus(next);
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      if (!(err instanceof ApiException && err.code === 409) || attempt >= ATTEMPTS) throw err;
      await sleep(Math.floor(Math.random() * Math.min(100, 5 * 2 ** attempt)));
    }
  }
}
