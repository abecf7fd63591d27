/**
 * NodeExpandVolume: after ControllerExpandVolume, grows the volume's block device on this node to
 * the size the engine serves, then the filesystem on it, both online.
 *
 * The device: nbdfuse + loop attachments bound the loop device by its size limit over the engine's
 * growable export (fuse-loop.ts); the limit is raised to the size a new connection to the engine
 * is offered. The engine serves the new size only once every replica has grown, which may take a
 * moment after ControllerExpandVolume returned: the call waits for it (engineWaitMs at most) and
 * answers UNAVAILABLE if it did not come (kubelet retries). Attachments that keep the size they
 * were attached with (kernel NBD; nbdfuse + loop attached before the growable export) answer
 * FAILED_PRECONDITION while smaller than asked: the new size reaches them when the volume is
 * staged again (the pod restarted), where NodeStageVolume grows the filesystem itself.
 */
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CsiVolumeCapability } from '../controller/capabilities.js';
import { failedPrecondition, invalidArgument, notFound, unavailable } from '../csi/errors.js';
import { engineSocketPath } from '../csi/node-topology.js';
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

/**
 * Grows the device to what the engine serves, waiting (at most engineWaitMs) for the engine to
 * reach `required`; the device's size afterwards. `required` 0: whatever the engine serves now.
 */
async function growDevice(
  env: NodeEnv,
  volumeId: string,
  device: string,
  required: number,
  deviceBytes: number,
  context: RpcContext,
): Promise<number> {
  const socket = engineSocketPath(env.engineSocketDir, volumeId);
  const deadline = Date.now() + env.engineWaitMs;
  let served = deviceBytes;
  let answered = false;
  for (;;) {
    if (await env.ops.socketAnswers(socket)) {
      answered = true;
      const grown = await env.ops.growDevice(volumeId, device, socket);
      if (grown.sizeBytes > served)
        context.logger.info({ volumeId, device, sizeBytes: grown.sizeBytes }, 'block device grown');
      served = grown.sizeBytes;
      if (!grown.growable) {
        if (required > served)
          throw failedPrecondition(
            `volume ${volumeId}: the block device on this node still has ${served} bytes, fewer than the ${required} asked for; ` +
              'this attachment keeps the size it had when the volume was staged (kernel NBD, or nbdfuse attached by an older Tandem), so the new size reaches this node when the volume is staged again (restart the pod), and the filesystem is grown then',
          );
        return served;
      }
      if (served >= required) return served;
    } else if (required <= served) {
      return served; // no engine to ask, and nothing asked for beyond what the device has
    }
    const left = deadline - Date.now();
    if (context.signal.aborted || left <= 0)
      throw unavailable(
        answered
          ? `volume ${volumeId}: the engine on this node serves ${served} bytes, fewer than the ${required} asked for; ` +
              'it serves the new size once every replica has grown (retry)'
          : `volume ${volumeId}: no engine answers on ${socket}, and the block device has ${served} bytes, fewer than the ${required} asked for`,
      );
    await sleep(Math.min(200, left), undefined, { signal: context.signal }).catch(() => undefined);
  }
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

  let deviceBytes = await env.ops.deviceSize(device);
  if (required === 0 || required > deviceBytes)
    deviceBytes = await growDevice(env, volumeId, device, required, deviceBytes, context);

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
