/**
 * The controller's part of a live migration's record (status.migration on the Volume). The
 * controller owns its start: ControllerPublishVolume writes it (phase Started) before it asks for
 * the second engine, because that call is the one moment both nodes and the VM are known and
 * checked; nothing else may start a second engine. The migrator owns everything after: TargetReady,
 * the decision, carrying it out, the end. The one exception is an unpublish that comes first:
 * ControllerUnpublishVolume of the source or the target *is* the decision (the kubelet only
 * unpublishes a side whose pod is gone), so it records it, and the migrator carries it out.
 */
import type { MigrationRecord, Volume } from '../../lib/api/volume.js';
import { LAUNCHER_ROLE, vmPodLabels } from '../../lib/kubevirt/vocabulary.js';
import { applyDecision, winnerOf } from '../../lib/migration/record.js';
import { failedPrecondition, unavailable } from '../csi/errors.js';
import type { RpcContext } from '../csi/rpc.js';
import { type ControllerCluster, type PodUse, updateVolume } from './cluster.js';

/** The record of a migration from `source` to `target`, identified by the target's launcher pod. */
export function migrationRecordFor(source: string, target: string, pods: PodUse[]): MigrationRecord {
  const launcher =
    pods.find((p) => p.node === target && vmPodLabels(p.labels).role === LAUNCHER_ROLE) ??
    pods.find((p) => vmPodLabels(p.labels).role === LAUNCHER_ROLE);
  const labels = vmPodLabels(launcher?.labels);
  const record: MigrationRecord = { source, target, phase: 'Started' };
  if (labels.vmiUid) record.vmiUID = labels.vmiUid;
  if (labels.vmName) record.vmName = labels.vmName;
  if (launcher?.namespace) record.vmNamespace = launcher.namespace;
  return record;
}

/**
 * Refuses a publish that would start a second migration of the volume, or bring back the loser
 * of one whose decision is still being carried out.
 */
export function checkMigrationGuard(volume: Volume, node: string): void {
  const record = volume.status?.migration;
  if (record === undefined) return;
  const id = volume.metadata.name;
  const sides = [record.source, record.target];
  if (record.decision !== undefined) {
    if (node !== winnerOf(record, record.decision))
      throw unavailable(
        `volume ${id}: the live migration ${record.source} -> ${record.target} is ending (${record.decision}, ${record.reason ?? 'no reason'}); retry once it has ended`,
      );
    return;
  }
  if (!sides.includes(node))
    throw failedPrecondition(
      `volume ${id}: a live migration from ${record.source} to ${record.target} is in progress; at most 2 engines and one migration at a time, so ${node} cannot get an engine until it ends`,
    );
}

/** Writes the record (phase Started) unless the same migration is already recorded. */
export async function startMigrationRecord(
  cluster: ControllerCluster,
  id: string,
  record: MigrationRecord,
  context: RpcContext,
  /** The Volume just read; the write starts from it. */
  fresh?: Volume,
): Promise<Volume | undefined> {
  const stored = await updateVolume(
    cluster,
    id,
    (next) => {
      const current = next.status?.migration;
      if (current !== undefined) {
        if (current.source === record.source && current.target === record.target) return undefined;
        throw failedPrecondition(
          `volume ${id}: a live migration from ${current.source} to ${current.target} is in progress; one migration at a time`,
        );
      }
      next.status = {
        ...next.status,
        migration: { ...record, startedAt: new Date().toISOString() },
        state: 'Migrating',
      };
      return next;
    },
    'status',
    fresh,
  );
  context.logger.info(
    { volume: id, source: record.source, target: record.target, vm: record.vmName, vmiUID: record.vmiUID },
    'live migration recorded',
  );
  return stored;
}

/**
 * An unpublish of a migration's source or target before the migrator decided: confirm when the
 * source goes, roll back when the target goes. A decision already taken is kept.
 */
export async function decideOnUnpublish(
  cluster: ControllerCluster,
  id: string,
  node: string,
  context: RpcContext,
): Promise<void> {
  const now = new Date();
  const stored = await updateVolume(
    cluster,
    id,
    (fresh) => {
      const m = fresh.status?.migration;
      if (m === undefined || (node !== m.source && node !== m.target)) return undefined;
      const confirm = node === m.source;
      const decided = applyDecision(m, {
        decision: confirm ? 'Confirm' : 'Rollback',
        reason: confirm ? 'SourceUnpublished' : 'TargetUnpublished',
        evidence: `ControllerUnpublishVolume for the ${confirm ? 'source' : 'target'} node ${node} arrived before the migrator decided`,
        observedAt: now,
        decidedAt: now,
        decidedBy: 'controller',
      });
      return decided ? fresh : undefined;
    },
    'status',
  );
  const m = stored?.status?.migration;
  if (m?.decidedBy === 'controller' && m.decidedAt === now.toISOString())
    context.logger.info({ volume: id, node, decision: m.decision }, 'live migration decided by unpublish');
}
