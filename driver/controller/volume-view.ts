/** How a Volume resource reads as CSI messages (Volume, VolumeCondition, published nodes). */
import type { Volume } from '../../lib/api/volume.js';
import type { CsiTopology } from './placement.js';

export interface CsiVolume {
  capacity_bytes: string;
  volume_id: string;
  volume_context: Record<string, string>;
  content_source: null;
  accessible_topology: CsiTopology[];
}

export interface CsiVolumeCondition {
  abnormal: boolean;
  message: string;
}

/** What the node plugin may want to know without asking the API (it has no API access). */
export function volumeContext(volume: Volume): Record<string, string> {
  const spec = volume.spec;
  return {
    'tandem.dev/access-mode': spec.accessMode,
    'tandem.dev/volume-mode': spec.volumeMode,
    'tandem.dev/migratable': String(spec.migratable ?? false),
    ...(spec.fsType ? { 'tandem.dev/fs-type': spec.fsType } : {}),
  };
}

export function csiVolume(volume: Volume, topology: CsiTopology[] = []): CsiVolume {
  return {
    capacity_bytes: String(volume.spec.sizeBytes),
    volume_id: volume.metadata.name,
    volume_context: volumeContext(volume),
    content_source: null,
    accessible_topology: topology,
  };
}

/** Nodes the volume is published on: the engines the controller was asked for. */
export function publishedNodes(volume: Volume): string[] {
  return (volume.spec.engines ?? []).map((e) => e.node);
}

/**
 * Abnormal when replicas are missing or failed, no replica is readable, or a replica sits on a
 * node whose data plane stopped renewing its registration (`lostNodes`): its copy is out of reach
 * even before an engine notices and fences it.
 */
export function volumeCondition(
  volume: Volume,
  lostNodes: ReadonlySet<string> = new Set(),
): CsiVolumeCondition {
  const replicas = volume.status?.replicas ?? [];
  const wanted = volume.spec.numberOfReplicas;
  const readable = replicas.filter((r) => r.mode === 'ReadWrite').length;
  const failed = replicas.filter((r) => r.mode === 'Failed').map((r) => r.node);
  const rebuilding = replicas.filter((r) => r.mode === 'WriteOnly').map((r) => r.node);
  if (replicas.length === 0)
    return { abnormal: true, message: 'no replicas are placed yet; see the claim events for why' };
  if (readable === 0) return { abnormal: true, message: 'no replica is readable: the volume is faulted' };
  const problems = [
    failed.length > 0 ? `replicas failed on ${failed.join(', ')}` : '',
    rebuilding.length > 0 ? `replicas rebuilding on ${rebuilding.join(', ')}` : '',
    replicas.length < wanted ? `${wanted - replicas.length} of ${wanted} replicas not placed` : '',
    ...replicas
      .filter((r) => lostNodes.has(r.node) && r.mode !== 'Failed')
      .map((r) => `node ${r.node} (replica ${r.mode}) stopped renewing its registration`),
  ].filter(Boolean);
  if (problems.length === 0) return { abnormal: false, message: `${readable} of ${wanted} replicas healthy` };
  return {
    abnormal: true,
    message: `degraded: ${readable} of ${wanted} replicas readable; ${problems.join('; ')}`,
  };
}
