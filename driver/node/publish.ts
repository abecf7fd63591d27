/**
 * NodePublishVolume and NodeUnpublishVolume: a staged volume made visible at a pod's target path.
 * Mount access bind-mounts the staging directory; block access bind-mounts the device onto a file.
 *
 * Read-only is the request's `readonly` or a reader-only access mode. For a filesystem the bind
 * mount is remounted read-only. A read-only mount does not stop writes through a device file on
 * it (the kernel checks device files against the device, not the mount), so a read-only block
 * publish binds a read-only loop device over the volume's device instead; unpublish removes it.
 */

import type { CsiVolumeCapability } from '../controller/capabilities.js';
import { alreadyExists, failedPrecondition } from '../csi/errors.js';
import type { RpcContext } from '../csi/rpc.js';
import type { MountEntry } from './mounts.js';
import {
  isTandemVolumeId,
  type NodeEnv,
  readerOnly,
  requireAbsolutePath,
  requireCapability,
  requireVolumeId,
} from './requests.js';
import { deviceMountAt, readStageRecord } from './stage.js';
import { publishNfs } from './stage-nfs.js';

export interface NodePublishVolumeRequest {
  volume_id: string;
  publish_context?: Record<string, string>;
  staging_target_path: string;
  target_path: string;
  volume_capability: CsiVolumeCapability | null;
  readonly?: boolean;
  secrets?: Record<string, string>;
  volume_context?: Record<string, string>;
}

export interface NodeUnpublishVolumeRequest {
  volume_id: string;
  target_path: string;
}

const sameNumber = (
  a: { major: number; minor: number } | undefined,
  b: { major: number; minor: number } | undefined,
) => a !== undefined && b !== undefined && a.major === b.major && a.minor === b.minor;

export async function nodePublishVolume(
  env: NodeEnv,
  request: NodePublishVolumeRequest,
  context: RpcContext,
): Promise<Record<string, never>> {
  const volumeId = requireVolumeId(request.volume_id);
  const stagingTargetPath = requireAbsolutePath('staging_target_path', request.staging_target_path);
  const targetPath = requireAbsolutePath('target_path', request.target_path);
  const capability = requireCapability(request.volume_capability);
  const readOnly = request.readonly === true || readerOnly(capability.mode);
  const notStaged = `volume ${volumeId} is not staged at ${stagingTargetPath} on this node; NodeStageVolume comes first`;

  const record = isTandemVolumeId(volumeId) ? await readStageRecord(env.stateDir, volumeId) : undefined;
  if (record === undefined || record.stagingTargetPath !== stagingTargetPath)
    throw failedPrecondition(notStaged);
  if (record.accessType === 'nfs') {
    if (capability.volumeMode === 'Block')
      throw failedPrecondition(`volume ${volumeId} is staged as an NFS export; it has no block access`);
    await publishNfs(env, record, targetPath, readOnly, context);
    return {};
  }
  const accessType = capability.volumeMode === 'Block' ? 'block' : 'mount';
  if (record.accessType !== accessType)
    throw failedPrecondition(
      `volume ${volumeId} is staged for ${record.accessType} access; it cannot be published for ${accessType} access`,
    );
  const device = await env.ops.attachedDevice(volumeId);
  if (device === undefined) throw failedPrecondition(`${notStaged} (its block device is gone)`);
  const target = (await env.ops.mounts()).filter((m) => m.mountPoint === targetPath).at(-1);
  const publishedRw = (rw: boolean) =>
    alreadyExists(
      `volume ${volumeId} is already published at ${targetPath} ${rw ? 'read-write' : 'read-only'}; unpublish it before publishing it ${rw ? 'read-only' : 'read-write'}`,
    );

  if (accessType === 'mount') {
    const staged = await deviceMountAt(env, device, stagingTargetPath);
    if (staged === undefined) throw failedPrecondition(`${notStaged} (nothing of it is mounted there)`);
    if (target !== undefined) {
      if (target.major !== staged.major || target.minor !== staged.minor)
        throw alreadyExists(`${targetPath} already has ${target.source} (${target.fsType}) mounted`);
      const targetReadOnly = target.options.includes('ro');
      if (targetReadOnly === readOnly) return {};
      throw publishedRw(!targetReadOnly);
    }
    await env.ops.bindMount(stagingTargetPath, targetPath, readOnly);
    context.logger.info({ volumeId, targetPath, readOnly }, 'published');
    return {};
  }

  if (target !== undefined) {
    const at = await env.ops.deviceNumber(targetPath);
    if (sameNumber(at, await env.ops.deviceNumber(device))) {
      if (!readOnly) return {};
      throw publishedRw(true);
    }
    for (const loop of await env.ops.loopsBackedBy(device))
      if (sameNumber(at, await env.ops.deviceNumber(loop))) {
        if (readOnly) return {};
        throw publishedRw(false);
      }
    throw alreadyExists(`${targetPath} already has another device mounted`);
  }
  const source = readOnly ? await env.ops.createReadOnlyLoop(device) : device;
  try {
    await env.ops.bindMount(source, targetPath, readOnly);
  } catch (err) {
    if (source !== device) await env.ops.detachLoop(source).catch(() => undefined);
    throw err;
  }
  context.logger.info({ volumeId, targetPath, readOnly, device: source }, 'published');
  return {};
}

export async function nodeUnpublishVolume(
  env: NodeEnv,
  request: NodeUnpublishVolumeRequest,
  context: RpcContext,
): Promise<Record<string, never>> {
  const volumeId = requireVolumeId(request.volume_id);
  const targetPath = requireAbsolutePath('target_path', request.target_path);
  const entry = (await env.ops.mounts()).filter((m) => m.mountPoint === targetPath).at(-1);
  const mounted = entry !== undefined;
  // A read-only block publish bound a loop device of its own; it goes with the bind mount.
  const loop = entry === undefined ? undefined : await readOnlyLoopOf(env, entry);
  await env.ops.unmount(targetPath);
  if (loop !== undefined) await env.ops.detachLoop(loop);
  await env.ops.removePath(targetPath);
  if (mounted) context.logger.info({ volumeId, targetPath }, 'unpublished');
  return {};
}

/** The read-only loop device (over another block device) bound by `entry`, if that is what it is. */
async function readOnlyLoopOf(env: NodeEnv, entry: MountEntry): Promise<string | undefined> {
  if (entry.fsType !== 'devtmpfs' || !/^\/loop\d+$/.test(entry.root)) return undefined;
  const loop = `/dev${entry.root}`;
  const info = await env.ops.loopInfo(loop);
  return info?.readOnly && info.backingFile.startsWith('/dev/') ? loop : undefined;
}
