/**
 * The control plane a CsiStack benchmark (csi, migration, nfs) runs against: a real
 * kube-apiserver with Tandem's CRDs, and the variable the stack reads its kubeconfig from pointing
 * at it until the cleanup runs (then restored to what it was).
 */
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane } from '../lab/control-plane.js';
import { loadKubeConfig } from '../lib/kube/client.js';
import { installCrds } from '../lib/kube/manifests.js';
import { manifestsDir } from '../lib/paths.js';
import { TEST_KUBECONFIG_ENV } from '../test/harness/cluster.js';
import type { Cleanup } from './dataplane-setup.js';

export async function startStackControlPlane(
  dir: string,
  cleanup: Cleanup,
  removeOnStop = true,
): Promise<KubeConfig> {
  const previous = process.env[TEST_KUBECONFIG_ENV];
  const controlPlane = await startControlPlane({ dir, removeOnStop });
  cleanup.add('control plane', () => controlPlane.stop());
  const kc = loadKubeConfig(controlPlane.kubeconfigPath);
  await installCrds(kc, join(manifestsDir(), 'crds'));
  process.env[TEST_KUBECONFIG_ENV] = controlPlane.kubeconfigPath;
  cleanup.add('kubeconfig variable', async () => {
    if (previous === undefined) delete process.env[TEST_KUBECONFIG_ENV];
    else process.env[TEST_KUBECONFIG_ENV] = previous;
  });
  return kc;
}
