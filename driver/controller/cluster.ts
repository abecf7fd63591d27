/**
 * Everything the controller service reads and writes in the cluster, behind one typed interface
 * whose errors already carry gRPC codes: a conflict that outlived its retries is ABORTED (the
 * sidecar retries the call), an API server that does not answer is UNAVAILABLE. Handlers are
 * written against the interface; unit tests give them an in-memory implementation.
 */
import { randomBytes } from 'node:crypto';
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  type KubeConfig,
  StorageV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Volume } from '../../lib/api/volume.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { podFinished } from '../../lib/kubevirt/vocabulary.js';
import { aborted, CsiError, unavailable } from '../csi/errors.js';
import { CREDENTIAL_KEY, credentialSecretName } from '../dataplane/credentials.js';
import { NODE_LABEL, type NodeRegistrationRecord, parseNodeLease } from '../dataplane/node-registration.js';
import { allowedTopologyNodes } from './share-spec.js';

/** A pod that uses a volume, as the pod-identity check sees it. */
export interface PodUse {
  namespace: string;
  name: string;
  uid?: string;
  node: string | undefined;
  labels: Record<string, string>;
  ownerKinds: string[];
  /** The owner reference marked controller; a hotplug pod's names its virt-launcher pod. */
  controller?: { kind: string; name: string; uid?: string };
  /**
   * The pod `controller` names, when it is a Pod that exists. Resolved by podsUsingVolume because
   * a hotplug pod's launcher does not itself mount the hotplugged claim, so it is not among the
   * users, and the check stays synchronous.
   */
  controllerPod?: PodUse;
}

export interface ControllerCluster {
  getVolume(name: string): Promise<Volume | undefined>;
  listVolumes(): Promise<Volume[]>;
  /** ALREADY_EXISTS-free: returns undefined when a Volume of that name appeared meanwhile. */
  createVolume(volume: Volume): Promise<Volume | undefined>;
  /** Replaces metadata + spec; 409 → ConflictError. */
  replaceVolume(volume: Volume): Promise<Volume>;
  /** Replaces status; 409 → ConflictError. */
  replaceVolumeStatus(volume: Volume): Promise<Volume>;
  /** A Volume already gone is fine. */
  deleteVolume(name: string): Promise<void>;
  /** Creates the volume's data-plane credential Secret unless it exists. */
  ensureCredential(volume: string): Promise<void>;
  deleteCredential(volume: string): Promise<void>;
  /** Data-plane nodes, from their registration Leases (fresh or not). */
  listNodes(): Promise<NodeRegistrationRecord[]>;
  /** Names of Node objects marked unschedulable (cordoned). */
  cordonedNodes(): Promise<Set<string>>;
  /** The UID of a PersistentVolumeClaim (Events carry it so `kubectl describe pvc` finds them); undefined when absent. */
  claimUid(namespace: string, name: string): Promise<string | undefined>;
  /**
   * The nodes the allowedTopologies of the claim's StorageClass admit; undefined when the claim or
   * its class is absent or the class sets none (any node).
   */
  allowedNodesOfClaim(namespace: string, name: string): Promise<string[] | undefined>;
  /** Pods (not finished) whose claim is bound to the PV of this CSI volume; undefined when no PV names it. */
  podsUsingVolume(volumeId: string): Promise<PodUse[] | undefined>;
}

/** An optimistic-concurrency conflict; callers re-read and retry. */
export class ConflictError extends Error {
  constructor(what: string) {
    super(`${what} changed meanwhile`);
    this.name = 'ConflictError';
  }
}

const CONFLICT_ATTEMPTS = 8;

/**
 * Read-modify-write of a Volume: `change` gets a fresh copy and returns the Volume to write (or
 * undefined when nothing needs to change); conflicts are retried with a fresh read.
 */
export async function updateVolume(
  cluster: ControllerCluster,
  name: string,
  change: (volume: Volume) => Volume | undefined,
  write: 'spec' | 'status',
  /** A copy the caller just read: the first attempt uses it instead of reading again. */
  fresh?: Volume,
): Promise<Volume | undefined> {
  for (let attempt = 1; ; attempt++) {
    const current = attempt === 1 && fresh !== undefined ? fresh : await cluster.getVolume(name);
    if (current === undefined) return undefined;
    const next = change(structuredClone(current));
    if (next === undefined) return current;
    try {
      return write === 'spec' ? await cluster.replaceVolume(next) : await cluster.replaceVolumeStatus(next);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      if (attempt >= CONFLICT_ATTEMPTS)
        throw aborted(`volume ${name} keeps changing under concurrent updates; retry the call`);
    }
  }
}

/** Maps API failures to gRPC codes; the API's own message is kept out (it can echo request bodies). */
function apiError(what: string, err: unknown): Error {
  if (err instanceof CsiError || err instanceof ConflictError) return err;
  if (err instanceof ApiException) {
    if (err.code === 409) return new ConflictError(what);
    if (err.code === 429 || err.code >= 500)
      return unavailable(`the Kubernetes API answered ${err.code} while ${what}; retry later`);
    return err;
  }
  return unavailable(`the Kubernetes API is unreachable while ${what}: ${(err as Error).message}`);
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw apiError(what, err);
  }
}

const is404 = (err: unknown) => err instanceof ApiException && err.code === 404;
const is409 = (err: unknown) => err instanceof ApiException && err.code === 409;

export class KubeControllerCluster implements ControllerCluster {
  readonly #volumes: VolumeClient;
  readonly #core: CoreV1Api;
  readonly #coordination: CoordinationV1Api;
  readonly #storage: StorageV1Api;
  readonly #namespace: string;

  constructor(kc: KubeConfig, namespace: string) {
    this.#volumes = new VolumeClient(kc);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#coordination = kc.makeApiClient(CoordinationV1Api);
    this.#storage = kc.makeApiClient(StorageV1Api);
    this.#namespace = namespace;
  }

