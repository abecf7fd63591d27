import { KubeConfig } from '@kubernetes/client-node';

/**
 * Loads the cluster configuration: an explicit kubeconfig path wins, then
 * $KUBECONFIG / ~/.kube/config, then the in-cluster service account.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) {
    throw new Error(
      path
        ? `kubeconfig ${path} names no current cluster`
        : 'no cluster configured: pass --kubeconfig, set KUBECONFIG, or run inside a pod',
    );
  }
  return kc;
}
