/** Tandem's Volume behind a claim, as a user finds it: claim → PersistentVolume → CSI volume handle. */
import type { Cluster } from './cluster.js';

export async function volumeOfClaim(
  cluster: Pick<Cluster, 'kubectl'>,
  namespace: string,
  claim: string,
): Promise<string> {
  const pv = (
    await cluster.kubectl(['-n', namespace, 'get', 'pvc', claim, '-o', 'jsonpath={.spec.volumeName}'])
  ).stdout.trim();
  if (pv === '') throw new Error(`claim ${namespace}/${claim} is not bound`);
  return (await cluster.kubectl(['get', 'pv', pv, '-o', 'jsonpath={.spec.csi.volumeHandle}'])).stdout.trim();
}