  getVolume(name: string): Promise<Volume | undefined> {
    return call(`reading Volume ${name}`, () =>
      this.#volumes.get(name).catch((err: unknown) => {
        if (is404(err)) return undefined;
        throw err;
      }),
    );
  }

  async listVolumes(): Promise<Volume[]> {
    return (await call('listing Volumes', () => this.#volumes.list())).items;
  }

  createVolume(volume: Volume): Promise<Volume | undefined> {
    return call(`creating Volume ${volume.metadata.name}`, () =>
      this.#volumes.create(volume).catch((err: unknown) => {
        if (is409(err)) return undefined;
        throw err;
      }),
    );
  }

  replaceVolume(volume: Volume): Promise<Volume> {
    return call(`updating Volume ${volume.metadata.name}`, () => this.#volumes.replace(volume));
  }

  replaceVolumeStatus(volume: Volume): Promise<Volume> {
    return call(`updating the status of Volume ${volume.metadata.name}`, () =>
      this.#volumes.replaceStatus(volume),
    );
  }

  deleteVolume(name: string): Promise<void> {
    return call(`deleting Volume ${name}`, () =>
      this.#volumes.delete(name).catch((err: unknown) => {
        if (!is404(err)) throw err;
      }),
    );
  }

  ensureCredential(volume: string): Promise<void> {
    const name = credentialSecretName(volume);
    return call(`creating Secret ${this.#namespace}/${name}`, async () => {
      try {
        await this.#core.createNamespacedSecret({
          namespace: this.#namespace,
          body: {
            metadata: {
              name,
              labels: { 'app.kubernetes.io/managed-by': 'tandem', 'tandem.dev/volume': volume },
            },
            type: 'Opaque',
            data: { [CREDENTIAL_KEY]: randomBytes(32).toString('base64') },
          },
        });
      } catch (err) {
        // Kept as it is: replicas created with the existing credential must keep working.
        if (!is409(err)) throw err;
      }
    });
  }

  deleteCredential(volume: string): Promise<void> {
    const name = credentialSecretName(volume);
    return call(`deleting Secret ${this.#namespace}/${name}`, async () => {
      await this.#core.deleteNamespacedSecret({ name, namespace: this.#namespace }).catch((err: unknown) => {
        if (!is404(err)) throw err;
      });
    });
  }

  async listNodes(): Promise<NodeRegistrationRecord[]> {
    const leases = await call('listing node Leases', () =>
      this.#coordination.listNamespacedLease({ namespace: this.#namespace, labelSelector: NODE_LABEL }),
    );
    return leases.items.flatMap((lease) => parseNodeLease(lease) ?? []);
  }

  async cordonedNodes(): Promise<Set<string>> {
    const nodes = await call('listing Nodes', () => this.#core.listNode());
    return new Set(nodes.items.filter((n) => n.spec?.unschedulable).map((n) => n.metadata?.name ?? ''));
  }

  async claimUid(namespace: string, name: string): Promise<string | undefined> {
    return call(`reading PersistentVolumeClaim ${namespace}/${name}`, async () => {
      try {
        return (await this.#core.readNamespacedPersistentVolumeClaim({ name, namespace })).metadata?.uid;
      } catch (err) {
        if (is404(err)) return undefined;
        throw err;
      }
    });
  }

  async allowedNodesOfClaim(namespace: string, name: string): Promise<string[] | undefined> {
    const className = await call(`reading PersistentVolumeClaim ${namespace}/${name}`, async () => {
      try {
        return (await this.#core.readNamespacedPersistentVolumeClaim({ name, namespace })).spec
          ?.storageClassName;
      } catch (err) {
        if (is404(err)) return undefined;
        throw err;
      }
    });
    if (!className) return undefined;
    const terms = await call(`reading StorageClass ${className}`, async () => {
      try {
        return (await this.#storage.readStorageClass({ name: className })).allowedTopologies;
      } catch (err) {
        if (is404(err)) return undefined;
        throw err;
      }
    });
    return allowedTopologyNodes(terms);
  }

  async podsUsingVolume(volumeId: string): Promise<PodUse[] | undefined> {
    const pvs = await call('listing PersistentVolumes', () => this.#core.listPersistentVolume());
    const pv = pvs.items.find((p) => p.spec?.csi?.volumeHandle === volumeId);
    const claim = pv?.spec?.claimRef;
    if (!claim?.name || !claim.namespace) return undefined;
    const namespace = claim.namespace;
    const pods = await call(`listing pods in ${namespace}`, () =>
      this.#core.listNamespacedPod({ namespace }),
    );
    const byName = new Map(pods.items.map((pod) => [pod.metadata?.name ?? '', pod]));
    return pods.items
      .filter((pod) => usesClaim(pod, claim.name as string) && !podFinished(pod.status?.phase))
      .map((pod) => {
        const use = podUse(pod);
        // Owner references are namespaced, so the listing above already holds the owner if it exists.
        const owner = use.controller?.kind === 'Pod' ? byName.get(use.controller.name) : undefined;
        return owner ? { ...use, controllerPod: podUse(owner) } : use;
      });
  }
}

function usesClaim(pod: V1Pod, claim: string): boolean {
  return (pod.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === claim);
}

function podUse(pod: V1Pod): PodUse {
  const refs = pod.metadata?.ownerReferences ?? [];
  const controller = refs.find((o) => o.controller === true);
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid,
    node: pod.spec?.nodeName,
    labels: pod.metadata?.labels ?? {},
    ownerKinds: refs.map((o) => o.kind),
    ...(controller && { controller: { kind: controller.kind, name: controller.name, uid: controller.uid } }),
  };
}
