/**
 * The local lab, the quick start's main job (`make lab`): a real control plane, real nodes
 * (kubelet, containerd, kube-proxy each), Tandem installed with `kubectl apply -k` from its own
 * manifests and image, and a demo using Tandem's volumes from pods.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, silentLogger } from '../lib/log.js';
import { packageRoot } from '../lib/paths.js';
import { isProcessAlive } from '../lib/pid.js';
import { type Cluster, startCluster } from './cluster.js';
import { type Demo, startDemo, stopDemo } from './demo.js';
import { installTandem, TANDEM_NAMESPACE } from './install.js';
import { toolPath } from './tools.js';

export interface LabOptions {
  nodes: number;
  /** The lab's state (certificates, etcd, node folders, logs); emptied at start, removed at stop. */
  stateDir: string;
  /** Run the demo workloads (default true). */
  demo?: boolean;
  logger?: Logger;
}

export interface Lab {
  cluster: Cluster;
  installMs: number;
  demo: Demo | undefined;
  kubeconfigPath: string;
  /**
   * Stops everything, step by step: each step has a bound, and a step that fails is reported and
   * the rest still runs. Returns the problems (empty when the machine is as it was).
   */
  stop(): Promise<string[]>;
  /** The last resort (a second Ctrl-C): kills every process of the lab at once, synchronously. */
  forceStop(): void;
}

export async function startLab(options: LabOptions): Promise<Lab> {
  const logger = options.logger ?? silentLogger();
  await claimStateDir(options.stateDir);
  const cluster = await startCluster({ nodes: options.nodes, dir: options.stateDir, logger });
  let demo: Demo | undefined;
  let installMs = 0;
  const stop = async (): Promise<string[]> => {
    const problems: string[] = [];
    // Workloads first, through the API, so the kubelet unmounts and Tandem unstages their volumes.
    if (demo) await stopDemo(cluster).catch((err: unknown) => problems.push(`demo: ${String(err)}`));
    problems.push(...(await cluster.stop()));
    await rm(options.stateDir, { recursive: true, force: true }).catch((err: unknown) =>
      problems.push(`state folder: ${String(err)}`),
    );
    return problems;
  };
  try {
    installMs = (await installTandem(cluster)).ms;
    if (options.demo ?? true) demo = await startDemo(cluster);
  } catch (err) {
    const problems = await stop();
    if (problems.length > 0) logger.warn({ problems }, 'cleanup after a failed lab start');
    throw err;
  }
  return {
    cluster,
    installMs,
    demo,
    kubeconfigPath: cluster.kubeconfigPath,
    stop,
    forceStop: () => cluster.network.destroySync(),
  };
}

/** One lab per state folder: refuse when the pid recorded there is alive, else start clean. */
async function claimStateDir(dir: string): Promise<void> {
  const pidFile = join(dir, 'lab.pid');
  const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
  if (pid > 0 && pid !== process.pid && isProcessAlive(pid)) {
    throw new Error(`a lab is already running from ${dir} (pid ${pid}); stop it or pick another --state-dir`);
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(pidFile, String(process.pid));
}

/** What the lab prints once it is up: how to reach everything. */
export function describeLab(lab: Lab): string {
  const kubectl = toolPath('kubectl');
  const { cluster } = lab;
  const seconds = (ms: number | undefined) => `${((ms ?? 0) / 1000).toFixed(1)} s`;
  const nodes = cluster.nodes
    .map(
      (n) =>
        `    ${n.name.padEnd(8)} ${n.node.address.padEnd(15)} logs ${n.paths.logs}\n` +
        `             enter: nsenter --net=/run/netns/${n.node.netns} --mount=/proc/${n.holderPid}/ns/mnt bash`,
    )
    .join('\n');
  const demoPods = (lab.demo?.pods ?? [])
    .map(
      (p) =>
        `  ${kubectl} -n ${lab.demo?.namespace} exec -it ${p.name} -- bash     # ${p.what}, on ${p.node}`,
    )
    .join('\n');
  return [
    'Tandem lab is up.',
    `  control plane  ${cluster.controlPlane.server}  (etcd, kube-apiserver, kube-controller-manager, kube-scheduler; logs ${cluster.controlPlane.logDir})`,
    `  real nodes     containerd + kubelet + kube-proxy each, in their own network and mount namespaces (${seconds(cluster.timings.nodes)} to start):`,
    nodes,
    `  Tandem         installed with: ${kubectl} apply -k ${join(packageRoot(), 'lab', 'overlay')}  (${seconds(lab.installMs)} to roll out)`,
    '',
    'Reach it with kubectl:',
    `  export KUBECONFIG=${lab.kubeconfigPath}`,
    `  ${kubectl} get nodes -o wide`,
    `  ${kubectl} -n ${TANDEM_NAMESPACE} get pods -o wide`,
    `  ${kubectl} get pvc -A; ${kubectl} get volumes.tandem.dev -o wide`,
    '',
    ...(lab.demo
      ? [
          `The demo (namespace ${lab.demo.namespace}); exec into its pods:`,
          demoPods,
          `  ${kubectl} -n ${lab.demo.namespace} exec deploy/demo-app -- cat /data/hello.txt`,
          `Move the Deployment to another node (its files follow): ${kubectl} drain <its node> --ignore-daemonsets; then ${kubectl} uncordon <node>`,
          '',
        ]
      : []),
    'See the webhook refuse a mistake (a ReadWriteMany Block claim needs a migratable class):',
    `  ${kubectl} create -f ${join(packageRoot(), 'manifests', 'examples', 'lab-rejected-claim.yaml')}`,
    '',
    ...(lab.demo ? vmLines(lab, kubectl) : []),
  ].join('\n');
}

/** How to watch the demo VM and move it. */
function vmLines(lab: Lab, kubectl: string): string[] {
  const demo = lab.demo;
  if (!demo) return [];
  const { vm } = demo;
  const others = lab.cluster.nodes.map((n) => n.name).filter((n) => n !== vm.node);
  const tandem = `node ${join(packageRoot(), 'dist', 'cli', 'main.js')}`;
  return [
    '',
    `A VM (QEMU, the built-in guest writing and verifying its disk) runs on ${vm.node}, on the migratable claim demo-vm-disk:`,
    `  ${kubectl} -n ${vm.namespace} logs -f ${vm.pod}       # the guest's console: progress and verify lines`,
    `  ${kubectl} get volumes.tandem.dev -w                         # engines, epoch, migration records`,
    `  ${kubectl} -n ${vm.namespace} get vmi,vmim,pods -o wide`,
    `  ${kubectl} -n ${TANDEM_NAMESPACE} get pods -l app.kubernetes.io/component=migrator -o wide   # then: curl http://<pod IP>:9505/metrics | grep tandem_migration`,
    `Live-migrate it to ${others[0] ?? 'another node'} and back (prints QEMU's downtime and what the migrator decided):`,
    `  ${tandem} lab-migrate --kubeconfig ${lab.kubeconfigPath} --namespace ${vm.namespace} --vm ${vm.vm}${others[0] ? ` --to ${others[0]}` : ''} --and-back`,
  ];
}
