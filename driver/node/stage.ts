/**
 * NodeStageVolume and NodeUnstageVolume: the volume's block device on this node (attached to the
 * engine's NBD socket), and for mount access its filesystem (formatted on first use, grown when
 * the device has grown) mounted at the staging path.
 *
 * What a stage asked for is kept in `<state-dir>/staged/<volume>.json`, written once the stage is
 * complete; whether it still holds is read from the machine (attachment, mountinfo). So a
 * restarted plugin answers a repeated call exactly as its predecessor would have.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CsiVolumeCapability } from '../controller/capabilities.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, unavailable } from '../csi/errors.js';
import { engineSocketPath } from '../csi/node-topology.js';
import type { RpcContext } from '../csi/rpc.js';
import { growIfDeviceLarger } from './expand.js';
import { FilesystemMismatchError, type FsType } from './filesystem.js';
import type { MountEntry } from './mounts.js';
import {
  isTandemVolumeId,
  type NodeEnv,
  readerOnly,
  requireAbsolutePath,
  requireCapability,
  requireVolumeId,
  resolveFsType,
} from './requests.js';
import { nfsPublishedTargets, nfsTarget, stageNfs } from './stage-nfs.js';

export interface NodeStageVolumeRequest {
  volume_id: string;
  publish_context?: Record<string, string>;
  staging_target_path: string;
  volume_capability: CsiVolumeCapability | null;
  secrets?: Record<string, string>;
  volume_context?: Record<string, string>;
}

export interface NodeUnstageVolumeRequest {
  volume_id: string;
  staging_target_path: string;
}

/** What a completed NodeStageVolume was asked for. */
export interface StageRecord {
  volumeId: string;
  stagingTargetPath: string;
  /** nfs: a ReadWriteMany Filesystem volume, its share manager's export mounted. */
  accessType: 'mount' | 'block' | 'nfs';
  /** Mount access only. */
  fsType?: FsType;
  /** NFS only: the Service address and the mount options ControllerPublishVolume gave. */
  nfs?: { server: string; options: string };
  mountFlags: string[];
  readOnly: boolean;
}

export const stagedDir = (stateDir: string) => join(stateDir, 'staged');
export const devicesDir = (stateDir: string) => join(stateDir, 'devices');
const recordPath = (stateDir: string, volumeId: string) => join(stagedDir(stateDir), `${volumeId}.json`);

