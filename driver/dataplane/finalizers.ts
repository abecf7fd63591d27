/**
 * The node's finalizer on a Volume (`tandem.dev/dataplane-<node>`): it keeps the Volume from
 * disappearing while this node still holds a replica of it, so the node always learns of the
 * deletion and cleans up. Changed by JSON merge patch carrying the resourceVersion the change was
 * computed from: a concurrent writer makes it fail with 409 instead of dropping someone else's
 * finalizer; the read-modify-write is then redone.
 */
import {
  ApiException,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { GROUP, VERSION, VOLUME_PLURAL, type Volume } from '../../lib/api/volume.js';

export function dataplaneFinalizer(node: string): string {
  return `${GROUP}/dataplane-${node}`;
}

/** The live (uncached) Volume reads and writes the reconciler needs. */
export interface VolumeWriter {
  /** undefined when the Volume does not exist. */
  get(name: string): Promise<Volume | undefined>;
  /** Sets metadata.finalizers; rejects with a 409 ApiException when resourceVersion is stale. */
  setFinalizers(name: string, resourceVersion: string, finalizers: string[]): Promise<Volume>;
}

const coordinates = { group: GROUP, version: VERSION, plural: VOLUME_PLURAL };

export class KubeVolumeWriter implements VolumeWriter {
  readonly #api: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
  }

  async get(name: string): Promise<Volume | undefined> {
    try {
      return (await this.#api.getClusterCustomObject({ ...coordinates, name })) as Volume;
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    }
  }

  async setFinalizers(name: string, resourceVersion: string, finalizers: string[]): Promise<Volume> {
    return (await this.#api.patchClusterCustomObject(
      { ...coordinates, name, body: { metadata: { resourceVersion, finalizers } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )) as Volume;
  }
}

const CONFLICT_ATTEMPTS = 5;

/**
 * Adds (present = true) or removes this node's finalizer, keeping every other one. Returns
 * whether anything changed; a Volume that is gone needs no change. Status writes share the
 * resourceVersion, so conflicts are common and retried here with a fresh read.
 */
export async function ensureFinalizer(
  writer: VolumeWriter,
  name: string,
  finalizer: string,
  present: boolean,
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    const volume = await writer.get(name);
    if (volume === undefined) return false;
    const current = volume.metadata.finalizers ?? [];
    if (current.includes(finalizer) === present) return false;
    // Adding one to a Volume being deleted is refused by the apiserver, and would be wrong anyway.
    if (present && volume.metadata.deletionTimestamp) return false;
    const next = present ? [...current, finalizer] : current.filter((f) => f !== finalizer);
    try {
      await writer.setFinalizers(name, volume.metadata.resourceVersion ?? '', next);
      return true;
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 409) || attempt >= CONFLICT_ATTEMPTS) throw err;
    }
  }
}
