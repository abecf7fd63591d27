/**
 * KubeVirt's vocabulary, in one place (labels, annotations, pod roles, VMI and migration phases,
 * the shape of `status.migrationState`), as KubeVirt's API types define them
 * (kubevirt.io/api/core/v1 types.go and types_migration.go, v1.5 to v1.7). The webhook's pod
 * rule, the driver's pod-identity check and the migrator all read KubeVirt through this module.
 */

export const KUBEVIRT_GROUP = 'kubevirt.io';
export const KUBEVIRT_VERSION = 'v1';
export const VMI_PLURAL = 'virtualmachineinstances';
export const VMIM_PLURAL = 'virtualmachineinstancemigrations';

/** `AppLabel`: which KubeVirt component a resource belongs to (`virt-launcher`, `hotplug-disk`). */
export const APP_LABEL = 'kubevirt.io';
/** `CreatedByLabel`: the UID of the VMI a pod runs; the strong VM identity. */
export const CREATED_BY_LABEL = 'kubevirt.io/created-by';
/** `VirtualMachineNameLabel`: the VM name, sanitized into a hostname (weaker than created-by). */
export const VM_NAME_LABEL = 'vm.kubevirt.io/name';
/** `MigrationJobLabel`: only the migration target launcher carries it (the VMIM's UID). */
export const MIGRATION_JOB_LABEL = 'kubevirt.io/migrationJobUID';
/** `MigrationJobNameAnnotation`: the VMIM's name, on the target launcher. */
export const MIGRATION_JOB_NAME_ANNOTATION = 'kubevirt.io/migrationJobName';
/** `MigrationTargetReadyTimestamp`: set on the target launcher once its domain is active. */
export const MIGRATION_TARGET_READY_ANNOTATION = 'kubevirt.io/migration-target-ready-timestamp';

export const LAUNCHER_ROLE = 'virt-launcher';
export const HOTPLUG_ROLE = 'hotplug-disk';
export type PodRole = typeof LAUNCHER_ROLE | typeof HOTPLUG_ROLE;
export const POD_ROLES: ReadonlySet<string> = new Set<string>([LAUNCHER_ROLE, HOTPLUG_ROLE]);
/** The label selector of every pod the migrator and the webhook cache watch. */
export const KUBEVIRT_POD_SELECTOR = `${APP_LABEL} in (${LAUNCHER_ROLE},${HOTPLUG_ROLE})`;

/** At most the source and the target launcher of one live migration open a volume at once. */
export const MAX_VM_PODS = 2;

/** `VirtualMachineInstanceMigrationPhase`; WaitingForSync and Synchronizing exist from v1.6. */
export const MIGRATION_PHASES = [
  '',
  'Pending',
  'Scheduling',
  'Scheduled',
  'PreparingTarget',
  'TargetReady',
  'Running',
  'WaitingForSync',
  'Synchronizing',
  'Succeeded',
  'Failed',
] as const;
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];

/** `MigrationAbortStatus`. */
export type MigrationAbortStatus = 'Succeeded' | 'Failed' | 'Aborting';

/** Per-side state of v1.7 (`sourceState` / `targetState`); only the fields Tandem reads. */
export interface MigrationSideState {
  node?: string;
  pod?: string;
  migrationUID?: string;
}

/** `VirtualMachineInstanceMigrationState` (VMI and VMIM status.migrationState); fields Tandem reads. */
export interface MigrationState {
  startTimestamp?: string;
  endTimestamp?: string;
  targetNode?: string;
  targetPod?: string;
  sourceNode?: string;
  sourcePod?: string;
  completed?: boolean;
  failed?: boolean;
  abortRequested?: boolean;
  abortStatus?: MigrationAbortStatus;
  failureReason?: string;
  migrationUid?: string;
  targetNodeDomainReadyTimestamp?: string;
  sourceState?: MigrationSideState;
  targetState?: MigrationSideState;
}

export interface KubeVirtObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  // Date in client-node's types; a string when read raw. Only its presence is read.
  deletionTimestamp?: Date;
}

export interface VirtualMachineInstance {
  apiVersion?: string;
  kind?: string;
  metadata: KubeVirtObjectMeta;
  status?: {
    phase?: string;
    nodeName?: string;
    migrationState?: MigrationState;
  };
}

