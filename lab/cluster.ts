/**
 * A Kubernetes cluster of real nodes on this machine: simulated network, a control plane with
 * kube-controller-manager and kube-scheduler, and per node containerd + kubelet + kube-proxy
 * (real-node.ts), with every image this project needs built here and imported into every node.
 * Tandem is installed on it separately (install.ts), the way a user installs it.
 */
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { type RunResult, run } from '../lib/exec.js';
import { loadKubeConfig } from '../lib/kube/client.js';
import { type Logger, silentLogger } from '../lib/log.js';
import { waitFor } from '../lib/readiness.js';
import { clusterAddresses } from './addresses.js';
import { type ControlPlane, startControlPlane } from './control-plane.js';
import { ensureImages, importImage, type LabImages } from './images.js';
import { SimulatedNetwork } from './netns.js';
import { RealNode } from './real-node.js';
import { holdSysctls, releaseSysctls } from './sysctls.js';
import { toolPath } from './tools.js';

export interface ClusterOptions {
  nodes: number;
  /** State of the control plane and the nodes; must not lie under /var/lib, /var/log or /run. */
  dir: string;
  logger?: Logger;
}

export interface Cluster {
  network: SimulatedNetwork;
  controlPlane: ControlPlane;
  nodes: RealNode[];
  kubeconfigPath: string;
  images: LabImages;
  /** Milliseconds of each start-up step, for the README's figures and slow-start diagnosis. */
  timings: Record<string, number>;
  kubectl(args: readonly string[], options?: KubectlOptions): Promise<RunResult>;
  /** Stops everything; every step runs even when one fails. Returns what could not be cleaned. */
  stop(): Promise<string[]>;
}

/** The tag the lab's kustomize overlay (lab/overlay) gives Tandem's image. */
export const LAB_TANDEM_IMAGE = 'localhost/tandem:lab';
/** The VM launcher image (QEMU and the built-in guest) under one fixed tag, like Tandem's. */
export const LAB_LAUNCHER_IMAGE = 'localhost/tandem-launcher:lab';

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const logger = options.logger ?? silentLogger();
  const timings: Record<string, number> = {};
  const step = async <T>(name: string, action: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const result = await action();
    timings[name] = Date.now() - started;
    logger.info({ step: name, ms: timings[name] }, 'cluster start-up step done');
    return result;
  };
  for (const tool of [
    'kubelet',
    'kube-proxy',
    'kube-controller-manager',
    'kube-scheduler',
    'kubectl',
  ] as const)
    toolPath(tool);
  const images = await step('images', () => ensureImages(logger));

  const network = await SimulatedNetwork.create({ nodes: options.nodes, logger });
  const addresses = clusterAddresses(network.subnet, options.nodes);
  const nodes: RealNode[] = [];
  let controlPlane: ControlPlane | undefined;
  const stop = async (): Promise<string[]> => {
    const problems: string[] = [];
    for (const node of nodes) problems.push(...(await node.stop()));
    await controlPlane?.stop().catch((err: unknown) => problems.push(`control plane: ${String(err)}`));
    await network.destroy().catch((err: unknown) => problems.push(`network: ${String(err)}`));
    problems.push(...releaseSysctls().map((s) => `kernel setting not restored: ${s}`));
    return problems;
  };
  try {
    controlPlane = await step('control plane', () =>
      startControlPlane({
        dir: join(options.dir, 'control-plane'),
        bindAddress: network.hostAddress,
        serviceCidr: addresses.serviceCidr,
        withNodes: true,
        removeOnStop: false,
        logger,
      }),
    );
    const cp = controlPlane;
    await step('routes', () => addRoutes(network, addresses.podCidrs, addresses.serviceCidr));
    const cgroupRoots = network.nodes.map((n) => `/tandem-${network.id}-${n.name}`);
    network.recordCgroups(cgroupRoots);
    holdSysctls();
    await step('nodes', () =>
      Promise.all(
        network.nodes.map(async (node, i) => {
          const started = await RealNode.start({
            node,
            dir: join(options.dir, 'nodes', node.name),
            podCidr: addresses.podCidrs[i] as string,
            clusterCidr: addresses.clusterCidr,
            cgroupRoot: cgroupRoots[i] as string,
            controlPlane: cp,
            sandboxImage: images.pause.ref,
            logger,
          });
          nodes.push(started);
        }),
      ),
    );
    nodes.sort((a, b) => a.name.localeCompare(b.name));
    await step('image import', () => Promise.all(nodes.map((node) => importAll(node, images, logger))));
    await step('nodes ready', () => waitForReadyNodes(cp.kubeconfigPath, nodes.length));
  } catch (err) {
    const problems = await stop();
    if (problems.length > 0) logger.warn({ problems }, 'cleanup after a failed start');
    throw err;
  }
  const kubeconfigPath = controlPlane.kubeconfigPath;
  return {
    network,
    controlPlane,
    nodes,
    kubeconfigPath,
    images,
    timings,
    kubectl: kubectlFor(kubeconfigPath, logger),
    stop,
  };
}

