/**
 * The share manager's side of its Service: once Ganesha serves, it writes the EndpointSlice of
 * the volume's selector-less Service (`share-manager-<volume>`) with its address, and it renews a
 * heartbeat Lease of the same name, every 2 s with fast failover (10 s otherwise), so the
 * controller can tell a dead share manager within seconds instead of waiting for pod eviction.
 * On a clean stop it empties the slice before Ganesha goes; a share manager that died leaves it
 * to the controller, which clears it once the heartbeat has expired.
 */
import {
  ApiException,
  DiscoveryV1Api,
  type KubeConfig,
  type V1EndpointSlice,
  type V1Lease,
  V1MicroTime,
} from '@kubernetes/client-node';
import { errorMessage } from '../../lib/errors.js';
import type { LeaseApi } from '../../lib/kube/leader-election.js';
import type { Logger } from '../../lib/log.js';
import { ENDPOINT_SLICE_MANAGER, SHARE_MANAGER_VOLUME_LABEL, shareManagerName } from './names.js';
import type { ShareEndpoint, ShareEndpointAddress } from './share-manager.js';

export interface HeartbeatTimings {
  renewMs: number;
  leaseSeconds: number;
}

export function heartbeatTimings(fastFailover: boolean): HeartbeatTimings {
  return fastFailover ? { renewMs: 2_000, leaseSeconds: 6 } : { renewMs: 10_000, leaseSeconds: 30 };
}

/** The EndpointSlice of a share manager serving at `address` (no endpoints when undefined). */
export function endpointSliceFor(
  volumeId: string,
  namespace: string,
  served: { address: ShareEndpointAddress; nodeName: string } | undefined,
): V1EndpointSlice {
  const name = shareManagerName(volumeId);
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace,
      labels: {
        'kubernetes.io/service-name': name,
        'endpointslice.kubernetes.io/managed-by': ENDPOINT_SLICE_MANAGER,
        [SHARE_MANAGER_VOLUME_LABEL]: volumeId,
      },
    },
    addressType: 'IPv4',
    ports: [{ name: 'nfs', port: served?.address.port ?? 2049, protocol: 'TCP' }],
    endpoints:
      served === undefined
        ? []
        : [
            {
              addresses: [served.address.address],
              conditions: { ready: true, serving: true, terminating: false },
              nodeName: served.nodeName,
            },
          ],
  };
}

export interface KubeShareEndpointOptions {
  kc: KubeConfig;
  leases: LeaseApi;
  namespace: string;
  volumeId: string;
  nodeName: string;
  /** Who renews the heartbeat: the pod's UID (unique per share-manager incarnation; the name is the volume's). */
  identity: string;
  timings: HeartbeatTimings;
  logger: Logger;
}

export class KubeShareEndpoint implements ShareEndpoint {
  private readonly discovery: DiscoveryV1Api;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: KubeShareEndpointOptions) {
    this.discovery = options.kc.makeApiClient(DiscoveryV1Api);
  }

  async publish(address: ShareEndpointAddress): Promise<void> {
    await this.renew();
    await writeEndpointSlice(
      this.discovery,
      endpointSliceFor(this.options.volumeId, this.options.namespace, {
        address,
        nodeName: this.options.nodeName,
      }),
    );
    this.timer = setInterval(() => {
      this.renew().catch((err: unknown) =>
        this.options.logger.warn({ err: errorMessage(err) }, 'heartbeat renewal failed; retrying'),
      );
    }, this.options.timings.renewMs);
    this.timer.unref();
    this.options.logger.info({ address }, 'endpoint published');
  }

  async withdraw(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await writeEndpointSlice(
      this.discovery,
      endpointSliceFor(this.options.volumeId, this.options.namespace, undefined),
    );
    this.options.logger.info('endpoint withdrawn');
  }

  /** Takes or renews the heartbeat Lease: this share manager is the volume's server now. */
  private async renew(): Promise<void> {
    const { namespace, volumeId, identity, timings, leases } = this.options;
    const name = shareManagerName(volumeId);
    const now = new V1MicroTime(Date.now());
    const current = await leases.get(namespace, name);
    const spec = { holderIdentity: identity, leaseDurationSeconds: timings.leaseSeconds, renewTime: now };
    if (current === undefined) {
      const lease: V1Lease = {
        metadata: { name, namespace, labels: { [SHARE_MANAGER_VOLUME_LABEL]: volumeId } },
        spec: { ...spec, acquireTime: now },
      };
      await leases.create(namespace, lease);
      return;
    }
    const taken = current.spec?.holderIdentity !== identity;
    await leases.replace(namespace, name, {
      ...current,
      spec: { ...current.spec, ...spec, ...(taken ? { acquireTime: now } : {}) },
    });
  }
}

/**
 * Creates the slice or replaces it whole. It has one writer at a time: the serving share manager,
 * or the controller clearing it once that one is gone.
 */
export async function writeEndpointSlice(discovery: DiscoveryV1Api, slice: V1EndpointSlice): Promise<void> {
  const namespace = slice.metadata?.namespace as string;
  const name = slice.metadata?.name as string;
  for (let attempt = 0; ; attempt++) {
    try {
      const current = await discovery.readNamespacedEndpointSlice({ namespace, name });
      slice.metadata = { ...slice.metadata, resourceVersion: current.metadata?.resourceVersion };
      await discovery.replaceNamespacedEndpointSlice({ namespace, name, body: slice });
      return;
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) {
        try {
          await discovery.createNamespacedEndpointSlice({ namespace, body: slice });
          return;
        } catch (createErr) {
          if (!(createErr instanceof ApiException && createErr.code === 409) || attempt >= 3) throw createErr;
          continue;
        }
      }
      if (!(err instanceof ApiException && err.code === 409) || attempt >= 3) throw err;
    }
  }
}
