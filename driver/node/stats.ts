/**
 * NodeGetVolumeStats: capacity and usage of a published (or staged) volume for kubelet's metrics
 * and eviction, and the volume's condition on this node: abnormal when its engine does not answer
 * or what is at the path is not the volume's attached device.
 */
import { resolve } from 'node:path';
import { invalidArgument, notFound } from '../csi/errors.js';
import { engineSocketPath } from '../csi/node-topology.js';
import type { DeviceNumber } from './node-ops.js';
import { isTandemVolumeId, type NodeEnv, requireVolumeId } from './requests.js';

export interface NodeGetVolumeStatsRequest {
  volume_id: string;
  volume_path: string;
  staging_target_path?: string;
}

export interface VolumeUsage {
  available: string;
  total: string;
  used: string;
  unit: 'BYTES' | 'INODES';
}

export interface NodeGetVolumeStatsResponse {
  usage: VolumeUsage[];
  volume_condition: { abnormal: boolean; message: string };
}

const usage = (unit: VolumeUsage['unit'], total: number, available: number, used: number): VolumeUsage => ({
  unit,
  total: String(total),
  available: String(available),
  used: String(used),
});

const same = (a: DeviceNumber | undefined, b: DeviceNumber | undefined) =>
  a !== undefined && b !== undefined && a.major === b.major && a.minor === b.minor;

export async function nodeGetVolumeStats(
  env: NodeEnv,
  request: NodeGetVolumeStatsRequest,
): Promise<NodeGetVolumeStatsResponse> {
  const volumeId = requireVolumeId(request.volume_id);
  if (!request.volume_path) throw invalidArgument('volume_path is empty');
  const volumePath = resolve(request.volume_path);
  const kind = await env.ops.pathKind(volumePath);
  if (kind === undefined) throw notFound(`volume_path ${volumePath} does not exist`);

  const problems: string[] = [];
  const device = isTandemVolumeId(volumeId) ? await env.ops.attachedDevice(volumeId) : undefined;
  if (device === undefined) problems.push(`volume ${volumeId} has no block device attached on this node`);
  const dead = isTandemVolumeId(volumeId) ? await env.ops.attachmentProblem(volumeId) : undefined;
  if (dead !== undefined) problems.push(dead);
  const socket = engineSocketPath(env.engineSocketDir, volumeId);
  if (!(await env.ops.socketAnswers(socket)))
    problems.push(`no engine answers on ${socket}, so I/O to the volume fails`);
  const deviceNumber = device === undefined ? undefined : await env.ops.deviceNumber(device);

  const result: VolumeUsage[] = [];
  if (kind === 'directory') {
    const entry = (await env.ops.mounts()).filter((m) => m.mountPoint === volumePath).at(-1);
    if (entry === undefined) problems.push(`nothing is mounted at ${volumePath}`);
    else if (device !== undefined && !same(entry, deviceNumber))
      problems.push(
        `${volumePath} has ${entry.source} (${entry.major}:${entry.minor}) mounted, not ${device}`,
      );
    const s = await env.ops.statfs(volumePath);
    result.push(
      usage(
        'BYTES',
        s.blocks * s.blockSize,
        s.blocksAvailable * s.blockSize,
        (s.blocks - s.blocksFree) * s.blockSize,
      ),
      usage('INODES', s.files, s.filesFree, s.files - s.filesFree),
    );
  } else if (kind === 'block-device') {
    const at = await env.ops.deviceNumber(volumePath);
    if (device !== undefined && !same(at, deviceNumber)) {
      // A read-only publish binds a read-only loop over the device.
      const loops = await env.ops.loopsBackedBy(device);
      const numbers = await Promise.all(loops.map((l) => env.ops.deviceNumber(l)));
      if (!numbers.some((n) => same(at, n)))
        problems.push(`${volumePath} is device ${at?.major}:${at?.minor}, not ${device}`);
    }
    const total = await env.ops.deviceSize(volumePath);
    result.push(usage('BYTES', total, 0, 0));
  } else {
    problems.push(`${volumePath} is neither a mounted filesystem nor a block device`);
  }
  return {
    usage: result,
    volume_condition: {
      abnormal: problems.length > 0,
      message: problems.length > 0 ? problems.join('; ') : `attached as ${device}, engine answers`,
    },
  };
}
