/**
 * CreateVolume and DeleteVolume over the Volume resources. Every step is derived from what the
 * cluster already holds, so a call retried after a crash at any point picks up where the first
 * attempt stopped: the Volume (spec), then its credential Secret, then the placement (status).
 */
import { status } from '@grpc/grpc-js';
import { newVolume, type ReplicaStatus, type ShareSpec, type Volume } from '../../lib/api/volume.js';
import { aborted, alreadyExists, CsiError, failedPrecondition, invalidArgument } from '../csi/errors.js';
import type { RpcContext } from '../csi/rpc.js';
import { type ControllerCluster, updateVolume } from './cluster.js';
import {
  type CreateVolumePlan,
  type CreateVolumeRequest,
  planCreateVolume,
  sameVolume,
  volumeSpecFor,
} from './create-volume.js';
import { nodeInventory } from './inventory.js';
import { type CsiTopology, placeReplicas } from './placement.js';
import type { ShareCluster } from './share-cluster.js';
import { deleteShare } from './share-publish.js';
import { shareSpecFor } from './share-spec.js';
import {
  type EventSink,
  eventSubject,
  PVC_NAME_ANNOTATION,
  PVC_NAMESPACE_ANNOTATION,
  PVC_UID_ANNOTATION,
} from './volume-events.js';
import { CSI_NAME_ANNOTATION, csiNameOf, volumeIdFor } from './volume-id.js';
import { type CsiVolume, csiVolume } from './volume-view.js';

export interface ProvisionDeps {
  cluster: ControllerCluster;
  shares?: ShareCluster;
  /** Reports a refusal the user must see (no room for replicas), on the claim when it is known. */
  events?: EventSink;
}

/** external-provisioner's --extra-create-metadata parameters naming the claim. */
const PVC_NAME_PARAMETER = 'csi.storage.k8s.io/pvc/name';
const PVC_NAMESPACE_PARAMETER = 'csi.storage.k8s.io/pvc/namespace';

/**
 * The claim the volume is for, as Volume annotations, so Events reach it. The UID is read from the
 * claim (the provisioner does not pass it); a claim that cannot be read only costs the UID.
 */
async function claimAnnotations(
  cluster: ControllerCluster,
  request: CreateVolumeRequest,
): Promise<Record<string, string>> {
  const name = request.parameters?.[PVC_NAME_PARAMETER];
  const namespace = request.parameters?.[PVC_NAMESPACE_PARAMETER];
  if (!name || !namespace) return {};
  const uid = await cluster.claimUid(namespace, name).catch(() => undefined);
  return {
    [PVC_NAME_ANNOTATION]: name,
    [PVC_NAMESPACE_ANNOTATION]: namespace,
    ...(uid ? { [PVC_UID_ANNOTATION]: uid } : {}),
  };
}

export async function createVolume(
  deps: ProvisionDeps,
  request: CreateVolumeRequest,
  context: RpcContext,
): Promise<{ volume: CsiVolume }> {
  const plan = planCreateVolume(request);
  const id = volumeIdFor(plan.name);
  const { cluster } = deps;
  let volume = await cluster.getVolume(id);
  if (volume === undefined) {
    const fresh = newVolume(id, {
      ...volumeSpecFor(plan),
      ...(servedOverNfs(plan) ? { share: await shareSpecOf(cluster, request, plan) } : {}),
    });
    fresh.metadata.annotations = {
      [CSI_NAME_ANNOTATION]: plan.name,
      ...(await claimAnnotations(cluster, request)),
    };
    fresh.metadata.labels = { 'app.kubernetes.io/managed-by': 'tandem' };
    volume = (await cluster.createVolume(fresh)) ?? (await cluster.getVolume(id));
    if (volume === undefined) throw aborted(`volume ${id} was created and deleted meanwhile; retry`);
    context.logger.info({ volume: id, sizeBytes: plan.sizeBytes }, 'Volume created');
  }
  if (csiNameOf(volume) !== plan.name)
    throw alreadyExists(`volume id ${id} belongs to the CSI volume ${csiNameOf(volume)}, not ${plan.name}`);
  sameVolume(volume, plan);
  if (volume.metadata.deletionTimestamp)
    throw aborted(`volume ${id} is being deleted; a CreateVolume with this name succeeds once it is gone`);

  await cluster.ensureCredential(id);
  if ((volume.status?.replicas ?? []).length < volume.spec.numberOfReplicas) {
    try {
      volume = await placeVolume(cluster, volume, plan.topology);
    } catch (err) {
      if (err instanceof CsiError && err.code === status.RESOURCE_EXHAUSTED)
        deps.events?.record(eventSubject(volume), {
          type: 'Warning',
          reason: 'NoRoomForReplicas',
          message: err.message,
        });
      throw err;
    }
  }
  return { volume: csiVolume(volume, accessibleTopology(plan.topology.requisite)) };
}

