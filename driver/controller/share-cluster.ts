/**
 * What the controller reads and writes for share managers, in Tandem's namespace: each volume's
 * Pod, Service, EndpointSlice and heartbeat Lease, all named `share-manager-<volume>`. Behind an
 * interface with gRPC-coded errors like ControllerCluster, so ControllerPublishVolume and the
 * reconciler are written against it.
 */
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  type KubeConfig,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { unavailable } from '../csi/errors.js';
import { endpointSliceFor, writeEndpointSlice } from '../share-manager/endpoint.js';
import { shareManagerName } from '../share-manager/names.js';
import type { HeartbeatState, SharePodState } from './share-manager-decide.js';

export interface ShareObjects {
  pod?: SharePodState;
  heartbeat?: HeartbeatState;
  /** Addresses the EndpointSlice advertises as ready. */
  advertised: string[];
  /** The Service's cluster IP, when the Service exists. */
  service?: { clusterIP?: string };
}

export interface ShareCluster {
  readShare(volumeId: string): Promise<ShareObjects>;
  /** Both tolerate an object that already exists (a retry, or a concurrent controller). */
  createService(service: V1Service): Promise<void>;
  createPod(pod: V1Pod): Promise<void>;
  /** Deletes this incarnation only (UID precondition); `force`: no grace (its node is lost). */
  deletePod(volumeId: string, uid: string, force: boolean): Promise<void>;
  /** Empties the EndpointSlice: no client is sent to a share manager that is gone. */
  clearEndpoints(volumeId: string): Promise<void>;
  /** Pod, Service, EndpointSlice and Lease; whatever is already gone is fine. */
  deleteShareObjects(volumeId: string): Promise<void>;
}

const is404 = (err: unknown) => err instanceof ApiException && err.code === 404;
const is409 = (err: unknown) => err instanceof ApiException && err.code === 409;

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApiException && err.code < 500 && err.code !== 429) throw err;
    throw unavailable(`the Kubernetes API failed while ${what}: ${(err as Error).message}; retry later`);
  }
}

async function orUndefined<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (err) {
    if (is404(err)) return undefined;
    throw err;
  }
}

export function podState(pod: V1Pod): SharePodState {
  const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
  const phase = pod.status?.phase;
  const exitMessage = terminationMessage(pod);
  return {
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
    phase:
      phase === 'Running' || phase === 'Succeeded' || phase === 'Failed' || phase === 'Unknown'
        ? phase
        : 'Pending',
    deleting: pod.metadata?.deletionTimestamp !== undefined,
    ...(scheduled?.status === 'False' && scheduled.reason === 'Unschedulable'
      ? { unschedulable: scheduled.message ?? 'Unschedulable' }
      : {}),
    ...(exitMessage ? { exitMessage } : {}),
  };
}

/** The termination message of the share manager's container: its own words on why it ended. */
function terminationMessage(pod: V1Pod): string | undefined {
  const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
  const message = terminated?.message?.trim();
  if (!message)
    return terminated?.reason && terminated.reason !== 'Completed' ? terminated.reason : undefined;
  // An Event's note holds 1 KiB; the cause is at the start of the message.
  return message.length > 600 ? `${message.slice(0, 600)}…` : message;
}

export class KubeShareCluster implements ShareCluster {
  readonly #core: CoreV1Api;
  readonly #discovery: DiscoveryV1Api;
  readonly #coordination: CoordinationV1Api;
  readonly #namespace: string;

  constructor(kc: KubeConfig, namespace: string) {
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#discovery = kc.makeApiClient(DiscoveryV1Api);
    this.#coordination = kc.makeApiClient(CoordinationV1Api);
    this.#namespace = namespace;
  }

  readShare(volumeId: string): Promise<ShareObjects> {
    const name = shareManagerName(volumeId);
    const namespace = this.#namespace;
    return call(`reading the share manager objects of volume ${volumeId}`, async () => {
      const [pod, lease, slice, service] = await Promise.all([
        orUndefined(this.#core.readNamespacedPod({ name, namespace })),
        orUndefined(this.#coordination.readNamespacedLease({ name, namespace })),
        orUndefined(this.#discovery.readNamespacedEndpointSlice({ name, namespace })),
        orUndefined(this.#core.readNamespacedService({ name, namespace })),
      ]);
      const renew = lease?.spec?.renewTime;
      return {
        ...(pod ? { pod: podState(pod) } : {}),
        ...(lease?.spec?.holderIdentity && renew
          ? {
              heartbeat: {
                holder: lease.spec.holderIdentity,
                renewTimeMs: new Date(renew).getTime(),
                leaseSeconds: lease.spec.leaseDurationSeconds ?? 30,
              },
            }
          : {}),
        advertised: (slice?.endpoints ?? [])
          .filter((e) => e.conditions?.ready !== false)
          .flatMap((e) => e.addresses),
        ...(service ? { service: { clusterIP: service.spec?.clusterIP } } : {}),
      };
    });
  }

  createService(service: V1Service): Promise<void> {
    return call(`creating Service ${service.metadata?.name}`, async () => {
      await this.#core.createNamespacedService({ namespace: this.#namespace, body: service }).catch((err) => {
        if (!is409(err)) throw err;
      });
    });
  }

  createPod(pod: V1Pod): Promise<void> {
    return call(`creating Pod ${pod.metadata?.name}`, async () => {
      await this.#core.createNamespacedPod({ namespace: this.#namespace, body: pod }).catch((err) => {
        if (!is409(err)) throw err;
      });
    });
  }

  deletePod(volumeId: string, uid: string, force: boolean): Promise<void> {
    const name = shareManagerName(volumeId);
    return call(`deleting Pod ${name}`, async () => {
      await this.#core
        .deleteNamespacedPod({
          name,
          namespace: this.#namespace,
          body: { preconditions: { uid }, ...(force ? { gracePeriodSeconds: 0 } : {}) },
          ...(force ? { gracePeriodSeconds: 0 } : {}),
        })
        // Gone, or already replaced by another incarnation (the UID precondition fails with 409).
        .catch((err) => {
          if (!is404(err) && !is409(err)) throw err;
        });
    });
  }

  clearEndpoints(volumeId: string): Promise<void> {
    return call(`clearing the EndpointSlice of volume ${volumeId}`, () =>
      writeEndpointSlice(this.#discovery, endpointSliceFor(volumeId, this.#namespace, undefined)),
    );
  }

  deleteShareObjects(volumeId: string): Promise<void> {
    const name = shareManagerName(volumeId);
    const namespace = this.#namespace;
    const gone = (err: unknown) => {
      if (!is404(err)) throw err;
    };
    return call(`deleting the share manager objects of volume ${volumeId}`, async () => {
      await Promise.all([
        this.#core.deleteNamespacedPod({ name, namespace }).catch(gone),
        this.#core.deleteNamespacedService({ name, namespace }).catch(gone),
        this.#discovery.deleteNamespacedEndpointSlice({ name, namespace }).catch(gone),
        this.#coordination.deleteNamespacedLease({ name, namespace }).catch(gone),
      ]);
    });
  }
}
