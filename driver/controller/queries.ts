/** The controller's read-only calls: ListVolumes, ControllerGetVolume, ValidateVolumeCapabilities. */
import { aborted, invalidArgument, notFound } from '../csi/errors.js';
import { type CsiVolumeCapability, type ValidateResult, validateVolumeCapabilities } from './capabilities.js';
import type { ControllerCluster } from './cluster.js';
import { lostNodes } from './inventory.js';
import {
  type CsiVolume,
  type CsiVolumeCondition,
  csiVolume,
  publishedNodes,
  volumeCondition,
} from './volume-view.js';

export interface ListVolumesRequest {
  max_entries?: number;
  starting_token?: string;
}

interface VolumeEntry {
  volume: CsiVolume;
  status: { published_node_ids: string[]; volume_condition: CsiVolumeCondition };
}

/**
 * Tokens name the last volume of the previous page, so a page stays right when volumes are
 * created or deleted between calls (the API's own continue tokens expire after minutes, and a
 * CO may page slowly). The prefix tells a token of ours from anything else, which is ABORTED.
 */
const TOKEN_PREFIX = 'after:';

export async function listVolumes(
  cluster: ControllerCluster,
  request: ListVolumesRequest,
): Promise<{ entries: VolumeEntry[]; next_token: string }> {
  const max = request.max_entries ?? 0;
  if (!Number.isInteger(max) || max < 0) throw invalidArgument(`max_entries ${max} is negative`);
  const token = request.starting_token ?? '';
  if (token !== '' && !token.startsWith(TOKEN_PREFIX))
    throw aborted(
      `starting_token "${token.slice(0, 64)}" was not issued by this plugin; list again without it`,
    );
  const after = token.slice(TOKEN_PREFIX.length);
  const volumes = (await cluster.listVolumes())
    // A Volume being deleted waits only for its nodes to let go of it: for CSI it is gone.
    .filter((v) => v.metadata.name > after && !v.metadata.deletionTimestamp)
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  const page = max > 0 ? volumes.slice(0, max) : volumes;
  const lost = await lostNodes(cluster);
  const last = page.at(-1);
  return {
    entries: page.map((volume) => ({
      volume: csiVolume(volume),
      status: { published_node_ids: publishedNodes(volume), volume_condition: volumeCondition(volume, lost) },
    })),
    next_token:
      last !== undefined && page.length < volumes.length ? `${TOKEN_PREFIX}${last.metadata.name}` : '',
  };
}

export async function controllerGetVolume(
  cluster: ControllerCluster,
  request: { volume_id: string },
): Promise<VolumeEntry> {
  if (!request.volume_id) throw invalidArgument('volume_id is empty');
  const volume = await cluster.getVolume(request.volume_id);
  if (volume === undefined) throw notFound(`volume ${request.volume_id} does not exist`);
  return {
    volume: csiVolume(volume),
    status: {
      published_node_ids: publishedNodes(volume),
      volume_condition: volumeCondition(volume, await lostNodes(cluster)),
    },
  };
}

export interface ValidateVolumeCapabilitiesRequest {
  volume_id: string;
  volume_capabilities?: CsiVolumeCapability[] | null;
}

export async function validateCapabilities(
  cluster: ControllerCluster,
  request: ValidateVolumeCapabilitiesRequest,
): Promise<ValidateResult> {
  if (!request.volume_id) throw invalidArgument('volume_id is empty');
  if (!request.volume_capabilities || request.volume_capabilities.length === 0)
    throw invalidArgument('volume_capabilities is empty; give at least one capability to validate');
  const volume = await cluster.getVolume(request.volume_id);
  if (volume === undefined) throw notFound(`volume ${request.volume_id} does not exist`);
  return validateVolumeCapabilities(request.volume_capabilities, volume);
}
