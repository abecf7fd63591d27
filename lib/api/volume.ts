import type { KubernetesObject } from '@kubernetes/client-node';

/** Names fixed by the design: API group tandem.dev, version v1alpha1. */
export const GROUP = 'tandem.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const CSI_DRIVER_NAME = 'csi.tandem.dev';

export const VOLUME_KIND = 'Volume';
export const VOLUME_PLURAL = 'volumes';

export type AccessMode = 'ReadWriteOnce' | 'ReadWriteOncePod' | 'ReadWriteMany';
export type VolumeMode = 'Filesystem' | 'Block';
export type VolumeState =
  | 'Creating'
  | 'Detached'
  | 'Attaching'
  | 'Attached'
  | 'Migrating'
  | 'Detaching'
  | 'Deleting'
  | 'Faulted';
export type Robustness = 'Healthy' | 'Degraded' | 'Faulted' | 'Unknown';
export type ReplicaMode = 'ReadWrite' | 'WriteOnly' | 'Failed';

export interface VolumeSpec {
  sizeBytes: number;
  numberOfReplicas: number;
  accessMode: AccessMode;
  volumeMode: VolumeMode;
  migratable?: boolean;
  fsType?: 'ext4' | 'xfs';
  staleReplicaTimeoutSeconds?: number;
  /** Nodes that should run an engine; two only during a live migration. */
  engines?: { node: string }[];
  /** ReadWriteMany Filesystem volumes only: how their NFS share manager runs. */
  share?: ShareSpec;
}

/**
 * What the StorageClass asked of a ReadWriteMany Filesystem volume's share manager, kept on the
 * Volume at creation: the controller places and restarts share managers long after the
 * CreateVolume call (and a class may be edited or deleted meanwhile).
 */
export interface ShareSpec {
  /** Mount options of the nodes' NFS clients (validated by the webhook; normalized). */
  nfsOptions: string;
  /** Grace 30 s and a heartbeat every 2 s instead of grace 90 s and 10 s. */
  fastFailover: boolean;
  nodeSelector?: Record<string, string>;
  tolerations?: {
    key: string;
    operator: 'Equal' | 'Exists';
    value?: string;
    effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  }[];
  /** The class's allowedTopologies as node names (topology.csi.tandem.dev/node); absent: any node. */
  nodes?: string[];
}

export interface ReplicaStatus {
  node: string;
  /** host:port of the node's replica server; optional in the schema, but engines need it. */
  address?: string;
  mode: ReplicaMode;
  /** Whole percent (0..100): the API conventions avoid floats in resources. */
  rebuildProgress?: number;
}

/** An engine that is a member of the volume; `id` is unique per engine process. */
export interface EngineStatus {
  node: string;
  id: string;
}

/**
 * The phases of a live migration's record. `Started`: the second engine was requested (written by
 * ControllerPublishVolume before it asks for the engine); `TargetReady`: the target engine serves;
 * `Confirming` / `RollingBack`: a decision is taken and being carried out (the loser's engine
 * removed and fenced); the record then moves to `lastMigration` with `Confirmed`, `RolledBack` or
 * `Resolved` (both engines gone: the VM went away).
 */
export type MigrationPhase =
  | 'Started'
  | 'TargetReady'
  | 'Confirming'
  | 'RollingBack'
  | 'Confirmed'
  | 'RolledBack'
  | 'Resolved';
export const ACTIVE_MIGRATION_PHASES: readonly MigrationPhase[] = [
  'Started',
  'TargetReady',
  'Confirming',
  'RollingBack',
];

/** confirm: the target stays; rollback: the source stays; detach: neither (the VM is gone). */
export type MigrationDecision = 'Confirm' | 'Rollback' | 'Detach';

export interface MigrationRecord {
  source: string;
  target: string;
  vmiUID?: string;
  vmName?: string;
  /** Namespace of the VM's pods and of the VMI. */
  vmNamespace?: string;
  /** The VirtualMachineInstanceMigration, when KubeVirt's CRDs exist and it was seen. */
  vmimName?: string;
  phase?: MigrationPhase;
  startedAt?: string;
  targetReadyAt?: string;
  decision?: MigrationDecision;
  /** CamelCase, e.g. SourcePodTerminated, MigrationFailed, TargetNodeLost, Timeout. */
  reason?: string;
  /** What the decision was derived from, in words (pods, phases, migrationState). */
  evidence?: string;
  /** When the evidence that decided was first seen by the component that decided. */
  observedAt?: string;
  decidedAt?: string;
  /** Who decided: `migrator` or `controller` (an unpublish that came first). */
  decidedBy?: string;
  /** The epoch that fences the loser; set when the decision is carried out. */
  fenceEpoch?: number;
  endedAt?: string;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface VolumeStatus {
  observedGeneration?: number;
  state?: VolumeState;
  robustness?: Robustness;
  node?: string;
  epoch?: number;
  healthyReplicas?: number;
  replicas?: ReplicaStatus[];
  /** At most two, and two only during a live migration. */
  engines?: EngineStatus[];
  /** The migration in progress (Started … RollingBack); absent otherwise. */
  migration?: MigrationRecord;
  /** The last migration that ended, with its decision (Confirmed, RolledBack, Resolved). */
  lastMigration?: MigrationRecord;
  conditions?: Condition[];
}

export interface Volume extends KubernetesObject {
  apiVersion: typeof API_VERSION;
  kind: typeof VOLUME_KIND;
  metadata: NonNullable<KubernetesObject['metadata']> & { name: string };
  spec: VolumeSpec;
  status?: VolumeStatus;
}

export interface VolumeList {
  apiVersion: string;
  kind: string;
  metadata: { resourceVersion?: string; continue?: string };
  items: Volume[];
}

export function newVolume(name: string, spec: VolumeSpec): Volume {
  return { apiVersion: API_VERSION, kind: VOLUME_KIND, metadata: { name }, spec };
}