export async function readStageRecord(stateDir: string, volumeId: string): Promise<StageRecord | undefined> {
  if (!isTandemVolumeId(volumeId)) return undefined;
  let text: string;
  try {
    text = await readFile(recordPath(stateDir, volumeId), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as StageRecord;
}

/** Written to a temporary file and renamed: a crash leaves the old record or the new one. */
export async function writeStageRecord(stateDir: string, record: StageRecord): Promise<void> {
  await mkdir(stagedDir(stateDir), { recursive: true, mode: 0o700 });
  const path = recordPath(stateDir, record.volumeId);
  await writeFile(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

function sameStage(a: StageRecord, b: StageRecord): boolean {
  const flags = (r: StageRecord) => [...r.mountFlags].sort().join('\0');
  return (
    a.stagingTargetPath === b.stagingTargetPath &&
    a.accessType === b.accessType &&
    a.fsType === b.fsType &&
    a.readOnly === b.readOnly &&
    a.nfs?.server === b.nfs?.server &&
    a.nfs?.options === b.nfs?.options &&
    flags(a) === flags(b)
  );
}

function describe(record: StageRecord): string {
  const access =
    record.accessType === 'block'
      ? 'block access'
      : record.accessType === 'nfs'
        ? `the NFS export of ${record.nfs?.server} (${record.nfs?.options})`
        : `mount access (${record.fsType}${record.mountFlags.length > 0 ? `, flags ${record.mountFlags.join(',')}` : ''})`;
  return `${access}${record.readOnly ? ', read-only' : ''} at ${record.stagingTargetPath}`;
}

/** The mount entry at `path` when it is `device`'s filesystem. */
export async function deviceMountAt(
  env: NodeEnv,
  device: string,
  path: string,
): Promise<MountEntry | undefined> {
  const number = await env.ops.deviceNumber(device);
  if (number === undefined) return undefined;
  const entry = (await env.ops.mounts()).filter((m) => m.mountPoint === path).at(-1);
  return entry?.major === number.major && entry.minor === number.minor ? entry : undefined;
}

/**
 * Waits until the engine's socket accepts a connection: the data plane starts the engine when
 * ControllerPublishVolume asks for it, which may be a moment before kubelet stages.
 */
async function waitForEngine(env: NodeEnv, volumeId: string, signal: AbortSignal): Promise<string> {
  const socket = engineSocketPath(env.engineSocketDir, volumeId);
  const deadline = Date.now() + env.engineWaitMs;
  for (;;) {
    if (await env.ops.socketAnswers(socket)) return socket;
    const left = deadline - Date.now();
    if (signal.aborted || left <= 0)
      throw unavailable(
        `no engine serves volume ${volumeId} on this node (nothing answers on ${socket}); ControllerPublishVolume starts it`,
      );
    await sleep(Math.min(200, left), undefined, { signal }).catch(() => undefined);
  }
}

export async function nodeStageVolume(
  env: NodeEnv,
  request: NodeStageVolumeRequest,
  context: RpcContext,
): Promise<Record<string, never>> {
  const volumeId = requireVolumeId(request.volume_id);
  const stagingTargetPath = requireAbsolutePath('staging_target_path', request.staging_target_path);
  const capability = requireCapability(request.volume_capability);
  const mountAccess = capability.volumeMode === 'Filesystem';
  const nfs = nfsTarget(request.publish_context);
  if (nfs !== undefined && !mountAccess)
    throw invalidArgument(`volume ${volumeId} is served over NFS: it has mount access only, not block`);
  const wanted: StageRecord = {
    volumeId,
    stagingTargetPath,
    accessType: nfs ? 'nfs' : mountAccess ? 'mount' : 'block',
    ...(mountAccess && !nfs
      ? { fsType: resolveFsType(capability.fsType, request.volume_context ?? {}) }
      : {}),
    ...(nfs ? { nfs } : {}),
    mountFlags: mountAccess ? [...(request.volume_capability?.mount?.mount_flags ?? [])] : [],
    readOnly: readerOnly(capability.mode),
  };
  if (!isTandemVolumeId(volumeId)) throw notFound(`${JSON.stringify(volumeId)} is not a Tandem volume id`);

  const existing = await readStageRecord(env.stateDir, volumeId);
  if (existing !== undefined && !sameStage(existing, wanted))
    throw alreadyExists(
      `volume ${volumeId} is staged on this node with ${describe(existing)}; it cannot also be staged with ${describe(wanted)}`,
    );
  if (wanted.nfs !== undefined) {
    await stageNfs(env, { ...wanted, nfs: wanted.nfs }, context);
    await writeStageRecord(env.stateDir, wanted);
    return {};
  }
  if (existing !== undefined) {
    // Already complete? Then nothing to do (and no need for the engine to answer right now).
    const device = await env.ops.attachedDevice(volumeId);
    if (device !== undefined && (!mountAccess || (await deviceMountAt(env, device, stagingTargetPath))))
      return {};
  }

  const socket = await waitForEngine(env, volumeId, context.signal);
  const device = await env.ops.attach(volumeId, socket);
  context.logger.info({ volumeId, device }, 'block device attached');
  if (wanted.fsType !== undefined) {
    try {
      const { formatted } = await env.ops.ensureFilesystem(device, wanted.fsType);
      if (formatted) context.logger.info({ volumeId, device, fsType: wanted.fsType }, 'formatted');
    } catch (err) {
      if (err instanceof FilesystemMismatchError)
        throw failedPrecondition(`volume ${volumeId}: ${err.message} (fs_type asks for ${err.wanted})`);
      throw err;
    }
    const mounted = (await env.ops.mounts()).filter((m) => m.mountPoint === stagingTargetPath).at(-1);
    if (mounted !== undefined && !(await deviceMountAt(env, device, stagingTargetPath)))
      throw alreadyExists(
        `${stagingTargetPath} already has ${mounted.source} (${mounted.fsType}) mounted, not volume ${volumeId}`,
      );
    // The device may have grown since the filesystem was made (an expansion while the volume was
    // not staged here, or one NodeExpandVolume could not finish because the device kept its old
    // size). ext4 is grown before it is mounted (offline: needs no privilege beyond writing the
    // device), xfs only grows mounted.
    const grow = !wanted.readOnly;
    if (grow && wanted.fsType === 'ext4' && mounted === undefined)
      await growIfDeviceLarger(env, device, undefined, 'ext4', context);
    await env.ops.mount(device, stagingTargetPath, wanted.fsType, wanted.mountFlags, wanted.readOnly);
    if (grow && (wanted.fsType === 'xfs' || mounted !== undefined))
      await growIfDeviceLarger(env, device, stagingTargetPath, wanted.fsType, context);
  }
  await writeStageRecord(env.stateDir, wanted);
  return {};
}

export async function nodeUnstageVolume(
  env: NodeEnv,
  request: NodeUnstageVolumeRequest,
  context: RpcContext,
): Promise<Record<string, never>> {
  const volumeId = requireVolumeId(request.volume_id);
  const stagingTargetPath = requireAbsolutePath('staging_target_path', request.staging_target_path);
  if (!isTandemVolumeId(volumeId)) return {}; // never staged here: nothing to undo

  const record = await readStageRecord(env.stateDir, volumeId);
  if (record?.accessType === 'nfs') {
    const users = await nfsPublishedTargets(env, record);
    if (users.length > 0)
      throw failedPrecondition(
        `volume ${volumeId} is still published at ${users.join(', ')}; NodeUnpublishVolume comes first`,
      );
  }
  const device = await env.ops.attachedDevice(volumeId);
  if (device !== undefined) {
    const users = await publishedTargets(env, device, stagingTargetPath);
    if (users.length > 0)
      throw failedPrecondition(
        `volume ${volumeId} is still published at ${users.join(', ')}; NodeUnpublishVolume comes first`,
      );
    // Read-only loops left by a publish that died before its bind mount: nobody uses them.
    for (const loop of await env.ops.loopsBackedBy(device)) await env.ops.detachLoop(loop);
  }
  // The device the staging path is mounted from is this volume's, whatever else is known of it.
  const stagedFrom = (await env.ops.mounts())
    .filter((m) => m.mountPoint === stagingTargetPath)
    .at(-1)?.source;
  await env.ops.unmount(stagingTargetPath);
  await env.ops.detach(volumeId);
  // A loop device the attachment records no longer find: its FUSE mount went away with another
  // mount namespace (a killed share-manager Pod's), so its backing file has no path here any more
  // and losetup names it "/disk". Mounted at our staging path, it can only be ours.
  if (device === undefined && stagedFrom?.startsWith('/dev/loop')) await env.ops.detachLoop(stagedFrom);
  await rm(recordPath(env.stateDir, volumeId), { force: true });
  context.logger.info({ volumeId }, 'unstaged');
  return {};
}

/**
 * Mount points that use `device` besides the staging path: bind mounts of its filesystem (same
 * device number), and device files bind-mounted for block access (the device itself, or a
 * read-only loop over it; those show devtmpfs with the device's name as the mount's root).
 */
export async function publishedTargets(
  env: NodeEnv,
  device: string,
  stagingTargetPath: string,
): Promise<string[]> {
  const number = await env.ops.deviceNumber(device);
  const names = new Set(
    [device, ...(await env.ops.loopsBackedBy(device))].map((d) => `/${d.replace(/^\/dev\//, '')}`),
  );
  return (await env.ops.mounts())
    .filter((m) => m.mountPoint !== stagingTargetPath)
    .filter(
      (m) =>
        (number !== undefined && m.major === number.major && m.minor === number.minor) ||
        (m.fsType === 'devtmpfs' && names.has(m.root)),
    )
    .map((m) => m.mountPoint);
}
