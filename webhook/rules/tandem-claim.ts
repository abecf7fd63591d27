import type { V1PersistentVolume, V1PersistentVolumeClaim, V1StorageClass } from '@kubernetes/client-node';
import { CSI_DRIVER_NAME } from '../../lib/api/volume.js';
import type { ClusterView } from '../cluster-view.js';

/** What the pod and KubeVirt rules need to know about a claim an object refers to. */
export type ClaimClass =
  | { kind: 'not-found' }
  | { kind: 'not-tandem' }
  | {
      kind: 'tandem';
      migratable: boolean;
      accessModes: string[];
      volumeMode: 'Filesystem' | 'Block';
      claim: V1PersistentVolumeClaim;
    };

/**
 * Classifies the claim `namespace/name`. A bound claim is judged by its
 * PersistentVolume, which is what the driver will actually be asked to
 * publish; an unbound claim (or one whose PV the view cannot see yet) by the
 * StorageClass that will provision it.
 */
export async function classifyClaim(namespace: string, name: string, view: ClusterView): Promise<ClaimClass> {
  const claim = await view.claim(namespace, name);
  if (!claim) return { kind: 'not-found' };

  const volumeName = claim.spec?.volumeName;
  const pv = volumeName ? await view.persistentVolume(volumeName) : undefined;
  // A statically provisioned PV decides for itself, whatever class the claim names.
  if (pv && pv.spec?.csi?.driver !== CSI_DRIVER_NAME) return { kind: 'not-tandem' };

  const className = claim.spec?.storageClassName;
  // "" means "no class" to Kubernetes: nothing to look up.
  const storageClass = className ? await view.storageClass(className) : undefined;
  if (!pv && storageClass?.provisioner !== CSI_DRIVER_NAME) return { kind: 'not-tandem' };

  return {
    kind: 'tandem',
    migratable: isMigratable(pv, storageClass),
    accessModes: claim.spec?.accessModes ?? [],
    volumeMode: claim.spec?.volumeMode === 'Block' ? 'Block' : 'Filesystem',
    claim,
  };
}

/**
 * The PV's volume attributes were fixed when the volume was provisioned, so
 * they win over the class, whose parameters may have been different then (a
 * class is immutable, but may be deleted and recreated under the same name).
 */
function isMigratable(pv: V1PersistentVolume | undefined, storageClass: V1StorageClass | undefined): boolean {
  const attribute = pv?.spec?.csi?.volumeAttributes?.migratable;
  if (attribute !== undefined) return attribute === 'true';
  return storageClass?.parameters?.migratable === 'true';
}

/** True when the claim is bound, or will be bound, to a migratable Tandem volume. */
export function isMigratableTandem(
  claimClass: ClaimClass,
): claimClass is Extract<ClaimClass, { kind: 'tandem' }> & { migratable: true } {
  return claimClass.kind === 'tandem' && claimClass.migratable;
}
