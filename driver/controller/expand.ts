/**
 * ControllerExpandVolume: raises spec.sizeBytes; the nodes holding replicas grow them and the
 * engines grow their export while running (docs/dataplane.md, "Expansion"), and NodeExpandVolume
 * grows the filesystem (for an RWX Filesystem volume its share manager does). Volumes never
 * shrink; expansion waits while two engines share a volume (DESIGN: nothing changes the replica
 * set during a live migration).
 */
import { failedPrecondition, invalidArgument, notFound, outOfRange } from '../csi/errors.js';
import type { RpcContext } from '../csi/rpc.js';
import { type ControllerCluster, updateVolume } from './cluster.js';
import { BLOCK_BYTES, type CsiCapacityRange, MAX_VOLUME_BYTES } from './create-volume.js';

export interface ControllerExpandVolumeRequest {
  volume_id: string;
  capacity_range?: CsiCapacityRange | null;
}

function bytes(field: string, value: string | number | undefined): number {
  const text = String(value ?? '0');
  if (!/^[0-9]+$/.test(text))
    throw invalidArgument(`capacity_range.${field}: "${text}" is not a non-negative integer`);
  const n = Number(text);
  if (n > MAX_VOLUME_BYTES)
    throw outOfRange(`capacity_range.${field}: ${text} is larger than Tandem's maximum ${MAX_VOLUME_BYTES}`);
  return n;
}

export async function controllerExpandVolume(
  cluster: ControllerCluster,
  request: ControllerExpandVolumeRequest,
  context: RpcContext,
): Promise<{ capacity_bytes: string; node_expansion_required: boolean }> {
  const id = request.volume_id;
  if (!id) throw invalidArgument('volume_id is empty');
  if (!request.capacity_range) throw invalidArgument('capacity_range is missing');
  const required = bytes('required_bytes', request.capacity_range.required_bytes);
  const limit = bytes('limit_bytes', request.capacity_range.limit_bytes);
  if (required === 0 && limit === 0) throw invalidArgument('capacity_range names no size');
  // Only a limit: grow to it (in whole blocks); else the required size rounded up.
  const wanted =
    required > 0
      ? Math.ceil(required / BLOCK_BYTES) * BLOCK_BYTES
      : Math.floor(limit / BLOCK_BYTES) * BLOCK_BYTES;
  if (limit > 0 && wanted > limit)
    throw outOfRange(
      `capacity_range: ${required} rounds up to ${wanted} (whole ${BLOCK_BYTES}-byte blocks), more than limit_bytes ${limit}`,
    );
  const updated = await updateVolume(
    cluster,
    id,
    (volume) => {
      if (volume.spec.sizeBytes >= wanted) return undefined;
      if ((volume.spec.engines ?? []).length > 1)
        throw failedPrecondition(
          `volume ${id} is being live-migrated (two engines); expand it after the migration ends`,
        );
      volume.spec.sizeBytes = wanted;
      return volume;
    },
    'spec',
  );
  if (updated === undefined) throw notFound(`volume ${id} does not exist`);
  if (limit > 0 && updated.spec.sizeBytes > limit)
    throw outOfRange(
      `volume ${id} already has ${updated.spec.sizeBytes} bytes, more than limit_bytes ${limit}; volumes never shrink`,
    );
  context.logger.info({ volume: id, sizeBytes: updated.spec.sizeBytes }, 'expansion requested');
  return {
    capacity_bytes: String(updated.spec.sizeBytes),
    // An RWX Filesystem volume's filesystem lives under its share manager, which grows it under
    // the running export (driver/share-manager/grow.ts); client nodes only hold NFS mounts, so the
    // kubelet must not call NodeExpandVolume there.
    node_expansion_required: updated.spec.volumeMode === 'Filesystem' && updated.spec.share === undefined,
  };
}
