import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { type ControlPlane, startControlPlane } from '../../lab/control-plane.js';
import { SimulatedNetwork, type SimulatedNode } from '../../lab/netns.js';
import { toolPath } from '../../lab/tools.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { installCrds } from '../../lib/kube/manifests.js';
import { type Logger, silentLogger } from '../../lib/log.js';
import { manifestsDir, packageRoot } from '../../lib/paths.js';
import { isProcessAlive } from '../../lib/pid.js';
import { freePort } from '../../lib/ports.js';
import { type RunningWebhook, runWebhook } from '../../webhook/run.js';
import { tandemEntry } from './cli-process.js';
import { type LabCsi, startLabCsi } from './lab-csi.js';
import { type EngineProcess, SimDataPlane } from './sim-dataplane.js';
import { registerWebhookConfigurations } from './webhook-registration.js';

export interface LabOptions {
  nodes: number;
  /** Holds the control plane's state and the lab's pid file; emptied at start, removed at stop. */
  stateDir: string;
  logger?: Logger;
}

export interface Lab {
  controlPlane: ControlPlane;
  network: SimulatedNetwork;
  kubeconfigPath: string;
  webhook: RunningWebhook;
  /** Replica servers on every replica node and a demo volume with its engine on node-1. */
  dataPlane: SimDataPlane;
  demoEngine: EngineProcess;
  /** The CSI controller and node plugins, and a demo volume mounted through them. */
  csi: LabCsi;
  stop(): Promise<void>;
}

const DEMO_VOLUME_BYTES = 256 * 1024 * 1024;
const LAB_NAMESPACE = 'tandem-system';

/** Topology label the driver reports for every node (its node id). */
export const TOPOLOGY_NODE_LABEL = 'topology.csi.tandem.dev/node';

/**
 * The local lab: simulated nodes, then a real etcd + kube-apiserver listening
 * on the bridge address (so processes inside the nodes reach it as they would
 * a cluster's apiserver), Tandem's CRDs, and a Node object per simulated node.
 */
export async function startLab(options: LabOptions): Promise<Lab> {
  const logger = options.logger ?? silentLogger();
  // Fail before creating anything when a tool is missing (kubectl is named in the banner).
  for (const tool of ['etcd', 'kube-apiserver', 'kubectl'] as const) toolPath(tool);
  await claimStateDir(options.stateDir);

  const network = await SimulatedNetwork.create({ nodes: options.nodes, logger });
  let controlPlane: ControlPlane | undefined;
  let webhook: RunningWebhook | undefined;
  let dataPlane: SimDataPlane | undefined;
  let demoEngine: EngineProcess | undefined;
  let csi: LabCsi | undefined;
  try {
    controlPlane = await startControlPlane({
      dir: join(options.stateDir, 'control-plane'),
      bindAddress: network.hostAddress,
      logger,
      removeOnStop: false,
    });
    const kc = loadKubeConfig(controlPlane.kubeconfigPath);
    await installCrds(kc, join(manifestsDir(), 'crds'));
    await registerNodes(kc, network);
    webhook = await startLabWebhook(kc, network.hostAddress, logger);
    dataPlane = await SimDataPlane.attach({
      network,
      kubeconfigPath: controlPlane.kubeconfigPath,
      dir: join(options.stateDir, 'dataplane'),
      options: {
        nodes: options.nodes,
        replicas: Math.min(3, options.nodes),
        sizeBytes: DEMO_VOLUME_BYTES,
        volume: 'demo-disk',
        reconcileNamespace: LAB_NAMESPACE,
      },
    });
    demoEngine = await dataPlane.startEngine(network.nodes[0] as SimulatedNode);
    csi = await startLabCsi({
      network,
      dataPlane,
      kubeconfigPath: controlPlane.kubeconfigPath,
      namespace: LAB_NAMESPACE,
      dir: join(options.stateDir, 'csi'),
      logger,
    });
  } catch (err) {
    await csi?.stop().catch(() => undefined);
    await webhook?.stop();
    await controlPlane?.stop();
    await network.destroy();
    await rm(options.stateDir, { recursive: true, force: true });
    throw err;
  }

  const started = controlPlane;
  const admission = webhook;
  const driver = csi;
  return {
    controlPlane: started,
    network,
    kubeconfigPath: started.kubeconfigPath,
    webhook: admission,
    dataPlane,
    demoEngine,
    csi: driver,
    stop: async () => {
      // The demo volume is unmounted and detached through the driver before anything stops.
      await driver.stop();
      await admission.stop();
      await started.stop();
      await network.destroy();
      await rm(options.stateDir, { recursive: true, force: true });
    },
  };
}

/**
 * The admission webhook, in the lab process, registered with the real
 * configurations from manifests/webhook/ pointed at the bridge address.
 */
