/**
 * Transitions of a live migration's record (status.migration) that both its writers apply: the
 * controller (an unpublish that comes first decides) and the migrator (everything else). One
 * definition, so a decision looks the same whoever took it.
 */
import type { MigrationDecision, MigrationRecord } from '../api/volume.js';

/** The node that keeps its engine: the target on confirm, the source on rollback, none on detach. */
export function winnerOf(record: MigrationRecord, decision: MigrationDecision): string | undefined {
  if (decision === 'Confirm') return record.target;
  if (decision === 'Rollback') return record.source;
  return undefined;
}

export interface Decision {
  decision: MigrationDecision;
  /** CamelCase, e.g. SourcePodTerminated. */
  reason: string;
  /** In words; cut to the CRD's 2048 characters. */
  evidence: string;
  /** When the deciding evidence was observed. */
  observedAt: Date;
  decidedAt: Date;
  decidedBy: string;
}

/** Writes `decision` into `record` (phase Confirming or RollingBack); false when one is there already. */
export function applyDecision(record: MigrationRecord, decision: Decision): boolean {
  if (record.decision !== undefined) return false;
  record.decision = decision.decision;
  record.phase = decision.decision === 'Confirm' ? 'Confirming' : 'RollingBack';
  record.reason = decision.reason;
  record.evidence = decision.evidence.slice(0, 2048);
  record.observedAt = decision.observedAt.toISOString();
  record.decidedAt = decision.decidedAt.toISOString();
  record.decidedBy = decision.decidedBy;
  return true;
}
