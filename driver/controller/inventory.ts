/**
 * The data-plane nodes as the controller sees them: registration Leases (address, committable
 * space, heartbeat) joined with the Node objects' cordon flag. Used by placement, GetCapacity and
 * ControllerPublishVolume's node check.
 */
import { parseStorageClassParameters } from '../../lib/params/storage-class.js';
import { invalidArgument } from '../csi/errors.js';
import { TOPOLOGY_NODE_KEY } from '../csi/node-topology.js';
import { isAlive, type NodeRegistrationRecord } from '../dataplane/node-registration.js';
import type { ControllerCluster } from './cluster.js';
import { MIN_VOLUME_BYTES } from './create-volume.js';
import type { CsiTopology, NodeInfo } from './placement.js';

export interface InventoryNode extends NodeInfo {
  address: string;
  alive: boolean;
}

export async function nodeInventory(
  cluster: ControllerCluster,
  nowMs = Date.now(),
): Promise<InventoryNode[]> {
  const [records, cordoned] = await Promise.all([cluster.listNodes(), cluster.cordonedNodes()]);
  return records.map((record: NodeRegistrationRecord) => {
    const alive = isAlive(record, nowMs);
    return {
      name: record.node,
      address: record.address,
      alive,
      freeBytes: record.freeBytes,
      schedulable: alive && !cordoned.has(record.node),
      segments: { [TOPOLOGY_NODE_KEY]: record.node },
    };
  });
}

/** Nodes whose registration Lease expired (only the Leases are read: cordoning does not matter here). */
export async function lostNodes(cluster: ControllerCluster, nowMs = Date.now()): Promise<Set<string>> {
  return new Set((await cluster.listNodes()).filter((r) => !isAlive(r, nowMs)).map((r) => r.node));
}

export interface GetCapacityRequest {
  volume_capabilities?: unknown[] | null;
  parameters?: Record<string, string> | null;
  accessible_topology?: CsiTopology | null;
}

export interface GetCapacityResponse {
  available_capacity: string;
  maximum_volume_size: { value: string } | null;
  minimum_volume_size: { value: string } | null;
}

/**
 * Engines reach replicas over the network, so a volume placed anywhere can be used from any node
 * and the capacity of a topology segment is that of the whole cluster: a segment only matters by
 * ruling out every node when it names one Tandem does not know. The largest volume possible is
 * the free space of the n-th roomiest node (n = numberOfReplicas, one replica per node); the
 * aggregate is the total free space divided by n.
 */
export async function getCapacity(
  cluster: ControllerCluster,
  request: GetCapacityRequest,
): Promise<GetCapacityResponse> {
  const own = Object.fromEntries(
    Object.entries(request.parameters ?? {}).filter(([key]) => !key.startsWith('csi.storage.k8s.io/')),
  );
  const parsed = parseStorageClassParameters(own);
  if (!parsed.ok) throw invalidArgument(`invalid StorageClass parameters: ${parsed.errors.join('; ')}`);
  const replicas = parsed.value.numberOfReplicas;
  const nodes = (await nodeInventory(cluster)).filter((n) => n.schedulable);
  const segments = request.accessible_topology?.segments ?? {};
  const inSegment = Object.entries(segments).every(
    ([key, value]) => key !== TOPOLOGY_NODE_KEY || nodes.some((n) => n.name === value),
  );
  const free = inSegment ? nodes.map((n) => n.freeBytes).sort((a, b) => b - a) : [];
  const largest = free.length >= replicas ? (free[replicas - 1] ?? 0) : 0;
  const total = free.reduce((sum, bytes) => sum + bytes, 0);
  const available = free.length >= replicas ? Math.floor(total / replicas) : 0;
  return {
    available_capacity: String(available),
    maximum_volume_size: { value: String(largest) },
    minimum_volume_size: { value: String(MIN_VOLUME_BYTES) },
  };
}
