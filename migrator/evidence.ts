/**
 * Gathers what the decision rules read (migrator/decide.ts) from the migrator's caches: the VM's
 * launcher and hotplug pods on the source and target nodes, KubeVirt's migration objects, the
 * nodes' registration Leases. Which pod is which comes from KubeVirt itself: only the target
 * launcher carries `kubevirt.io/migrationJobUID`, and `migrationState` names both pods.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { MigrationRecord } from '../lib/api/volume.js';
import {
  APP_LABEL,
  HOTPLUG_ROLE,
  LAUNCHER_ROLE,
  MIGRATION_JOB_LABEL,
  type MigrationState,
  migrationSides,
  podFinished,
  type VirtualMachineInstance,
  type VirtualMachineInstanceMigration,
  vmPodLabels,
} from '../lib/kubevirt/vocabulary.js';
import type { KubeVirtView, MigrationEvidence, PodState, SidePods } from './decide.js';

/** What the caches hold, as plain lists (tests build them by hand). */
export interface ClusterSnapshot {
  pods: V1Pod[];
  /** undefined when KubeVirt's CRDs are not installed. */
  vmis?: VirtualMachineInstance[];
  vmims?: VirtualMachineInstanceMigration[];
  aliveNodes: Set<string>;
}

export function podState(pod: V1Pod | undefined): PodState {
  if (pod === undefined) return 'absent';
  if (podFinished(pod.status?.phase)) return 'finished';
  if (pod.metadata?.deletionTimestamp) return 'terminating';
  // Unknown: the node stopped reporting; the pod may well still run.
  if (pod.status?.phase === 'Running' || pod.status?.phase === 'Unknown') return 'running';
  return 'pending';
}

const RANK: Record<PodState, number> = { running: 4, terminating: 3, pending: 2, finished: 1, absent: 0 };

/** The pods of the record's VM: same namespace, same VMI UID (or VM name when the UID is unknown). */
export function vmPods(record: MigrationRecord, pods: V1Pod[]): V1Pod[] {
  const ofVm = pods.filter((pod) => {
    if (record.vmNamespace && pod.metadata?.namespace !== record.vmNamespace) return false;
    const labels = vmPodLabels(pod.metadata?.labels);
    if (record.vmiUID && labels.vmiUid) return labels.vmiUid === record.vmiUID;
    return record.vmName !== undefined && labels.vmName === record.vmName;
  });
  // Hotplug pods need not carry the VM labels: their controller is a launcher of the VM.
  const launcherNames = new Set(
    ofVm.filter((p) => p.metadata?.labels?.[APP_LABEL] === LAUNCHER_ROLE).map((p) => p.metadata?.name),
  );
  const hotplug = pods.filter(
    (pod) =>
      !ofVm.includes(pod) &&
      pod.metadata?.labels?.[APP_LABEL] === HOTPLUG_ROLE &&
      pod.metadata?.namespace === record.vmNamespace &&
      (pod.metadata?.ownerReferences ?? []).some(
        (ref) => ref.controller === true && ref.kind === 'Pod' && launcherNames.has(ref.name),
      ),
  );
  return [...ofVm, ...hotplug];
}

function side(
  pods: V1Pod[],
  node: string,
  role: 'source' | 'target',
  named: string | undefined,
  jobUid: string | undefined,
): SidePods {
  const onNode = pods.filter((p) => p.spec?.nodeName === node);
  let launchers = onNode.filter((p) => p.metadata?.labels?.[APP_LABEL] === LAUNCHER_ROLE);
  if (role === 'target') {
    // Only a migration target carries the job label; the current job's value when known.
    launchers = launchers.filter((p) => p.metadata?.labels?.[MIGRATION_JOB_LABEL]);
    if (jobUid) {
      const ofJob = launchers.filter((p) => p.metadata?.labels?.[MIGRATION_JOB_LABEL] === jobUid);
      if (ofJob.length > 0) launchers = ofJob;
    }
  } else if (jobUid) {
    launchers = launchers.filter((p) => p.metadata?.labels?.[MIGRATION_JOB_LABEL] !== jobUid);
  }
  const byName = named ? launchers.filter((p) => p.metadata?.name === named) : [];
  const candidates = byName.length > 0 ? byName : launchers;
  const best = [...candidates].sort((a, b) => RANK[podState(b)] - RANK[podState(a)])[0];
  const holding = (p: V1Pod) => {
    const state = podState(p);
    return state === 'running' || state === 'terminating';
  };
  return {
    launcher: podState(best),
    launcherName: best?.metadata?.name,
    // The other side's launcher on this node (a migration back to a node) is excluded above for
    // the target; any other pod of the VM running here may hold the volume open.
    holdsVolume: onNode.some(holding),
  };
}

