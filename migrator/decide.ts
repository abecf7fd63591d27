/**
 * The decision rules of a live migration, as a pure function of what the cluster shows
 * (DESIGN.md "Migration (confirm or rollback)"): the same evidence always gives the same
 * decision, so a restarted or a second migrator reaches the one the first would have.
 *
 * Precedence, strongest first:
 *  1. a lost node (its data plane stopped renewing its registration Lease): the side still
 *     alive wins, since nothing can run on the other;
 *  2. KubeVirt's own migration state (the VMIM phase, the VMI's `status.migrationState`):
 *     it knows whether the guest resumed on the target — a pod phase alone cannot tell, since a
 *     failed migration's target may end Succeeded or Failed;
 *  3. the launcher pods: the source ended while the target runs → confirm; the target ended
 *     while the source runs → rollback; both ended → where the VMI last ran, or detach;
 *  4. the timeout: a target that never ran, or whose engine never served, is rolled back.
 * Overriding all but a lost node: never remove the engine of a node where a pod of the VM still
 * runs (running, or terminating and so possibly still writing). The decision then waits.
 */
import type { MigrationDecision, MigrationRecord } from '../lib/api/volume.js';

import type { MigrationPhase } from '../lib/kubevirt/vocabulary.js';

/** What a pod of the migration is doing, as far as holding the volume open goes. */
export type PodState = 'absent' | 'pending' | 'running' | 'terminating' | 'finished';

export interface SidePods {
  /** The launcher pod of this side (source or target), the most alive one when several. */
  launcher: PodState;
  launcherName?: string;
  /** Any pod of the VM on this side's node that may hold the volume open (launcher or hotplug). */
  holdsVolume: boolean;
}

/** KubeVirt's view of this migration, from the VMIM and/or the VMI's migrationState. */
export interface KubeVirtView {
  /** The VMIM, when one matches this migration. */
  vmimName?: string;
  vmimPhase?: MigrationPhase;
  /** From a migrationState naming this migration's target node. */
  completed?: boolean;
  failed?: boolean;
  abortStatus?: string;
  failureReason?: string;
}

export interface MigrationEvidence {
  now: number;
  record: MigrationRecord;
  source: SidePods;
  target: SidePods;
  sourceNodeAlive: boolean;
  targetNodeAlive: boolean;
  /** The target engine is in status.engines (it has served). */
  targetEngineServing: boolean;
  /** undefined when KubeVirt's CRDs are not installed (pods only). */
  kubevirt?: KubeVirtView;
  /** undefined when KubeVirt's CRDs are not installed; `exists: false` when the VMI is gone. */
  vmi?: { exists: boolean; nodeName?: string };
  timeoutMs: number;
}

export type Verdict =
  | { decision: MigrationDecision; reason: string; evidence: string }
  | { decision?: undefined; waiting: string };

const live = (p: PodState) => p === 'running' || p === 'terminating';
const gone = (p: PodState) => p === 'absent' || p === 'finished';

