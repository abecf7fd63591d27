import type { CoreV1Api } from '@kubernetes/client-node';
import { CSI_DRIVER_NAME } from '../../lib/api/volume.js';

/**
 * The PersistentVolume csi-provisioner would have made for a migratable (ReadWriteMany Block)
 * Tandem volume, already bound to `namespace/claim`, so the driver's pod-identity check finds the
 * pods using the volume. Retained: the tests delete the Volume themselves.
 */
export async function createBoundBlockPv(
  core: CoreV1Api,
  volumeId: string,
  claim: { namespace: string; name: string },
  storage: string,
): Promise<void> {
  await core.createPersistentVolume({
    body: {
      metadata: { name: volumeId },
      spec: {
        capacity: { storage },
        accessModes: ['ReadWriteMany'],
        volumeMode: 'Block',
        persistentVolumeReclaimPolicy: 'Retain',
        claimRef: claim,
        csi: { driver: CSI_DRIVER_NAME, volumeHandle: volumeId },
      },
    },
  });
}