export interface KubectlOptions {
  timeoutMs?: number;
  allowFailure?: boolean;
  input?: string;
}

/** The lab's kubectl against one kubeconfig (the cluster's own, or a lab another process started). */
export function kubectlFor(
  kubeconfigPath: string,
  logger?: Logger,
): (args: readonly string[], options?: KubectlOptions) => Promise<RunResult> {
  return (args, options = {}) =>
    run(toolPath('kubectl'), ['--kubeconfig', kubeconfigPath, ...args], {
      timeoutMs: options.timeoutMs ?? 60_000,
      allowFailure: options.allowFailure ?? false,
      ...(options.input === undefined ? {} : { input: options.input }),
      ...(logger === undefined ? {} : { logger }),
    });
}

/**
 * Every node (and the host) reaches each node's pods through that node's address. Host-network
 * processes of a node (the data plane) need a route to the ClusterIPs too: the kernel picks a
 * route before kube-proxy's OUTPUT rule rewrites the address, and without one the connect fails
 * with ENETUNREACH. Any next hop does; the host's bridge address is the one every node has.
 */
async function addRoutes(
  network: SimulatedNetwork,
  podCidrs: readonly string[],
  serviceCidr: string,
): Promise<void> {
  for (const node of network.nodes)
    await run('ip', ['-n', node.netns, 'route', 'replace', serviceCidr, 'via', network.hostAddress], {
      timeoutMs: 10_000,
    });
  for (const [i, target] of network.nodes.entries()) {
    const cidr = podCidrs[i] as string;
    await run('ip', ['route', 'replace', cidr, 'via', target.address], { timeoutMs: 10_000 });
    for (const node of network.nodes) {
      if (node === target) continue;
      await run('ip', ['-n', node.netns, 'route', 'replace', cidr, 'via', target.address], {
        timeoutMs: 10_000,
      });
    }
  }
}

async function importAll(node: RealNode, images: LabImages, logger: Logger): Promise<void> {
  for (const image of [images.pause, images.tandem, images.launcher, ...images.sidecars])
    await importImage(node.containerdSocket, image.archive, { logger });
  // The overlay names one fixed tag, so the manifests need no edit when the image changes.
  await node.ctr(['images', 'tag', '--force', images.tandem.ref, LAB_TANDEM_IMAGE]);
  await node.ctr(['images', 'tag', '--force', images.launcher.ref, LAB_LAUNCHER_IMAGE]);
}

async function waitForReadyNodes(kubeconfigPath: string, count: number): Promise<void> {
  const core = loadKubeConfig(kubeconfigPath).makeApiClient(CoreV1Api);
  await waitFor(
    `${count} nodes Ready`,
    async () => {
      const list = await core.listNode();
      const ready = list.items.filter((node) =>
        node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
      return ready.length === count;
    },
    120_000,
  );
}
