import type { MigrationRecord } from '../lib/api/volume.js';
import { MIGRATION_PHASES } from '../lib/kubevirt/vocabulary.js';
import { winnerOf } from '../lib/migration/record.js';
import { decide, type KubeVirtView, type MigrationEvidence, type PodState } from './decide.js';

const NOW = Date.parse('2026-12-02T10:00:00Z');
const record: MigrationRecord = {
  source: 'node-a',
  target: 'node-b',
  vmiUID: 'uid-1',
  vmName: 'vm1',
  vmNamespace: 'vms',
  phase: 'TargetReady',
  startedAt: new Date(NOW - 10_000).toISOString(),
};

const holds = (p: PodState) => p === 'running' || p === 'terminating';

function evidence(
  source: PodState,
  target: PodState,
  extra: Partial<MigrationEvidence> = {},
): MigrationEvidence {
  return {
    now: NOW,
    record,
    source: { launcher: source, launcherName: 'launcher-a', holdsVolume: holds(source) },
    target: { launcher: target, launcherName: 'launcher-b', holdsVolume: holds(target) },
    sourceNodeAlive: true,
    targetNodeAlive: true,
    targetEngineServing: true,
    timeoutMs: 300_000,
    ...extra,
  };
}

const verdictOf = (e: MigrationEvidence) => {
  const v = decide(e);
  return v.decision === undefined ? 'wait' : `${v.decision}:${v.reason}`;
};

describe('decide: pods only (no KubeVirt CRDs)', () => {
  const states: PodState[] = ['absent', 'pending', 'running', 'terminating', 'finished'];
  // Every combination of the two launchers' states, with the expected verdict.
  const expected = (s: PodState, t: PodState): string => {
    const gone = (p: PodState) => p === 'absent' || p === 'finished';
    if (gone(s) && t === 'running') return 'Confirm:SourcePodTerminated';
    if (gone(t) && holds(s)) return 'Rollback:TargetPodTerminated';
    if (gone(s) && gone(t)) return 'Detach:BothPodsGone';
    return 'wait';
  };
  for (const s of states)
    for (const t of states)
      it(`source ${s}, target ${t} → ${expected(s, t)}`, () => {
        expect(verdictOf(evidence(s, t))).toBe(expected(s, t));
      });

  it('never removes the engine of a node where another pod of the VM still holds the volume', () => {
    const e = evidence('finished', 'running');
    e.source.holdsVolume = true; // e.g. a hotplug pod still running on the source node
    expect(verdictOf(e)).toBe('wait');
  });
});

describe('decide: KubeVirt migration state first', () => {
  const withKv = (kv: KubeVirtView, s: PodState = 'running', t: PodState = 'running') =>
    evidence(s, t, { kubevirt: kv, vmi: { exists: true, nodeName: 'node-a' } });

  // Every VMIM phase, with both pods running, then with the pod on the loser's side gone.
  for (const phase of MIGRATION_PHASES) {
    it(`VMIM phase "${phase}", both pods running`, () => {
      const v = verdictOf(withKv({ vmimName: 'mig', vmimPhase: phase }));
      // Succeeded waits for the source launcher to exit; Failed for the target's; others go on.
      expect(v).toBe('wait');
    });
    it(`VMIM phase "${phase}", the losing side's pod gone`, () => {
      if (phase === 'Succeeded')
        expect(verdictOf(withKv({ vmimName: 'mig', vmimPhase: phase }, 'finished', 'running'))).toBe(
          'Confirm:MigrationSucceeded',
        );
      else if (phase === 'Failed')
        expect(verdictOf(withKv({ vmimName: 'mig', vmimPhase: phase }, 'running', 'finished'))).toBe(
          'Rollback:MigrationFailed',
        );
      else
        expect(verdictOf(withKv({ vmimName: 'mig', vmimPhase: phase }, 'running', 'finished'))).toBe(
          'Rollback:TargetPodTerminated',
        );
    });
  }

  it('a failed migration whose target pod ended Succeeded is rolled back, not confirmed', () => {
    // The source pod is still running and the target ended: a pod phase alone would not tell.
    expect(verdictOf(withKv({ vmimPhase: 'Failed', failed: true }, 'running', 'finished'))).toBe(
      'Rollback:MigrationFailed',
    );
  });

  it('KubeVirt says failed although the source pod is gone: rollback wins over the pods', () => {
    expect(verdictOf(withKv({ vmimPhase: 'Failed' }, 'finished', 'finished'))).toBe(
      'Rollback:MigrationFailed',
    );
  });

  it('migrationState completed without a VMIM confirms once the source exits', () => {
    expect(verdictOf(withKv({ completed: true, failed: false }, 'running', 'running'))).toBe('wait');
    expect(verdictOf(withKv({ completed: true, failed: false }, 'absent', 'running'))).toBe(
      'Confirm:MigrationSucceeded',
    );
  });

  it('completed and failed together is a failure', () => {
    expect(verdictOf(withKv({ completed: true, failed: true }, 'running', 'absent'))).toBe(
      'Rollback:MigrationFailed',
    );
  });

  it('an abort that succeeded rolls back', () => {
    expect(verdictOf(withKv({ vmimPhase: 'Running', abortStatus: 'Succeeded' }, 'running', 'finished'))).toBe(
      'Rollback:MigrationAborted',
    );
    // Still aborting: nothing decided yet.
    expect(verdictOf(withKv({ vmimPhase: 'Running', abortStatus: 'Aborting' }))).toBe('wait');
  });
});

