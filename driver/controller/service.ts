/**
 * The CSI Controller service: each RPC is a small function over the ControllerCluster interface,
 * assembled here into the record serviceImplementation() serves.
 */
import type { RpcContext } from '../csi/rpc.js';
import { controllerGetCapabilities } from './capabilities.js';
import type { ControllerCluster } from './cluster.js';
import type { CreateVolumeRequest } from './create-volume.js';
import { type ControllerExpandVolumeRequest, controllerExpandVolume } from './expand.js';
import { type GetCapacityRequest, getCapacity } from './inventory.js';
import { createVolume, type DeleteVolumeRequest, deleteVolume } from './provision.js';
import {
  type ControllerPublishVolumeRequest,
  type ControllerUnpublishVolumeRequest,
  controllerPublishVolume,
  controllerUnpublishVolume,
} from './publish.js';
import {
  controllerGetVolume,
  type ListVolumesRequest,
  listVolumes,
  type ValidateVolumeCapabilitiesRequest,
  validateCapabilities,
} from './queries.js';
import type { ShareCluster } from './share-cluster.js';
import type { EventSink } from './volume-events.js';

export interface ControllerServiceOptions {
  cluster: ControllerCluster;
  /** Where refusals a user must see go as Events (on the claim when the provisioner names it). */
  events?: EventSink;
  /** The share managers' objects (RWX Filesystem volumes). */
  shares?: ShareCluster;
  engineWaitMs?: number;
}

export function controllerHandlers(options: ControllerServiceOptions) {
  const { cluster } = options;
  const shares = options.shares ? { shares: options.shares } : {};
  const publishDeps = {
    cluster,
    ...shares,
    ...(options.engineWaitMs === undefined ? {} : { engineWaitMs: options.engineWaitMs }),
  };
  const provisionDeps = { cluster, ...shares, ...(options.events ? { events: options.events } : {}) };
  return {
    CreateVolume: (request: CreateVolumeRequest, context: RpcContext) =>
      createVolume(provisionDeps, request, context),
    DeleteVolume: (request: DeleteVolumeRequest, context: RpcContext) =>
      deleteVolume(provisionDeps, request, context),
    ControllerPublishVolume: (request: ControllerPublishVolumeRequest, context: RpcContext) =>
      controllerPublishVolume(publishDeps, request, context),
    ControllerUnpublishVolume: (request: ControllerUnpublishVolumeRequest, context: RpcContext) =>
      controllerUnpublishVolume(publishDeps, request, context),
    ValidateVolumeCapabilities: (request: ValidateVolumeCapabilitiesRequest) =>
      validateCapabilities(cluster, request),
    ListVolumes: (request: ListVolumesRequest) => listVolumes(cluster, request),
    GetCapacity: (request: GetCapacityRequest) => getCapacity(cluster, request),
    ControllerGetCapabilities: async () => controllerGetCapabilities(),
    ControllerExpandVolume: (request: ControllerExpandVolumeRequest, context: RpcContext) =>
      controllerExpandVolume(cluster, request, context),
    ControllerGetVolume: (request: { volume_id: string }) => controllerGetVolume(cluster, request),
  };
}
