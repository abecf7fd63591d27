import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../lib/paths.js';

export type ToolName =
  | 'etcd'
  | 'kube-apiserver'
  | 'kubectl'
  | 'csi-sanity'
  | 'csi-provisioner'
  | 'csi-attacher'
  | 'csi-resizer'
  | 'promtool'
  | 'kubelet'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kube-proxy';

/** Where test/tools/build.sh links the Go-built tools (override: TANDEM_BIN_DIR). */
export function toolsBinDir(): string {
  return process.env.TANDEM_BIN_DIR ?? join(packageRoot(), '.cache', 'bin');
}

/** Path of a Go-built tool; throws with the command that builds it when missing. */
export function toolPath(name: ToolName): string {
  const path = join(toolsBinDir(), name);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${name} is not built: run test/tools/build.sh ${name} (or make setup)`);
  }
  return path;
}