/** KubeVirt's view of this migration: a matching VMIM and a migrationState naming our target. */
export function kubevirtView(
  record: MigrationRecord,
  vmi: VirtualMachineInstance | undefined,
  vmims: VirtualMachineInstanceMigration[],
  targetJobUids: Set<string>,
): KubeVirtView {
  const matches = (state: MigrationState | undefined) => migrationSides(state).targetNode === record.target;
  const vmiName = vmi?.metadata.name;
  const candidates = vmims.filter(
    (m) =>
      m.metadata.namespace === record.vmNamespace &&
      vmiName !== undefined &&
      m.spec?.vmiName === vmiName &&
      (targetJobUids.has(m.metadata.uid ?? '') ||
        m.metadata.name === record.vmimName ||
        matches(m.status?.migrationState)),
  );
  // The strongest link first: the target pod's job label, then the name recorded, then the state.
  const vmim =
    candidates.find((m) => targetJobUids.has(m.metadata.uid ?? '')) ??
    candidates.find((m) => m.metadata.name === record.vmimName) ??
    candidates[0];
  const view: KubeVirtView = {};
  if (vmim !== undefined) {
    view.vmimName = vmim.metadata.name;
    view.vmimPhase = vmim.status?.phase ?? '';
  }
  const vmiState = vmi?.status?.migrationState;
  const vmiOurs =
    matches(vmiState) &&
    (vmim === undefined || !vmiState?.migrationUid || vmiState.migrationUid === vmim.metadata.uid);
  const state = vmiOurs
    ? vmiState
    : matches(vmim?.status?.migrationState)
      ? vmim?.status?.migrationState
      : undefined;
  if (state !== undefined) {
    view.completed = state.completed === true;
    view.failed = state.failed === true;
    if (state.abortStatus) view.abortStatus = state.abortStatus;
    if (state.failureReason) view.failureReason = state.failureReason;
  }
  return view;
}

export function gatherEvidence(
  record: MigrationRecord,
  snapshot: ClusterSnapshot,
  targetEngineServing: boolean,
  timeoutMs: number,
  now: number,
): MigrationEvidence {
  const pods = vmPods(record, snapshot.pods);
  const vmi =
    snapshot.vmis === undefined
      ? undefined
      : snapshot.vmis.find(
          (v) =>
            v.metadata.namespace === record.vmNamespace &&
            (record.vmiUID ? v.metadata.uid === record.vmiUID : v.metadata.name === record.vmName),
        );
  const targetJobUids = new Set(
    pods
      .filter((p) => p.spec?.nodeName === record.target)
      .map((p) => p.metadata?.labels?.[MIGRATION_JOB_LABEL] ?? '')
      .filter((uid) => uid !== ''),
  );
  const kubevirt =
    snapshot.vmis === undefined ? undefined : kubevirtView(record, vmi, snapshot.vmims ?? [], targetJobUids);
  const vmimUid = snapshot.vmims?.find((m) => m.metadata.name === kubevirt?.vmimName)?.metadata.uid;
  const sides = migrationSides(vmi?.status?.migrationState);
  const ours = sides.targetNode === record.target;
  return {
    now,
    record,
    source: side(pods, record.source, 'source', ours ? sides.sourcePod : undefined, vmimUid),
    target: side(pods, record.target, 'target', ours ? sides.targetPod : undefined, vmimUid),
    sourceNodeAlive: snapshot.aliveNodes.has(record.source),
    targetNodeAlive: snapshot.aliveNodes.has(record.target),
    targetEngineServing,
    kubevirt,
    vmi:
      snapshot.vmis === undefined
        ? undefined
        : vmi === undefined
          ? { exists: false }
          : { exists: true, nodeName: vmi.status?.nodeName },
    timeoutMs,
  };
}
