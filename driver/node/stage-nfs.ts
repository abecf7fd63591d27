/**
 * The node plugin's side of a ReadWriteMany Filesystem volume: no block device on this node, but
 * the share manager's export. NodeStageVolume mounts `<server>:/` at the staging path with the
 * class's options (both from ControllerPublishVolume's publish_context); NodePublishVolume
 * bind-mounts that into the pod; NodeUnstageVolume unmounts it. Like the block stages, what was
 * asked is kept in the stage record and whether it still holds is read from mountinfo.
 */
import { isIP } from 'node:net';
import { alreadyExists, failedPrecondition, invalidArgument, unavailable } from '../csi/errors.js';
import { NFS_OPTIONS_KEY, NFS_SERVER_KEY } from '../csi/publish-context.js';
import type { RpcContext } from '../csi/rpc.js';
import type { MountEntry } from './mounts.js';
import { NfsMountError, nfsSource } from './nfs-mount.js';
import type { NodeEnv } from './requests.js';
import type { StageRecord } from './stage.js';

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** What mount(8) takes as one -o argument: no spaces, quotes or control characters. */
const MOUNT_OPTIONS = /^[A-Za-z0-9_.,=:/-]{1,1024}$/;

/** The NFS server and options of a publish_context, validated; undefined when it names no server. */
export function nfsTarget(
  publishContext: Record<string, string> | undefined,
): { server: string; options: string } | undefined {
  const server = publishContext?.[NFS_SERVER_KEY];
  if (server === undefined) return undefined;
  if (isIP(server) === 0 && !DNS_NAME.test(server))
    throw invalidArgument(
      `publish_context ${NFS_SERVER_KEY} ${JSON.stringify(server)} is no IP address or DNS name`,
    );
  const options = publishContext?.[NFS_OPTIONS_KEY] ?? '';
  if (!MOUNT_OPTIONS.test(options))
    throw invalidArgument(
      `publish_context ${NFS_OPTIONS_KEY} ${JSON.stringify(options)} is not a mount option list (letters, digits and _.,=:/- only)`,
    );
  return { server, options };
}

/** The NFS mount of `server`'s export at `path`, if that is what is mounted there. */
export async function nfsMountAt(
  env: NodeEnv,
  server: string,
  path: string,
): Promise<MountEntry | undefined> {
  const entry = (await env.ops.mounts()).filter((m) => m.mountPoint === path).at(-1);
  return entry?.fsType.startsWith('nfs') && entry.source === nfsSource(server) ? entry : undefined;
}

export async function stageNfs(
  env: NodeEnv,
  wanted: StageRecord & { nfs: { server: string; options: string } },
  context: RpcContext,
): Promise<void> {
  const { server, options } = wanted.nfs;
  const path = wanted.stagingTargetPath;
  if (await nfsMountAt(env, server, path)) return;
  const other = (await env.ops.mounts()).filter((m) => m.mountPoint === path).at(-1);
  if (other !== undefined)
    throw alreadyExists(
      `${path} already has ${other.source} (${other.fsType}) mounted, not ${nfsSource(server)}`,
    );
  // The class's options, plus ro for a reader-only access mode.
  const asked = wanted.readOnly ? `${options},ro` : options;
  try {
    const result = await env.ops.mountNfs(server, path, asked);
    context.logger.info(
      { volumeId: wanted.volumeId, server, options: result.options, softerrReplaced: result.softerrReplaced },
      'NFS export mounted',
    );
  } catch (err) {
    if (!(err instanceof NfsMountError)) throw err;
    // Refused options are the class's to fix; anything else (no answer, grace) passes when retried.
    if (
      /incorrect mount option|invalid argument|unknown parameter|bad option|invalid option/i.test(err.message)
    )
      throw invalidArgument(`volume ${wanted.volumeId}: ${err.message}; fix the class's nfsOptions`);
    throw unavailable(`volume ${wanted.volumeId}: ${err.message}`);
  }
}

/** NodePublishVolume of an NFS stage: a bind mount of the staged export into the pod. */
export async function publishNfs(
  env: NodeEnv,
  record: StageRecord,
  targetPath: string,
  readOnly: boolean,
  context: RpcContext,
): Promise<void> {
  const server = record.nfs?.server ?? '';
  const staged = await nfsMountAt(env, server, record.stagingTargetPath);
  if (staged === undefined)
    throw failedPrecondition(
      `volume ${record.volumeId}'s export is not mounted at ${record.stagingTargetPath}; NodeStageVolume comes first`,
    );
  const target = (await env.ops.mounts()).filter((m) => m.mountPoint === targetPath).at(-1);
  if (target !== undefined) {
    if (target.source !== staged.source || !target.fsType.startsWith('nfs'))
      throw alreadyExists(`${targetPath} already has ${target.source} (${target.fsType}) mounted`);
    if (target.options.includes('ro') === readOnly) return;
    throw alreadyExists(
      `volume ${record.volumeId} is already published at ${targetPath} ${readOnly ? 'read-write' : 'read-only'}; unpublish it first`,
    );
  }
  await env.ops.bindMount(record.stagingTargetPath, targetPath, readOnly);
  context.logger.info({ volumeId: record.volumeId, targetPath, readOnly }, 'published');
}

/** Mount points other than the staging path that show the export (pods' bind mounts). */
export async function nfsPublishedTargets(env: NodeEnv, record: StageRecord): Promise<string[]> {
  const source = nfsSource(record.nfs?.server ?? '');
  return (await env.ops.mounts())
    .filter(
      (m) => m.mountPoint !== record.stagingTargetPath && m.fsType.startsWith('nfs') && m.source === source,
    )
    .map((m) => m.mountPoint);
}