describe('decide: stuck migrations end by themselves', () => {
  it('target node lost → rollback; source node lost → confirm; both lost → wait', () => {
    expect(verdictOf(evidence('running', 'running', { targetNodeAlive: false }))).toBe(
      'Rollback:TargetNodeLost',
    );
    expect(verdictOf(evidence('running', 'running', { sourceNodeAlive: false }))).toBe(
      'Confirm:SourceNodeLost',
    );
    expect(
      verdictOf(evidence('running', 'running', { sourceNodeAlive: false, targetNodeAlive: false })),
    ).toBe('wait');
  });

  it('a lost node overrides KubeVirt (nothing can run there)', () => {
    const e = evidence('running', 'running', {
      targetNodeAlive: false,
      kubevirt: { vmimPhase: 'Succeeded' },
      vmi: { exists: true },
    });
    expect(verdictOf(e)).toBe('Rollback:TargetNodeLost');
  });

  it('both pods gone: keep the engine where the VMI last ran, or detach when it is gone', () => {
    const gone = (vmi: MigrationEvidence['vmi']) =>
      verdictOf(evidence('finished', 'absent', { kubevirt: {}, vmi }));
    expect(gone({ exists: true, nodeName: 'node-b' })).toBe('Confirm:BothPodsGone');
    expect(gone({ exists: true, nodeName: 'node-a' })).toBe('Rollback:BothPodsGone');
    expect(gone({ exists: true, nodeName: 'node-z' })).toBe('Detach:BothPodsGone');
    expect(gone({ exists: false })).toBe('Detach:BothPodsGone');
  });

  it('times out a target that never ran, or whose engine never served', () => {
    const late = { now: NOW + 400_000 };
    expect(verdictOf(evidence('running', 'pending', late))).toBe('Rollback:Timeout');
    expect(verdictOf(evidence('running', 'absent', late))).toBe('Rollback:TargetPodTerminated');
    const neverServed = {
      ...late,
      targetEngineServing: false,
      record: { ...record, phase: 'Started' as const },
    };
    expect(verdictOf(evidence('running', 'running', neverServed))).toBe('Rollback:Timeout');
    // It served once and is restarting (a data-plane restart): the running target pod may use it.
    expect(verdictOf(evidence('running', 'running', { ...late, targetEngineServing: false }))).toBe('wait');
    // A migration making progress (both running, target serving) is never timed out by Tandem:
    // KubeVirt's own progress timeout fails the VMIM, which then rolls back.
    expect(verdictOf(evidence('running', 'running', late))).toBe('wait');
    expect(verdictOf(evidence('running', 'pending'))).toBe('wait');
    const v = decide(evidence('running', 'pending', late));
    expect(v.decision === 'Rollback' && v.evidence).toMatch(/never ran \(pending\) within 300s/);
  });

  it('a terminating pod still holds the volume: no timeout removes its engine', () => {
    expect(verdictOf(evidence('running', 'terminating', { now: NOW + 400_000 }))).toBe('wait');
  });
});

describe('winnerOf', () => {
  it('target on confirm, source on rollback, none on detach', () => {
    expect(winnerOf(record, 'Confirm')).toBe('node-b');
    expect(winnerOf(record, 'Rollback')).toBe('node-a');
    expect(winnerOf(record, 'Detach')).toBeUndefined();
  });
});