const servedOverNfs = (plan: CreateVolumePlan) =>
  plan.accessMode === 'ReadWriteMany' && plan.volumeMode === 'Filesystem';

/**
 * The share manager's settings, with the class's allowedTopologies read through the claim. A
 * class whose terms admit no node is refused: its share manager could never run.
 */
async function shareSpecOf(
  cluster: ControllerCluster,
  request: CreateVolumeRequest,
  plan: CreateVolumePlan,
): Promise<ShareSpec> {
  const name = request.parameters?.[PVC_NAME_PARAMETER];
  const namespace = request.parameters?.[PVC_NAMESPACE_PARAMETER];
  const nodes = name && namespace ? await cluster.allowedNodesOfClaim(namespace, name) : undefined;
  if (nodes !== undefined && nodes.length === 0)
    throw invalidArgument(
      `the allowedTopologies of the class of claim ${namespace}/${name} admit no node (every term's expressions contradict each other), so its share manager could run nowhere; fix the class's allowedTopologies`,
    );
  return shareSpecFor(plan.parameters, nodes);
}

/** Writes the replica placement into status (existing replicas kept, missing ones placed). */
async function placeVolume(
  cluster: ControllerCluster,
  read: Volume,
  topology: { requisite: CsiTopology[]; preferred: CsiTopology[] },
): Promise<Volume> {
  const id = read.metadata.name;
  const nodes = await nodeInventory(cluster);
  // The requisite topology says where the volume must be usable from, not where its data must
  // sit: engines reach replicas over the network, so replicas may go anywhere. Requisite nodes
  // are preferred after the preferred ones (a replica next to the engine saves a network hop).
  const placement = { requisite: [], preferred: [...topology.preferred, ...topology.requisite] };
  const updated = await updateVolume(
    cluster,
    id,
    (volume) => {
      const current = volume.status?.replicas ?? [];
      if (current.length >= volume.spec.numberOfReplicas) return undefined;
      const chosen = placeReplicas({
        replicas: volume.spec.numberOfReplicas,
        nodes,
        sizeBytes: volume.spec.sizeBytes,
        topology: placement,
        existing: current.map((r) => r.node),
      });
      const added: ReplicaStatus[] = chosen
        .filter((node) => !current.some((r) => r.node === node))
        .map((node) => ({
          node,
          address: nodes.find((n) => n.name === node)?.address ?? '',
          // A new volume's replicas are all empty, so all equal: every one starts readable.
          mode: current.length === 0 ? 'ReadWrite' : 'WriteOnly',
        }));
      const replicas = [...current, ...added];
      volume.status = {
        ...volume.status,
        epoch: volume.status?.epoch ?? 1,
        replicas,
        engines: volume.status?.engines ?? [],
        state: volume.status?.state ?? 'Detached',
        robustness: 'Healthy',
        healthyReplicas: replicas.filter((r) => r.mode === 'ReadWrite').length,
      };
      return volume;
    },
    'status',
    read,
  );
  if (updated === undefined) throw aborted(`volume ${id} was deleted while it was being placed`);
  return updated;
}

/**
 * The topology the volume is accessible from: the requisite terms it was asked for (engines
 * reach replicas over the network, so any node inside them can use it), or unconstrained.
 */
function accessibleTopology(requisite: readonly CsiTopology[]): CsiTopology[] {
  return requisite.map((term) => ({ segments: { ...term.segments } }));
}

export interface DeleteVolumeRequest {
  volume_id: string;
}

export async function deleteVolume(
  deps: ProvisionDeps,
  request: DeleteVolumeRequest,
  context: RpcContext,
): Promise<Record<string, never>> {
  const id = request.volume_id;
  if (!id) throw invalidArgument('volume_id is empty');
  const { cluster } = deps;
  const volume = await cluster.getVolume(id);
  if (volume !== undefined) {
    const engines = new Set([
      ...(volume.spec.engines ?? []).map((e) => e.node),
      ...(volume.status?.engines ?? []).map((e) => e.node),
    ]);
    // A share manager's engine is the volume's own, not a user's: it goes with the volume.
    if (volume.spec.share !== undefined) await deleteShare(deps, volume, context);
    else if (engines.size > 0)
      throw failedPrecondition(
        `volume ${id} is still attached to ${[...engines].join(', ')}; it can be deleted once every VolumeAttachment of it is gone`,
      );
    await cluster.deleteVolume(id);
    context.logger.info({ volume: id }, 'Volume deleted; the nodes remove its replicas');
  }
  // After the Volume: a node removing a replica needs no credential, one creating it does.
  await cluster.deleteCredential(id);
  return {};
}
