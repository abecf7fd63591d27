import { type AdmissionRequest, allow, invalid, isRecord, type Verdict } from '../admission.js';

export const MAX_REPLICAS = 5;

/**
 * Tandem's own Volume resource. Its CRD enforces the invariants with CEL for
 * every writer; this rule repeats the ones users meet, with messages that say
 * what to do, and adds those CEL cannot express compactly (distinct engine
 * nodes, a migration's nodes among the engines).
 */
export function validateVolume(request: AdmissionRequest): Verdict {
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return allow();
  const volume = request.object;
  if (!isRecord(volume) || !isRecord(volume.spec)) return invalid('the object is not a Volume (no spec)');
  const spec = volume.spec;
  const status = isRecord(volume.status) ? volume.status : {};
  const name = request.name ?? 'volume';
  const errors: string[] = [];

  const replicas = spec.numberOfReplicas;
  if (
    typeof replicas !== 'number' ||
    !Number.isInteger(replicas) ||
    replicas < 1 ||
    replicas > MAX_REPLICAS
  ) {
    errors.push(`numberOfReplicas must be a whole number from 1 to ${MAX_REPLICAS}`);
  }
  const engines = Array.isArray(spec.engines) ? spec.engines : [];
  const engineNodes = engines.map((e) => (isRecord(e) && typeof e.node === 'string' ? e.node : ''));
  if (engineNodes.length > 2) {
    errors.push(
      `at most two engines (source and target of one live migration; the CRD caps spec.engines at 2 as well), not ${engineNodes.length}: ${engineNodes.join(', ')}`,
    );
  }
  if (new Set(engineNodes).size !== engineNodes.length)
    errors.push('each engine must be on a different node');
  if (engineNodes.length === 2 && spec.migratable !== true) {
    errors.push('two engines are allowed only on a migratable volume (ReadWriteMany + Block)');
  }

  const migration = isRecord(status.migration) ? status.migration : undefined;
  if (migration && engineNodes.length > 0) {
    const missing = [migration.source, migration.target].filter(
      (n) => typeof n === 'string' && !engineNodes.includes(n),
    );
    if (missing.length > 0 && engineNodes.length === 2) {
      errors.push(
        `a running migration's source and target must be the engine nodes; ${missing.join(', ')} has no engine`,
      );
    }
  }
  if (request.operation === 'UPDATE' && isRecord(request.oldObject)) {
    const oldStatus = isRecord(request.oldObject.status) ? request.oldObject.status : {};
    const oldMigration = isRecord(oldStatus.migration) ? oldStatus.migration : undefined;
    if (
      oldMigration &&
      migration &&
      (oldMigration.target !== migration.target || oldMigration.source !== migration.source)
    ) {
      errors.push(
        `the migration ${oldMigration.source} -> ${oldMigration.target} is running; its nodes cannot change (confirm or roll it back first)`,
      );
    }
    const oldSpec = isRecord(request.oldObject.spec) ? request.oldObject.spec : {};
    if (oldMigration) {
      const during = `the migration ${oldMigration.source} -> ${oldMigration.target} is running`;
      const retry = 'retry after it ends (confirmed or rolled back)';
      if (oldSpec.numberOfReplicas !== spec.numberOfReplicas) {
        errors.push(
          `numberOfReplicas cannot change from ${String(oldSpec.numberOfReplicas)} to ${String(spec.numberOfReplicas)} while ${during}; ${retry}`,
        );
      }
      if (oldSpec.sizeBytes !== spec.sizeBytes) {
        errors.push(
          `sizeBytes cannot change from ${String(oldSpec.sizeBytes)} to ${String(spec.sizeBytes)} while ${during}; ${retry}`,
        );
      }
    }
  }
  return errors.length === 0 ? allow() : invalid(`Volume ${name}: ${errors.join('; ')}`);
}
