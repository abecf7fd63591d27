import type {
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StorageClass,
} from '@kubernetes/client-node';
import type { Volume } from '../lib/api/volume.js';

/**
 * The cluster objects admission rules look up. The production implementation
 * reads informer caches and falls back to the API when a cache has not synced
 * or does not (yet) have the object; unit tests pass a plain in-memory one.
 * Every method resolves `undefined` (or []) when the object does not exist.
 */
export interface ClusterView {
  storageClass(name: string): Promise<V1StorageClass | undefined>;
  claim(namespace: string, name: string): Promise<V1PersistentVolumeClaim | undefined>;
  persistentVolume(name: string): Promise<V1PersistentVolume | undefined>;
  volume(name: string): Promise<Volume | undefined>;
  pod(namespace: string, name: string): Promise<V1Pod | undefined>;
  /** Pods of a namespace whose spec.volumes name the claim, terminated ones included. */
  podsUsingClaim(namespace: string, claimName: string): Promise<V1Pod[]>;
}
