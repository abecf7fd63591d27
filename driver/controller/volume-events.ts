/**
 * Events a user must see, on the claim of the volume (or on the Volume when no claim is known):
 * rebuild started / finished (replica mode transitions seen in Volume updates), a replica's node
 * lost (its registration Lease expired), no room for replicas (from CreateVolume). Run by the
 * leading controller only, so one replica of the Deployment reports each thing once.
 */
import type { V1ObjectReference } from '@kubernetes/client-node';
import { API_VERSION, VOLUME_KIND, type Volume } from '../../lib/api/volume.js';
import type { EventSubject, EventType } from '../../lib/kube/events.js';
import type { ControllerCluster } from './cluster.js';
import { lostNodes } from './inventory.js';

export const PVC_NAME_ANNOTATION = 'tandem.dev/pvc-name';
export const PVC_NAMESPACE_ANNOTATION = 'tandem.dev/pvc-namespace';
export const PVC_UID_ANNOTATION = 'tandem.dev/pvc-uid';

/** What the watcher needs of an EventRecorder (lib/kube/events.ts). */
export interface EventSink {
  record(subject: EventSubject, details: { type: EventType; reason: string; message: string }): void;
}

/** The claim a Volume was provisioned for, else the Volume itself. */
export function eventSubject(volume: Pick<Volume, 'metadata'>): V1ObjectReference {
  const annotations = volume.metadata.annotations ?? {};
  const name = annotations[PVC_NAME_ANNOTATION];
  const namespace = annotations[PVC_NAMESPACE_ANNOTATION];
  const uid = annotations[PVC_UID_ANNOTATION];
  // The UID matters: `kubectl describe pvc` selects Events by involvedObject.uid.
  if (name && namespace)
    return { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name, namespace, ...(uid ? { uid } : {}) };
  return { apiVersion: API_VERSION, kind: VOLUME_KIND, name: volume.metadata.name, uid: volume.metadata.uid };
}

/** Events for the replica changes between two versions of a Volume. */
export function replicaTransitions(
  before: Volume | undefined,
  after: Volume,
): { type: EventType; reason: string; message: string }[] {
  const old = new Map((before?.status?.replicas ?? []).map((r) => [r.node, r.mode]));
  const out: { type: EventType; reason: string; message: string }[] = [];
  const name = after.metadata.name;
  for (const replica of after.status?.replicas ?? []) {
    const was = old.get(replica.node);
    if (was === replica.mode) continue;
    if (replica.mode === 'WriteOnly')
      out.push({
        type: 'Normal',
        reason: 'RebuildStarted',
        message: `volume ${name}: rebuilding the replica on node ${replica.node} from a healthy one`,
      });
    else if (replica.mode === 'ReadWrite' && was === 'WriteOnly')
      out.push({
        type: 'Normal',
        reason: 'RebuildFinished',
        message: `volume ${name}: the replica on node ${replica.node} is rebuilt and readable again`,
      });
    else if (replica.mode === 'Failed')
      out.push({
        type: 'Warning',
        reason: 'ReplicaFailed',
        message: `volume ${name}: the replica on node ${replica.node} failed and was fenced; it is rebuilt when the node is reachable`,
      });
  }
  return out;
}

/**
 * Reports replicas whose node stopped renewing its registration. Remembers what it reported so a
 * node that stays lost is reported once per controller run (and again once it recovered and was
 * lost again).
 */
export class LostNodeReporter {
  readonly #reported = new Set<string>();

  constructor(
    private readonly cluster: ControllerCluster,
    private readonly sink: EventSink,
  ) {}

  async check(volumes: readonly Volume[], nowMs = Date.now()): Promise<void> {
    const lost = await lostNodes(this.cluster, nowMs);
    const current = new Set<string>();
    for (const volume of volumes) {
      for (const replica of volume.status?.replicas ?? []) {
        if (!lost.has(replica.node)) continue;
        const key = `${volume.metadata.name}\0${replica.node}`;
        current.add(key);
        if (this.#reported.has(key)) continue;
        this.#reported.add(key);
        this.sink.record(eventSubject(volume), {
          type: 'Warning',
          reason: 'NodeLost',
          message: `volume ${volume.metadata.name}: node ${replica.node}, which holds a replica, has stopped renewing its registration; writes go on to the other replicas, and the replica is rebuilt when the node returns`,
        });
      }
    }
    for (const key of this.#reported) if (!current.has(key)) this.#reported.delete(key);
  }
}
