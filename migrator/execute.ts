/**
 * Carrying out a migration's decision, in an order that is safe to interrupt anywhere and to run
 * twice (a restarted or a second migrator picks up from what the Volume records):
 *   1. the decision is written into the record (phase Confirming / RollingBack) — from then on it
 *      is never taken again, only carried out;
 *   2. the loser leaves spec.engines, so its node's data plane stops its engine;
 *   3. the loser leaves status.engines in a new epoch (the fence epoch), and that epoch is pushed
 *      to every replica, so the loser cannot write anywhere even if it never stops; a replica
 *      that cannot be reached is marked Failed in a newer epoch instead (it is rebuilt later);
 *   4. only then the record ends: it moves to status.lastMigration, with the decision, reason,
 *      evidence and times, and the migration is measured and announced with Events.
 * None of it waits for the kubelet or the attach-detach controller: their later
 * ControllerUnpublishVolume of the loser finds nothing to do and succeeds.
 */
import type { Logger } from 'pino';
import type { EventSink } from '../driver/controller/volume-events.js';
import { eventSubject } from '../driver/controller/volume-events.js';
import type { MigrationDecision, MigrationRecord, Volume } from '../lib/api/volume.js';
import type { EventSubject } from '../lib/kube/events.js';
import { withObservedStatus } from '../lib/migration/observed-state.js';
import { applyDecision, winnerOf } from '../lib/migration/record.js';
import type { Fencer } from './fence.js';
import { type MigratorMetrics, resultOf } from './metrics.js';
import { updateVolume, type VolumeAccess } from './volume-store.js';

export interface ExecutorDeps {
  volumes: VolumeAccess;
  fencer: Fencer;
  metrics: MigratorMetrics;
  events: EventSink;
  log: Logger;
  /** The VMI an Event should also go to, when KubeVirt's CRDs exist and it is known. */
  vmiSubject?: (record: MigrationRecord) => EventSubject | undefined;
  now?: () => number;
}

export interface DecisionInput {
  decision: MigrationDecision;
  reason: string;
  evidence: string;
  /** When the deciding evidence was observed (ms since the epoch). */
  observedAt: number;
  decidedBy: string;
}

/** Reasons for migrations that ended by themselves rather than by KubeVirt's or the kubelet's hand. */
const SELF_RESOLVED = new Set(['Timeout', 'TargetNodeLost', 'SourceNodeLost', 'BothPodsGone']);
const FENCE_ROUNDS = 3;

/** Step 1: writes the decision unless the record already has one (it is then kept). */
export async function recordDecision(
  deps: ExecutorDeps,
  name: string,
  input: DecisionInput,
  fresh?: Volume,
): Promise<Volume | undefined> {
  const decidedAt = new Date((deps.now ?? Date.now)());
  return updateVolume(
    deps.volumes,
    name,
    'status',
    (volume) => {
      const record = volume.status?.migration;
      if (record === undefined) return undefined;
      const decision = { ...input, observedAt: new Date(input.observedAt), decidedAt };
      return applyDecision(record, decision) ? volume : undefined;
    },
    fresh,
  );
}

