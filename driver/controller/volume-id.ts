/**
 * CSI names a volume (CreateVolumeRequest.name, e.g. external-provisioner's `pvc-<uid>`); Tandem
 * names its Volume resource, replica directories and Secret after the volume id. A name that is
 * already a usable id is kept, so `kubectl get volumes` shows the PV's name; any other name (upper
 * case, too long: csi-sanity's are) maps to a hash of it. The original name is recorded on the
 * Volume, so a hash collision is caught instead of handing out someone else's volume.
 */
import { createHash } from 'node:crypto';
import type { Volume } from '../../lib/api/volume.js';
import { isVolumeName } from '../replica/metadata.js';

export const CSI_NAME_ANNOTATION = 'tandem.dev/csi-name';
/** CSI asks that ids fit in 128 bytes; the credential Secret's name adds 14 characters to it. */
const MAX_ID = 128;

export function volumeIdFor(name: string): string {
  if (name.length <= MAX_ID && isVolumeName(name)) return name;
  return `csi-${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
}

/** The CSI name a Volume was created for (its own name for Volumes made by other means). */
export function csiNameOf(volume: Volume): string {
  return volume.metadata.annotations?.[CSI_NAME_ANNOTATION] ?? volume.metadata.name;
}
