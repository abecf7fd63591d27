/**
 * The CSI Node service (`tandem node`): one handler per RPC, each a plain async function that
 * throws CsiError; runRpc (csi/rpc.ts) adds the volume lock, logging and error mapping.
 */
import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { nodeGetCapabilities } from '../controller/capabilities.js';
import { TOPOLOGY_NODE_KEY } from '../csi/node-topology.js';
import type { RpcContext } from '../csi/rpc.js';
import { locateFsUtil } from '../replica/fsutil.js';
import { type NodeExpandVolumeRequest, nodeExpandVolume } from './expand.js';
import { kernelNbdUsable } from './kernel-nbd.js';
import { type Frontend, type NodeOps, systemOps } from './node-ops.js';
import {
  type NodePublishVolumeRequest,
  type NodeUnpublishVolumeRequest,
  nodePublishVolume,
  nodeUnpublishVolume,
} from './publish.js';
import type { NodeEnv } from './requests.js';
import {
  devicesDir,
  type NodeStageVolumeRequest,
  type NodeUnstageVolumeRequest,
  nodeStageVolume,
  nodeUnstageVolume,
} from './stage.js';
import { type NodeGetVolumeStatsRequest, nodeGetVolumeStats } from './stats.js';

export interface NodeServiceOptions {
  nodeId: string;
  stateDir: string;
  engineSocketDir: string;
  frontend?: Frontend;
  /** Upper bound of NodeStageVolume's wait for the engine; default 30 s. */
  engineWaitMs?: number;
  /** Replaces the real attach/mount/exec layer (unit tests). */
  ops?: NodeOps;
}

export interface NodeGetInfoResponse {
  node_id: string;
  max_volumes_per_node: number;
  accessible_topology: { segments: Record<string, string> };
}

export function nodeEnv(options: NodeServiceOptions): NodeEnv {
  return {
    nodeId: options.nodeId,
    stateDir: options.stateDir,
    engineSocketDir: options.engineSocketDir,
    engineWaitMs: options.engineWaitMs ?? 30_000,
    ops:
      options.ops ??
      systemOps({ devicesDir: devicesDir(options.stateDir), frontend: options.frontend ?? 'auto' }),
  };
}

export function nodeHandlers(options: NodeServiceOptions) {
  const env = nodeEnv(options);
  return {
    NodeStageVolume: (request: NodeStageVolumeRequest, context: RpcContext) =>
      nodeStageVolume(env, request, context),
    NodeUnstageVolume: (request: NodeUnstageVolumeRequest, context: RpcContext) =>
      nodeUnstageVolume(env, request, context),
    NodePublishVolume: (request: NodePublishVolumeRequest, context: RpcContext) =>
      nodePublishVolume(env, request, context),
    NodeUnpublishVolume: (request: NodeUnpublishVolumeRequest, context: RpcContext) =>
      nodeUnpublishVolume(env, request, context),
    NodeGetVolumeStats: (request: NodeGetVolumeStatsRequest) => nodeGetVolumeStats(env, request),
    NodeExpandVolume: (request: NodeExpandVolumeRequest, context: RpcContext) =>
      nodeExpandVolume(env, request, context),
    NodeGetCapabilities: async () => nodeGetCapabilities(),
    // One topology segment per node: a volume is usable where its engine runs, and the
    // controller places the engine on the pod's node.
    NodeGetInfo: async (): Promise<NodeGetInfoResponse> => ({
      node_id: env.nodeId,
      max_volumes_per_node: 0,
      accessible_topology: { segments: { [TOPOLOGY_NODE_KEY]: env.nodeId } },
    }),
  };
}

/** The commands the node service runs, by frontend. */
export function requiredTools(frontend: Frontend): string[] {
  const common = [
    'mount',
    'umount',
    'blkid',
    'mkfs.ext4',
    'mkfs.xfs',
    'losetup',
    'blockdev',
    'dumpe2fs',
    'resize2fs',
    'e2fsck',
    'xfs_info',
    'xfs_growfs',
  ];
  const kernel = frontend === 'kernel-nbd' || (frontend === 'auto' && kernelNbdUsable());
  return [...common, ...(kernel ? ['nbd-client'] : ['nbdfuse', 'setsid'])];
}

/** Tools not found as executables on PATH. */
export async function missingTools(
  tools: readonly string[],
  path = process.env.PATH ?? '',
): Promise<string[]> {
  const dirs = path.split(delimiter).filter(Boolean);
  const missing: string[] = [];
  for (const tool of tools) {
    let found = false;
    for (const dir of dirs) {
      try {
        await access(join(dir, tool), constants.X_OK);
        found = true;
        break;
      } catch {
        // not in this directory
      }
    }
    if (!found) missing.push(tool);
  }
  return missing;
}

/**
 * Probe's readiness check: the state directory can be written and every tool the node service
 * runs is installed. Throws with what is wrong (Probe logs it and answers "not ready").
 */
export function nodeReadiness(options: { stateDir: string; frontend: Frontend }): () => Promise<boolean> {
  return async () => {
    await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    await access(options.stateDir, constants.W_OK);
    const missing = await missingTools(requiredTools(options.frontend));
    // tandem-fsutil raises a loop device's size limit (online growth); it may sit outside PATH.
    const fsutil = locateFsUtil();
    if (!fsutil.includes('/')) missing.push(...(await missingTools([fsutil])));
    else await access(fsutil, constants.X_OK).catch(() => missing.push(fsutil));
    if (missing.length > 0) throw new Error(`missing tools: ${missing.join(', ')}`);
    return true;
  };
}