export interface VirtualMachineInstanceMigration {
  apiVersion?: string;
  kind?: string;
  metadata: KubeVirtObjectMeta;
  spec?: { vmiName?: string };
  status?: {
    phase?: MigrationPhase;
    migrationState?: MigrationState;
  };
}

/** The source and target a migration state names, from the v1.5/v1.6 fields or v1.7's per-side state. */
export function migrationSides(state: MigrationState | undefined): {
  sourceNode?: string;
  sourcePod?: string;
  targetNode?: string;
  targetPod?: string;
} {
  if (state === undefined) return {};
  return {
    sourceNode: state.sourceNode || state.sourceState?.node || undefined,
    sourcePod: state.sourcePod || state.sourceState?.pod || undefined,
    targetNode: state.targetNode || state.targetState?.node || undefined,
    targetPod: state.targetPod || state.targetState?.pod || undefined,
  };
}

/** What identifies a pod to KubeVirt: its role and the VM it belongs to. */
export interface VmPodLabels {
  role: string | undefined;
  vmName: string | undefined;
  vmiUid: string | undefined;
  /** Set only on a migration target launcher. */
  migrationJobUid: string | undefined;
}

export function vmPodLabels(labels: Record<string, string> | undefined): VmPodLabels {
  const l = labels ?? {};
  return {
    role: l[APP_LABEL],
    vmName: l[VM_NAME_LABEL] || undefined,
    vmiUid: l[CREATED_BY_LABEL] || undefined,
    migrationJobUid: l[MIGRATION_JOB_LABEL] || undefined,
  };
}

/**
 * Two pods belong to one VM when their `kubevirt.io/created-by` labels (the VMI's UID) match.
 * Only when one lacks it is `vm.kubevirt.io/name` compared, which is weaker: it is the VM name
 * sanitized into a hostname, so distinct VMs can share it.
 */
export function sameVm(a: Record<string, string>, b: Record<string, string>): boolean {
  const x = vmPodLabels(a);
  const y = vmPodLabels(b);
  if (x.vmiUid && y.vmiUid) return x.vmiUid === y.vmiUid;
  return x.vmName !== undefined && x.vmName === y.vmName;
}

/** A key naming the VM of a pod: the VMI UID when known, else the name label. */
export function vmKey(labels: Record<string, string>): string | undefined {
  const { vmiUid, vmName } = vmPodLabels(labels);
  if (vmiUid) return `uid:${vmiUid}`;
  return vmName ? `name:${vmName}` : undefined;
}

/** Human words for a pod's VM, for error messages. */
export function vmRef(labels: Record<string, string>): string {
  const { vmName, vmiUid } = vmPodLabels(labels);
  if (!vmName && !vmiUid) return `no VM (no label ${VM_NAME_LABEL})`;
  if (!vmName) return `the VM of VMI UID ${vmiUid}`;
  return vmiUid ? `VM ${vmName} (VMI UID ${vmiUid})` : `VM ${vmName}`;
}

/**
 * Disk cache modes (`spec.domain.devices.disks[].cache`, KubeVirt's DriverCache; QEMU's
 * `cache=`). Unset, KubeVirt picks `none` where the storage supports O_DIRECT (a block device
 * does) and `writethrough` otherwise.
 */
export const DISK_CACHE_MODES = ['none', 'writethrough', 'writeback', 'directsync', 'unsafe'] as const;
/**
 * The modes whose reads bypass the node's page cache. With `writeback`, `writethrough` or `unsafe`
 * QEMU reads through the page cache of the node it runs on; during a live migration the target
 * node has the device open (QEMU probes it) while the source keeps writing, and what the target
 * cached before the switch is returned afterwards for as long as the device stays open: stale
 * data. Only O_DIRECT reads are coherent across two nodes.
 */
export const SAFE_CACHE_MODES: ReadonlySet<string> = new Set(['none', 'directsync']);

/** Pod phases after which a pod holds nothing open. */
export function podFinished(phase: string | undefined): boolean {
  return phase === 'Succeeded' || phase === 'Failed';
}
