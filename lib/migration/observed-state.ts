/**
 * What a Volume's status should say about itself, derived from the rest of it: `state` and
 * `node` from the engines wanted (spec.engines), the engines serving (status.engines) and the
 * migration record; `robustness` and `healthyReplicas` from the replica membership. Users read
 * these through `kubectl get volumes` and `tandem status`, so the migrator keeps them current
 * for every volume (DESIGN.md "State"); the function is pure so any writer can apply it.
 */
import type { Robustness, Volume, VolumeState } from '../api/volume.js';

export interface ObservedStatus {
  state: VolumeState;
  /** The node serving the volume (the source while a migration runs); undefined when none. */
  node: string | undefined;
  robustness: Robustness;
  healthyReplicas: number;
}

export function observedStatus(volume: Volume): ObservedStatus {
  const wanted = (volume.spec.engines ?? []).map((e) => e.node);
  const serving = [...new Set((volume.status?.engines ?? []).map((e) => e.node))];
  const replicas = volume.status?.replicas ?? [];
  const healthyReplicas = replicas.filter((r) => r.mode === 'ReadWrite').length;
  const robustness: Robustness =
    replicas.length === 0
      ? 'Unknown'
      : healthyReplicas === 0
        ? 'Faulted'
        : healthyReplicas < volume.spec.numberOfReplicas
          ? 'Degraded'
          : 'Healthy';
  const migration = volume.status?.migration;
  let state: VolumeState;
  if (volume.metadata.deletionTimestamp) state = 'Deleting';
  else if (migration !== undefined || wanted.length > 1 || serving.length > 1) state = 'Migrating';
  else if (wanted.length === 0) state = serving.length === 0 ? 'Detached' : 'Detaching';
  else if (wanted.every((n) => serving.includes(n)))
    state = robustness === 'Faulted' ? 'Faulted' : 'Attached';
  else state = 'Attaching';
  const node =
    migration?.source !== undefined && wanted.includes(migration.source) && serving.includes(migration.source)
      ? migration.source
      : (serving.find((n) => wanted.includes(n)) ?? serving[0]);
  return { state, node, robustness, healthyReplicas };
}

/** `volume` with its observed status applied, or undefined when the status already says it. */
export function withObservedStatus(volume: Volume): Volume | undefined {
  const observed = observedStatus(volume);
  const status = volume.status ?? {};
  // A volume still being placed keeps the controller's Creating until it has replicas.
  if (status.state === 'Creating' && (status.replicas ?? []).length === 0) return undefined;
  if (
    status.state === observed.state &&
    status.node === observed.node &&
    status.robustness === observed.robustness &&
    status.healthyReplicas === observed.healthyReplicas
  )
    return undefined;
  const next: Volume = structuredClone(volume);
  next.status = {
    ...next.status,
    state: observed.state,
    robustness: observed.robustness,
    healthyReplicas: observed.healthyReplicas,
  };
  if (observed.node === undefined) delete next.status.node;
  else next.status.node = observed.node;
  return next;
}