export function decide(e: MigrationEvidence): Verdict {
  const { record } = e;
  const src = `source pod ${e.source.launcherName ?? '(none)'} on ${record.source} is ${e.source.launcher}`;
  const dst = `target pod ${e.target.launcherName ?? '(none)'} on ${record.target} is ${e.target.launcher}`;
  const pods = `${src}; ${dst}`;

  // 1. Lost nodes: nothing can run there, and fencing keeps whatever is left of it out.
  if (!e.targetNodeAlive && e.sourceNodeAlive)
    return rollback(
      'TargetNodeLost',
      `the data plane on ${record.target} stopped renewing its Lease; ${pods}`,
    );
  if (!e.sourceNodeAlive && e.targetNodeAlive)
    return confirm(
      'SourceNodeLost',
      `the data plane on ${record.source} stopped renewing its Lease; ${pods}`,
    );

  // 2. KubeVirt's own migration state.
  const kv = e.kubevirt;
  if (kv !== undefined) {
    const where = kubevirtWords(kv);
    if (kv.vmimPhase === 'Succeeded' || (kv.completed === true && kv.failed !== true)) {
      if (e.source.holdsVolume)
        return wait(
          `KubeVirt reports the migration completed (${where}), but ${src}: waiting for it to exit`,
        );
      return confirm('MigrationSucceeded', `${where}; ${pods}`);
    }
    const aborted = kv.abortStatus === 'Succeeded';
    if (kv.vmimPhase === 'Failed' || kv.failed === true || aborted) {
      if (e.target.holdsVolume)
        return wait(`KubeVirt reports the migration failed (${where}), but ${dst}: waiting for it to exit`);
      return rollback(aborted ? 'MigrationAborted' : 'MigrationFailed', `${where}; ${pods}`);
    }
  }

  // 3. The launcher pods.
  const s = e.source.launcher;
  const t = e.target.launcher;
  if (gone(s) && t === 'running' && !e.source.holdsVolume) return confirm('SourcePodTerminated', pods);
  if (gone(t) && live(s) && !e.target.holdsVolume) return rollback('TargetPodTerminated', pods);
  if (gone(s) && gone(t) && !e.source.holdsVolume && !e.target.holdsVolume) {
    const vmiWords =
      e.vmi === undefined
        ? 'no KubeVirt CRDs'
        : e.vmi.exists
          ? `the VMI last ran on ${e.vmi.nodeName ?? '(no node)'}`
          : 'the VMI is gone';
    if (e.vmi?.exists && e.vmi.nodeName === record.target)
      return confirm('BothPodsGone', `${pods}; ${vmiWords}`);
    if (e.vmi?.exists && e.vmi.nodeName === record.source)
      return rollback('BothPodsGone', `${pods}; ${vmiWords}`);
    return { decision: 'Detach', reason: 'BothPodsGone', evidence: `${pods}; ${vmiWords}` };
  }

  // 4. No progress: the target never ran, or its engine never served.
  const started = Date.parse(record.startedAt ?? '');
  const age = Number.isFinite(started) ? e.now - started : 0;
  // A target whose engine never served cannot have the volume open, whatever its pod does; one
  // that served once (TargetReady) and is restarting may, so only its pod counts then.
  const everServed = e.targetEngineServing || record.phase === 'TargetReady';
  if (age > e.timeoutMs && (!everServed || (!e.target.holdsVolume && t !== 'running'))) {
    const missing =
      t !== 'running'
        ? `target pod ${e.target.launcherName ?? `on ${record.target}`} never ran (${t})`
        : `the target engine on ${record.target} never served`;
    return rollback('Timeout', `${missing} within ${Math.round(e.timeoutMs / 1000)}s; ${pods}`);
  }
  if (age > e.timeoutMs && gone(t) && e.target.holdsVolume)
    return wait(`timed out, but a pod of the VM still holds the volume on ${record.target}`);
  return wait(pods);
}

function kubevirtWords(kv: KubeVirtView): string {
  const parts: string[] = [];
  if (kv.vmimName !== undefined) parts.push(`VMIM ${kv.vmimName} phase ${kv.vmimPhase || '(unset)'}`);
  if (kv.completed !== undefined || kv.failed !== undefined)
    parts.push(`migrationState completed=${kv.completed === true} failed=${kv.failed === true}`);
  if (kv.abortStatus) parts.push(`abortStatus ${kv.abortStatus}`);
  if (kv.failureReason) parts.push(`failureReason "${kv.failureReason.slice(0, 200)}"`);
  return parts.join(', ') || 'KubeVirt reports nothing yet';
}

function confirm(reason: string, evidence: string): Verdict {
  return { decision: 'Confirm', reason, evidence };
}
function rollback(reason: string, evidence: string): Verdict {
  return { decision: 'Rollback', reason, evidence };
}
function wait(why: string): Verdict {
  return { waiting: why };
}