async function startLabWebhook(kc: KubeConfig, address: string, logger: Logger): Promise<RunningWebhook> {
  const port = await freePort(address);
  const registration = await registerWebhookConfigurations(kc, `https://${address}:${port}`, 'lab');
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: LAB_NAMESPACE } } });
  return runWebhook({
    kc,
    host: address,
    port,
    namespace: LAB_NAMESPACE,
    serviceName: 'tandem-webhook',
    secretName: 'tandem-webhook-tls',
    validatingConfiguration: registration.names.validating,
    mutatingConfiguration: registration.names.mutating,
    ipAddresses: [address],
    logger,
  });
}

/** Node objects so that `kubectl get nodes` lists the simulated nodes with their addresses. */
async function registerNodes(kc: KubeConfig, network: SimulatedNetwork): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  for (const node of network.nodes) {
    const created = await core.createNode({
      body: {
        metadata: {
          name: node.name,
          labels: {
            'kubernetes.io/hostname': node.name,
            'kubernetes.io/os': 'linux',
            [TOPOLOGY_NODE_LABEL]: node.name,
            'tandem.dev/simulated': 'true',
          },
          annotations: { 'tandem.dev/netns': node.netns },
        },
      },
    });
    await core.replaceNodeStatus({
      name: node.name,
      body: {
        ...created,
        status: {
          addresses: [
            { type: 'InternalIP', address: node.address },
            { type: 'Hostname', address: node.name },
          ],
        },
      },
    });
  }
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
  const nodes = lab.network.nodes
    .map((n) => `    ${n.name.padEnd(8)} ${n.address.padEnd(15)} ip netns exec ${n.netns} <command>`)
    .join('\n');
  return [
    'Tandem lab is up.',
    `  control plane  ${lab.controlPlane.server}  (real etcd + kube-apiserver, ready in ${lab.controlPlane.startupMs} ms)`,
    `  logs           ${lab.controlPlane.logDir}`,
    `  webhook        https://${lab.network.hostAddress}:${lab.webhook.port}  (admission: claims, classes, pods, VMs)`,
    '  simulated nodes (network namespaces on one bridge):',
    nodes,
    '',
    'Reach it with kubectl:',
    `  export KUBECONFIG=${lab.kubeconfigPath}`,
    `  ${kubectl} get nodes -o wide`,
    `  ${kubectl} get volumes.tandem.dev`,
    '',
    'See the webhook refuse a mistake (a ReadWriteMany Block claim needs a migratable class):',
    `  ${kubectl} create -f ${join(packageRoot(), 'manifests', 'examples', 'lab-rejected-claim.yaml')}`,
    '',
    `The data plane: replica servers on ${lab.dataPlane.replicaNodes.map((n) => n.name).join(', ')}, volume demo-disk (256 MiB), its engine on ${lab.demoEngine.node.name}:`,
    `  nbdinfo '${lab.demoEngine.uri}'`,
    `  fio --name=demo --ioengine=nbd --uri='${lab.demoEngine.uri}' --rw=randwrite --bs=4k --iodepth=16 --size=64M --verify=crc32c --verify_state_save=0`,
    `  curl -s http://${lab.demoEngine.adminAddress}/metrics | grep tandem_engine_replica_state`,
    `  ${kubectl} get volumes.tandem.dev demo-disk -o yaml`,
    `Cut a replica's node off (writes go on, the replica is fenced, then rebuilt when it returns):`,
    `  ip link set ${lab.network.nodes[1]?.hostVeth ?? ''} down; sleep 10; ip link set ${lab.network.nodes[1]?.hostVeth ?? ''} up`,
    lab.network.nodes.length > 1
      ? 'Attach a second engine, as a live migration does (two primaries on the same replicas):'
      : '',
    lab.network.nodes.length > 1
      ? `  ip netns exec ${lab.network.nodes[1]?.netns} ${process.execPath} ${tandemEntry().join(' ')} engine --join --node-id ${lab.network.nodes[1]?.name} --volume demo-disk --credential-file ${lab.dataPlane.credentialFile} --kubeconfig ${lab.kubeconfigPath} --nbd-socket ${join(lab.dataPlane.dir, 'second.sock')} --metrics-address ${lab.network.nodes[1]?.address}:9520`
      : '',
    '',
    `The CSI driver: tandem controller (${lab.csi.controllerSocket}), tandem migrator and a node plugin per node; data planes reconcile from the Volumes.`,
    `Volume ${lab.csi.demo.volumeId} was created, published to ${lab.csi.demo.node.name}, staged (ext4) and mounted through it at:`,
    `  ${lab.csi.demo.mountPath}`,
    `  echo hello > ${lab.csi.demo.mountPath}/hello.txt; sync; ${kubectl} get volumes.tandem.dev ${lab.csi.demo.volumeId}`,
    '',
    'The migrator decides every live migration of a migratable volume (docs/migrator.md); it keeps each',
    `Volume's State and Node true: ${kubectl} get volumes.tandem.dev -o wide. A demo VM live-migrating`,
    'arrives with the VM live-migration issue.',
  ].join('\n');
}
