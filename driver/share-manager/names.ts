/**
 * Names of what belongs to one volume's share manager, derived from the volume id alone so the
 * controller and every share manager of the volume agree: the Pod, the Service (and its
 * EndpointSlice) and the heartbeat Lease are all `share-manager-<volume>` in Tandem's namespace.
 * Service names are DNS-1035 labels (at most 63 characters, lower case, starting with a letter);
 * a volume id that does not fit is replaced by a hash of it.
 */
import { createHash } from 'node:crypto';

const PREFIX = 'share-manager-';
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export function shareManagerName(volumeId: string): string {
  const plain = `${PREFIX}${volumeId}`;
  if (plain.length <= 63 && DNS_1035_LABEL.test(plain)) return plain;
  return `${PREFIX}${createHash('sha256').update(volumeId).digest('hex').slice(0, 40)}`;
}

/** Labels on everything of a share manager: which volume, and who manages it. */
export const SHARE_MANAGER_VOLUME_LABEL = 'tandem.dev/share-manager-volume';
export const SHARE_MANAGER_COMPONENT = 'share-manager';
/** EndpointSlices Tandem writes itself, so the EndpointSlice controller leaves them alone. */
export const ENDPOINT_SLICE_MANAGER = 'share-manager.tandem.dev';
