import type { V1StorageClass } from '@kubernetes/client-node';
import { CSI_DRIVER_NAME } from '../../lib/api/volume.js';
import { parseStorageClassParameters } from '../../lib/params/storage-class.js';
import { type AdmissionRequest, allow, invalid, isRecord, type Verdict } from '../admission.js';
import type { ClusterView } from '../cluster-view.js';

type AccessMode = 'ReadWriteOnce' | 'ReadWriteOncePod' | 'ReadWriteMany';
const TANDEM_ACCESS_MODES: readonly string[] = ['ReadWriteOnce', 'ReadWriteOncePod', 'ReadWriteMany'];

const LEGAL = [
  'ReadWriteOnce or ReadWriteOncePod with volumeMode Filesystem or Block (class not migratable)',
  'ReadWriteMany with volumeMode Filesystem (an NFS volume; class not migratable)',
  'ReadWriteMany with volumeMode Block (class with migratable: "true")',
].join('; ');

interface ClaimShape {
  accessModes: string[];
  volumeMode: 'Filesystem' | 'Block';
  storageClassName: string | undefined;
}

/**
 * A claim on a Tandem StorageClass must be one of the design's legal
 * combinations of access mode, volume mode and `migratable`; anything else is
 * refused with the list of what is legal, never served as something else.
 */
export async function validateClaim(request: AdmissionRequest, view: ClusterView): Promise<Verdict> {
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return allow();
  const claim = claimShape(request.object);
  if (typeof claim === 'string') return invalid(claim);

  if (request.operation === 'UPDATE') {
    const old = claimShape(request.oldObject);
    if (typeof old !== 'string') {
      const changed = immutableChanges(old, claim);
      if (changed.length > 0)
        return invalid(`${changed.join(', ')} of a claim cannot change; create a new claim instead`);
    }
  }
  if (!claim.storageClassName) return allow();
  const storageClass = await view.storageClass(claim.storageClassName);
  // A class that does not exist yet: Kubernetes keeps the claim Pending, and the
  // driver's CreateVolume checks the same rules when the class appears.
  if (!storageClass || storageClass.provisioner !== CSI_DRIVER_NAME) return allow();
  return checkCombination(request.name ?? 'claim', claim, storageClass);
}

function checkCombination(name: string, claim: ClaimShape, storageClass: V1StorageClass): Verdict {
  const className = storageClass.metadata?.name ?? claim.storageClassName;
  const parsed = parseStorageClassParameters(storageClass.parameters);
  if (!parsed.ok)
    return invalid(
      `StorageClass ${className} has invalid parameters, so no claim can use it: ${parsed.errors.join('; ')}`,
    );
  const migratable = parsed.value.migratable;

  const unsupported = claim.accessModes.filter((m) => !TANDEM_ACCESS_MODES.includes(m));
  if (claim.accessModes.length === 0)
    return invalid(`claim ${name}: spec.accessModes is empty. Legal on Tandem: ${LEGAL}.`);
  if (unsupported.length > 0) {
    return invalid(
      `claim ${name}: Tandem does not serve access mode ${unsupported.join(', ')}. Legal on Tandem: ${LEGAL}.`,
    );
  }
  if (claim.accessModes.length > 1) {
    return invalid(
      `claim ${name}: ask for exactly one access mode, not ${claim.accessModes.join(' + ')}. Legal on Tandem: ${LEGAL}.`,
    );
  }
  const mode = claim.accessModes[0] as AccessMode;
  const what = `${mode} + ${claim.volumeMode} on StorageClass ${className} (migratable: "${migratable}")`;
  if (migratable && !(mode === 'ReadWriteMany' && claim.volumeMode === 'Block')) {
    const hint =
      mode === 'ReadWriteMany'
        ? 'a ReadWriteMany Filesystem volume is served over NFS and cannot be migratable; use a class without migratable: "true"'
        : 'use a class without migratable: "true" for this claim, or ask for ReadWriteMany + Block';
    return invalid(
      `claim ${name}: ${what} is not legal: a migratable class serves only ReadWriteMany + Block claims; ${hint}.`,
    );
  }
  if (!migratable && mode === 'ReadWriteMany' && claim.volumeMode === 'Block') {
    return invalid(
      `claim ${name}: ${what} is not legal: a ReadWriteMany Block volume is the live-migration case and needs a StorageClass with migratable: "true".`,
    );
  }
  return allow();
}

function claimShape(object: unknown): ClaimShape | string {
  if (!isRecord(object) || !isRecord(object.spec))
    return 'the object is not a PersistentVolumeClaim (no spec)';
  const spec = object.spec;
  const accessModes = spec.accessModes ?? [];
  if (!Array.isArray(accessModes) || !accessModes.every((m) => typeof m === 'string')) {
    return 'spec.accessModes must be a list of strings';
  }
  const volumeMode = spec.volumeMode ?? 'Filesystem';
  if (volumeMode !== 'Filesystem' && volumeMode !== 'Block')
    return 'spec.volumeMode must be Filesystem or Block';
  const storageClassName = spec.storageClassName;
  if (storageClassName !== undefined && storageClassName !== null && typeof storageClassName !== 'string') {
    return 'spec.storageClassName must be a string';
  }
  return {
    accessModes: [...accessModes].sort(),
    volumeMode,
    storageClassName: storageClassName || undefined,
  };
}

function immutableChanges(old: ClaimShape, next: ClaimShape): string[] {
  const changed: string[] = [];
  if (old.accessModes.join() !== next.accessModes.join()) changed.push('accessModes');
  if (old.volumeMode !== next.volumeMode) changed.push('volumeMode');
  if (old.storageClassName !== next.storageClassName) changed.push('storageClassName');
  return changed;
}
