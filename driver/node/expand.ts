/**
 * NodeExpandVolume: grows the filesystem to the block device's size after ControllerExpandVolume.
 *
 * The device keeps the size it had when it was attached: nbdfuse fixes the file size at start-up
 * and the loop device follows it, and the kernel NBD client reads the size once when it connects.
 * So when the device is still smaller than the size asked for, the filesystem cannot grow now;
 * the call fails with FAILED_PRECONDITION saying so, and the new size reaches the node when the
 * volume is staged again (the pod restarted), where NodeStageVolume grows the filesystem itself.
 */
import { resolve } from 'node:path';
import type { CsiVolumeCapability } from '../controller/capabilities.js';
import { failedPrecondition, invalidArgument, notFound } from '../csi/errors.js';
import type { RpcContext } from '../csi/rpc.js';
import type { FsType } from './filesystem.js';
import { isTandemVolumeId, type NodeEnv, requireCapability, requireVolumeId } from './requests.js';

export interface NodeExpandVolumeRequest {
  volume_id: string;
  volume_path: string;
  capacity_range?: { required_bytes?: string | number; limit_bytes?: string | number } | null;
  staging_target_path?: string;
  volume_capability?: CsiVolumeCapability | null;
}

export interface NodeExpandVolumeResponse {
  capacity_bytes: string;
}

/**
 * Grows the filesystem on `device` when the device is larger; whether it did. Online when
 * `mountPoint` is given, else offline (ext4 before NodeStageVolume mounts it).
 */
export async function growIfDeviceLarger(
  env: NodeEnv,
  device: string,
  mountPoint: string | undefined,
  fsType: FsType,
  context: RpcContext,
): Promise<boolean> {
  const deviceBytes = await env.ops.deviceSize(device);
  const fsBytes = await env.ops.filesystemSize(device, mountPoint, fsType);
  if (deviceBytes <= fsBytes) return false;
  context.logger.info({ device, fsType, fsBytes, deviceBytes }, 'growing the filesystem to the device size');
  await env.ops.growFilesystem(device, mountPoint, fsType);
  return true;
}

function byteCount(field: string, value: string | number | undefined): number {
  const n = Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0)
    throw invalidArgument(`${field} ${String(value)} is not a byte count`);
  return n;
}

export async function nodeExpandVolume(
  env: NodeEnv,
  request: NodeExpandVolumeRequest,
  context: RpcContext,
): Promise<NodeExpandVolumeResponse> {
  const volumeId = requireVolumeId(request.volume_id);
  if (!request.volume_path) throw invalidArgument('volume_path is empty');
  const required = byteCount('capacity_range.required_bytes', request.capacity_range?.required_bytes);
  const capability = request.volume_capability ? requireCapability(request.volume_capability) : undefined;
  const volumePath = resolve(request.volume_path);
  const kind = await env.ops.pathKind(volumePath);
  if (kind === undefined) throw notFound(`volume_path ${volumePath} does not exist`);
  const device = isTandemVolumeId(volumeId) ? await env.ops.attachedDevice(volumeId) : undefined;
  if (device === undefined) throw notFound(`volume ${volumeId} is not staged on this node`);

  const deviceBytes = await env.ops.deviceSize(device);
  if (required > deviceBytes)
    throw failedPrecondition(
      `volume ${volumeId}: the block device on this node still has ${deviceBytes} bytes, fewer than the ${required} asked for; ` +
        'the device keeps the size it had when the volume was staged, so the new size reaches this node when the volume is staged again (restart the pod), and the filesystem is grown then',
    );

  const block = capability ? capability.volumeMode === 'Block' : kind !== 'directory';
  if (!block) {
    const number = await env.ops.deviceNumber(device);
    const entry = (await env.ops.mounts()).filter((m) => m.mountPoint === volumePath).at(-1);
    if (
      entry === undefined ||
      number === undefined ||
      entry.major !== number.major ||
      entry.minor !== number.minor
    )
      throw failedPrecondition(`${volumePath} is not where volume ${volumeId}'s filesystem is mounted`);
    if (entry.fsType !== 'ext4' && entry.fsType !== 'xfs')
      throw failedPrecondition(`volume ${volumeId} holds ${entry.fsType}, which Tandem does not grow`);
    // A filesystem mounted read-only (a reader-only stage) cannot be resized; it grows when staged writable.
    if (!entry.superOptions.includes('ro'))
      await growIfDeviceLarger(env, device, volumePath, entry.fsType, context);
  }
  return { capacity_bytes: String(deviceBytes) };
}
