import {
  ApiException,
  CoreV1Api,
  type KubeConfig,
  type KubernetesObject,
  makeInformer,
  StorageV1Api,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1Pod,
  type V1StorageClass,
} from '@kubernetes/client-node';
import type { Volume } from '../lib/api/volume.js';
import { type Cache, keepWatching } from '../lib/kube/informer.js';
import { VolumeClient } from '../lib/kube/volumes.js';
import { APP_LABEL } from '../lib/kubevirt/vocabulary.js';
import { type Logger, silentLogger } from '../lib/log.js';
import type { ClusterView } from './cluster-view.js';

/**
 * Only KubeVirt's pods (virt-launcher, hotplug) are cached: they are the ones
 * that may share a migratable volume, and caching every pod of a large
 * cluster would cost the webhook far more memory than it needs. A pod without
 * the label that uses a migratable volume is refused at its own admission,
 * and the driver checks again when the volume is published.
 */
export const POD_CACHE_SELECTOR = APP_LABEL;

/**
 * ClusterView over informer caches, so an admission request costs no API
 * call in the common case. It stays right when a cache is cold (not synced
 * yet: ask the API) or lagging (object created a moment ago and not in the
 * cache yet: a miss is confirmed with a GET before it counts as absent).
 */
export class CachedClusterView implements ClusterView {
  private readonly core: CoreV1Api;
  private readonly storage: StorageV1Api;
  private readonly volumes: VolumeClient;
  private readonly caches: {
    classes: Cache<V1StorageClass>;
    claims: Cache<V1PersistentVolumeClaim>;
    pvs: Cache<V1PersistentVolume>;
    pods: Cache<V1Pod>;
    volumes: Cache<Volume>;
  };
  private readonly synced = new Set<string>();
  private readonly stops: (() => Promise<void>)[] = [];
  private readonly logger: Logger;

  constructor(kc: KubeConfig, logger?: Logger) {
    this.logger = logger ?? silentLogger();
    this.core = kc.makeApiClient(CoreV1Api);
    this.storage = kc.makeApiClient(StorageV1Api);
    this.volumes = new VolumeClient(kc);
    this.caches = {
      classes: makeInformer(kc, '/apis/storage.k8s.io/v1/storageclasses', () =>
        this.storage.listStorageClass(),
      ),
      claims: makeInformer(kc, '/api/v1/persistentvolumeclaims', () =>
        this.core.listPersistentVolumeClaimForAllNamespaces(),
      ),
      pvs: makeInformer(kc, '/api/v1/persistentvolumes', () => this.core.listPersistentVolume()),
      pods: makeInformer(
        kc,
        '/api/v1/pods',
        () => this.core.listPodForAllNamespaces({ labelSelector: POD_CACHE_SELECTOR }),
        POD_CACHE_SELECTOR,
      ),
      volumes: this.volumes.informer(),
    };
  }

  /** Starts every informer in the background; lookups work (through the API) before they sync. */
  start(): void {
    for (const [name, cache] of Object.entries(this.caches) as [string, Cache<KubernetesObject>][]) {
      keepWatching(cache, { name, logger: this.logger }).then(
        (watching) => {
          this.synced.add(name);
          this.stops.push(watching.stop);
          this.logger.info({ cache: name }, 'cache synced');
        },
        (err: unknown) => this.logger.error({ cache: name, err: String(err) }, 'cache failed to start'),
      );
    }
  }

  /** True once every cache has listed its objects. */
  get ready(): boolean {
    return this.synced.size === Object.keys(this.caches).length;
  }

  async stop(): Promise<void> {
    await Promise.all(this.stops.map((stop) => stop()));
  }

  storageClass(name: string): Promise<V1StorageClass | undefined> {
    return this.lookup('classes', name, undefined, () => this.storage.readStorageClass({ name }));
  }

  claim(namespace: string, name: string): Promise<V1PersistentVolumeClaim | undefined> {
    return this.lookup('claims', name, namespace, () =>
      this.core.readNamespacedPersistentVolumeClaim({ name, namespace }),
    );
  }

  persistentVolume(name: string): Promise<V1PersistentVolume | undefined> {
    return this.lookup('pvs', name, undefined, () => this.core.readPersistentVolume({ name }));
  }

  volume(name: string): Promise<Volume | undefined> {
    return this.lookup('volumes', name, undefined, () => this.volumes.get(name));
  }

  pod(namespace: string, name: string): Promise<V1Pod | undefined> {
    return this.lookup('pods', name, namespace, () => this.core.readNamespacedPod({ name, namespace }));
  }

  /**
   * Always a live LIST, never the cache: the pod rule counts the pods on a
   * migratable volume, and a cache that has not yet seen a pod created a
   * moment ago would admit a third one. Only pods that mount a migratable
   * Tandem volume get here, so this stays rare.
   */
  async podsUsingClaim(namespace: string, claimName: string): Promise<V1Pod[]> {
    const pods = (await this.core.listNamespacedPod({ namespace })).items;
    return pods.filter((pod) =>
      pod.spec?.volumes?.some((v) => v.persistentVolumeClaim?.claimName === claimName),
    );
  }

  private async lookup<K extends keyof CachedClusterView['caches'], T extends KubernetesObject>(
    cache: K,
    name: string,
    namespace: string | undefined,
    read: () => Promise<T>,
  ): Promise<T | undefined> {
    const cached = this.caches[cache].get(name, namespace) as T | undefined;
    if (cached) return cached;
    try {
      return await read();
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    }
  }
}