/** Steps 2 to 4 for the decision the record holds; returns the ended record, if it ended now. */
export async function carryOut(
  deps: ExecutorDeps,
  name: string,
  fresh?: Volume,
): Promise<MigrationRecord | undefined> {
  const now = deps.now ?? Date.now;
  const t0 = performance.now();
  const step = (what: string) =>
    deps.log.debug({ volume: name, step: what, ms: Math.round(performance.now() - t0) }, 'carrying out');
  const first = await updateVolume(
    deps.volumes,
    name,
    'spec',
    (volume) => {
      const record = volume.status?.migration;
      if (record?.decision === undefined) return undefined;
      const winner = winnerOf(record, record.decision);
      const engines = volume.spec.engines ?? [];
      const kept = engines.filter((e) => e.node === winner);
      if (kept.length === engines.length) return undefined;
      volume.spec.engines = kept;
      return volume;
    },
    fresh,
  );
  const record = first?.status?.migration;
  if (record?.decision === undefined) return undefined;
  const decision = record.decision;
  const winner = winnerOf(record, decision);

  step('spec.engines written');
  let fenced = await updateVolume(
    deps.volumes,
    name,
    'status',
    (volume) => {
      const m = volume.status?.migration;
      if (m?.decision !== decision || volume.status === undefined) return undefined;
      const engines = volume.status.engines ?? [];
      const losers = engines.filter((e) => e.node !== winner);
      if (m.fenceEpoch !== undefined && losers.length === 0) return undefined;
      const epoch = (volume.status.epoch ?? 0) + 1;
      volume.status.engines = engines.filter((e) => e.node === winner);
      volume.status.epoch = epoch;
      m.fenceEpoch = epoch;
      return volume;
    },
    first,
  );
  for (let round = 1; ; round++) {
    if (fenced?.status?.migration === undefined) return undefined;
    const epoch = fenced.status.epoch ?? 0;
    step('fence epoch recorded');
    const result = await deps.fencer.fence(name, epoch, fenced.status.replicas ?? []);
    step('fence epoch pushed to the replicas');
    if (result.unreachable.length === 0) break;
    if (round >= FENCE_ROUNDS)
      throw new Error(
        `volume ${name}: replicas on ${result.unreachable.map((u) => u.node).join(', ')} could not be fenced`,
      );
    const lost = new Set(result.unreachable.map((u) => u.node));
    deps.log.warn(
      { volume: name, nodes: [...lost] },
      'replicas unreachable while fencing; marking them Failed',
    );
    fenced = await updateVolume(
      deps.volumes,
      name,
      'status',
      (volume) => {
        const status = volume.status;
        if (status === undefined) return undefined;
        const replicas = status.replicas ?? [];
        const left = replicas.filter((r) => r.mode === 'ReadWrite' && !lost.has(r.node));
        // Failing the last readable replica would lose acknowledged writes: retry later instead.
        if (left.length === 0)
          throw new Error(`volume ${name}: no reachable readable replica to keep while fencing`);
        status.replicas = replicas.map((r) =>
          lost.has(r.node) && r.mode !== 'Failed' ? { node: r.node, address: r.address, mode: 'Failed' } : r,
        );
        status.epoch = (status.epoch ?? 0) + 1;
        return volume;
      },
      fenced,
    );
  }

  const endedAt = now();
  let ended: MigrationRecord | undefined;
  const stored = await updateVolume(
    deps.volumes,
    name,
    'status',
    (volume) => {
      // The change may run more than once (a stale copy costs a 409 and a rerun on a fresh one):
      // only the run whose write is stored may leave `ended` set.
      ended = undefined;
      const m = volume.status?.migration;
      if (m?.decision !== decision || volume.status === undefined) return undefined;
      ended = {
        ...m,
        phase: decision === 'Confirm' ? 'Confirmed' : decision === 'Rollback' ? 'RolledBack' : 'Resolved',
        endedAt: new Date(endedAt).toISOString(),
      };
      delete volume.status.migration;
      volume.status.lastMigration = ended;
      return withObservedStatus(volume) ?? volume;
    },
    fenced,
  );
  if (ended === undefined || stored === undefined) return undefined;
  measure(deps, ended, endedAt);
  announce(deps, stored, ended);
  deps.log.info(
    { volume: name, decision, reason: ended.reason, winner: winner ?? null, fenceEpoch: ended.fenceEpoch },
    'migration ended; the loser is fenced',
  );
  return ended;
}

function measure(deps: ExecutorDeps, record: MigrationRecord, endedAt: number): void {
  const result = resultOf(record.decision as MigrationDecision);
  const ms = (iso: string | undefined) => (iso === undefined ? Number.NaN : Date.parse(iso));
  const seconds = (from: number, to: number) =>
    Number.isFinite(from) && to >= from ? (to - from) / 1000 : undefined;
  deps.metrics.migrations.inc({ result, reason: record.reason ?? 'Unknown' });
  const duration = seconds(ms(record.startedAt), ms(record.decidedAt));
  if (duration !== undefined) deps.metrics.duration.observe({ result }, duration);
  const dual = seconds(ms(record.targetReadyAt), endedAt);
  if (dual !== undefined) deps.metrics.dualEngine.observe({ result }, dual);
  const latency = seconds(ms(record.observedAt), endedAt);
  if (latency !== undefined) deps.metrics.decisionLatency.observe({ result }, latency);
}

function announce(deps: ExecutorDeps, volume: Volume, record: MigrationRecord): void {
  const name = volume.metadata.name;
  const selfResolved = SELF_RESOLVED.has(record.reason ?? '') || record.decision === 'Detach';
  const outcome =
    record.decision === 'Confirm'
      ? `confirmed: ${record.target} serves it alone, the engine on ${record.source} is fenced`
      : record.decision === 'Rollback'
        ? `rolled back: ${record.source} serves it alone, the engine on ${record.target} is fenced`
        : `resolved by detaching both engines (${record.source}, ${record.target}): the VM is gone`;
  const message = `live migration of volume ${name} ${record.source} -> ${record.target} ${outcome} (epoch ${record.fenceEpoch}); reason ${record.reason}: ${record.evidence ?? ''}`;
  const details = {
    type: selfResolved ? ('Warning' as const) : ('Normal' as const),
    reason: selfResolved
      ? 'MigrationResolved'
      : record.decision === 'Confirm'
        ? 'MigrationConfirmed'
        : 'MigrationRolledBack',
    message,
    action: 'Migrate',
  };
  deps.events.record(eventSubject(volume), details);
  const vmi = deps.vmiSubject?.(record);
  if (vmi !== undefined) deps.events.record(vmi, details);
}
