/**
 * How a node's data plane tells the controller it exists: a coordination.k8s.io Lease
 * `tandem-node-<node>` in the Tandem namespace, renewed every few seconds, carrying the address
 * of the node's replica server and the space it can still commit to new replicas. The controller
 * places replicas only on nodes whose Lease is fresh, and treats an expired Lease as a lost node.
 * A Lease (not a custom resource, not the Node object) because it is the API's own heartbeat
 * record: cheap to renew, no Node write permission for a DaemonSet, and kubelet does the same.
 */
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { ApiException, type CoordinationV1Api, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import { errorMessage } from '../../lib/errors.js';
import { type Logger, silentLogger } from '../../lib/log.js';
import { isVolumeName, readMetadata } from '../replica/metadata.js';

export const NODE_LEASE_PREFIX = 'tandem-node-';
export const REPLICA_ADDRESS_ANNOTATION = 'tandem.dev/replica-address';
export const FREE_BYTES_ANNOTATION = 'tandem.dev/free-bytes';
export const NODE_LABEL = 'tandem.dev/node';

export function nodeLeaseName(node: string): string {
  return `${NODE_LEASE_PREFIX}${node}`;
}

/** What the controller reads back from a node's Lease. */
export interface NodeRegistrationRecord {
  node: string;
  /** host:port of the replica server, as other nodes reach it. */
  address: string;
  freeBytes: number;
  /** When the Lease was last renewed (ms since the epoch); 0 when never. */
  renewedAtMs: number;
  leaseDurationMs: number;
}

/** undefined for a Lease that is not a node registration or is malformed (it is then ignored). */
export function parseNodeLease(lease: V1Lease): NodeRegistrationRecord | undefined {
  const name = lease.metadata?.name ?? '';
  const node = lease.metadata?.labels?.[NODE_LABEL];
  if (!name.startsWith(NODE_LEASE_PREFIX) || node === undefined || nodeLeaseName(node) !== name)
    return undefined;
  const annotations = lease.metadata?.annotations ?? {};
  const address = annotations[REPLICA_ADDRESS_ANNOTATION];
  const freeBytes = Number(annotations[FREE_BYTES_ANNOTATION]);
  if (!address || !Number.isSafeInteger(freeBytes) || freeBytes < 0) return undefined;
  const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
  return {
    node,
    address,
    freeBytes,
    renewedAtMs: Number.isFinite(renewed) ? renewed : 0,
    leaseDurationMs: (lease.spec?.leaseDurationSeconds ?? 0) * 1000,
  };
}

/** Whether the node renewed its Lease within the Lease's duration. */
export function isAlive(record: NodeRegistrationRecord, nowMs = Date.now()): boolean {
  return record.renewedAtMs + record.leaseDurationMs > nowMs;
}

/**
 * Space the node can still promise: free space on the data filesystem minus what existing
 * replicas may still fill (their size minus what they already occupy). Replicas are sparse, so
 * without the second term every node would look empty until the volumes were written, and
 * placement would overcommit the disk.
 */
export async function committableBytes(dataDir: string): Promise<number> {
  const stats = await fsp.statfs(dataDir);
  let promised = 0;
  const entries = await fsp.readdir(dataDir, { withFileTypes: true });
  for (const entry of entries) {
    if (!entry.isDirectory() || !isVolumeName(entry.name)) continue;
    const dir = join(dataDir, entry.name);
    const meta = await readMetadata(dir).catch(() => undefined);
    if (meta === undefined) continue;
    const data = await fsp.stat(join(dir, 'data')).catch(() => undefined);
    const allocated = data ? data.blocks * 512 : 0;
    promised += Math.max(0, meta.sizeBytes - allocated);
  }
  return Math.max(0, stats.bavail * stats.bsize - promised);
}

export interface NodeRegistrationOptions {
  api: Pick<CoordinationV1Api, 'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'>;
  namespace: string;
  node: string;
  address: string;
  dataDir: string;
  renewIntervalMs?: number;
  leaseDurationSeconds?: number;
  log?: Logger;
}

/** Keeps the node's Lease renewed; failures are logged and retried at the next interval. */
export class NodeRegistration {
  readonly #o: NodeRegistrationOptions;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(options: NodeRegistrationOptions) {
    this.#o = options;
    this.#log = (options.log ?? silentLogger()).child({ component: 'node-registration' });
  }

  /** Publishes once (throwing if that fails, so a misconfigured node fails at start) and keeps renewing. */
  async start(): Promise<void> {
    await this.renew();
    const interval = this.#o.renewIntervalMs ?? 10_000;
    this.#timer = setInterval(() => {
      this.#running ??= this.renew()
        .catch((err: unknown) => this.#log.warn({ err: errorMessage(err) }, 'node Lease renewal failed'))
        .finally(() => {
          this.#running = undefined;
        });
    }, interval);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One read-modify-write of the Lease (create when missing). */
  async renew(): Promise<void> {
    const { api, namespace, node } = this.#o;
    const name = nodeLeaseName(node);
    const freeBytes = await committableBytes(this.#o.dataDir);
    const metadata = {
      name,
      namespace,
      labels: { [NODE_LABEL]: node },
      annotations: {
        [REPLICA_ADDRESS_ANNOTATION]: this.#o.address,
        [FREE_BYTES_ANNOTATION]: String(freeBytes),
      },
    };
    const spec = {
      holderIdentity: node,
      leaseDurationSeconds: this.#o.leaseDurationSeconds ?? 40,
      renewTime: new V1MicroTime(),
    };
    let current: V1Lease | undefined;
    try {
      current = await api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 404)) throw err;
    }
    if (current === undefined) {
      await api.createNamespacedLease({ namespace, body: { metadata, spec } });
      this.#log.info({ lease: name, address: this.#o.address, freeBytes }, 'node registered');
      return;
    }
    await api.replaceNamespacedLease({
      name,
      namespace,
      body: {
        metadata: { ...metadata, resourceVersion: current.metadata?.resourceVersion },
        spec: { ...current.spec, ...spec },
      },
    });
  }
}
