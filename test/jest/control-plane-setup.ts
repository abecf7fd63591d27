import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ControlPlane, startControlPlane } from '../../lab/control-plane.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { installCrds } from '../../lib/kube/manifests.js';
import { manifestsDir } from '../../lib/paths.js';
import { TEST_KUBECONFIG_ENV } from '../harness/cluster.js';

declare global {
  var tandemControlPlane: ControlPlane | undefined;
}

/**
 * One real etcd + kube-apiserver for the whole integration run, with Tandem's
 * CRDs installed. Workers start after this and inherit the kubeconfig path
 * through the environment.
 */
export default async function globalSetup(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-cp-'));
  const controlPlane = await startControlPlane({ dir });
  globalThis.tandemControlPlane = controlPlane;
  await installCrds(loadKubeConfig(controlPlane.kubeconfigPath), join(manifestsDir(), 'crds'));
  process.env[TEST_KUBECONFIG_ENV] = controlPlane.kubeconfigPath;
  process.stderr.write(`\ncontrol plane ready in ${controlPlane.startupMs} ms at ${controlPlane.server}\n`);
}
