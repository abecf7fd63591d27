/**
 * The CSI driver in the lab: `tandem controller`, `tandem migrator` and one `tandem node` plugin per simulated node,
 * on the host (mounts must be visible from the host: `ip netns exec` gives a process its own mount
 * namespace), next to the data planes that run with --reconcile inside the nodes. A demo volume
 * is provisioned, published and mounted through the CSI calls a CO would make, and torn down the
 * same way when the lab stops, so no mount, loop device or nbdfuse process is left behind.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SimulatedNetwork, SimulatedNode } from '../../lab/netns.js';
import { type Logger, silentLogger } from '../../lib/log.js';
import { packageRoot } from '../../lib/paths.js';
import { freePort } from '../../lib/ports.js';
import { canConnect, waitFor } from '../../lib/readiness.js';
import { Service } from '../../lib/service.js';
import { tandemEntry } from './cli-process.js';
import { CsiClient, capability, retrying } from './csi-client.js';
import type { SimDataPlane } from './sim-dataplane.js';

export const DEMO_FS_VOLUME = 'demo-fs';
const DEMO_FS_BYTES = 256 * 1024 * 1024;

export interface LabCsi {
  controllerSocket: string;
  nodeSocket(node: SimulatedNode): string;
  demo: { volumeId: string; node: SimulatedNode; mountPath: string };
  stop(): Promise<void>;
}

export async function startLabCsi(options: {
  network: SimulatedNetwork;
  dataPlane: SimDataPlane;
  kubeconfigPath: string;
  namespace: string;
  dir: string;
  logger?: Logger;
}): Promise<LabCsi> {
  const { network, dataPlane, dir } = options;
  const logger = options.logger ?? silentLogger();
  await mkdir(dir, { recursive: true });
  const services: Service[] = [];
  /** Starts a component; ready once it serves CSI on `socket`, or (none) its metrics port. */
  const start = async (name: string, args: string[], socket: string | undefined) => {
    const metricsPort = await freePort();
    const service = new Service({
      name,
      command: process.execPath,
      args: [...tandemEntry(), ...args, '--metrics-address', `127.0.0.1:${metricsPort}`],
      env: { ...process.env, KUBECONFIG: options.kubeconfigPath },
      cwd: packageRoot(),
      logFile: join(dir, `${name}.log`),
      logger,
    });
    services.push(service);
    await waitFor(
      socket === undefined ? `${name} serving metrics` : `${name} serving CSI on ${socket}`,
      () => canConnect(socket === undefined ? { host: '127.0.0.1', port: metricsPort } : { path: socket }),
      30_000,
      () => service.running,
    );
  };
  const controllerSocket = join(dir, 'controller.sock');
  const nodeSocket = (node: SimulatedNode) => join(dir, `${node.name}.sock`);
  const stopAll = async () => {
    for (const service of services.reverse()) await service.stop();
  };

  const first = network.nodes[0];
  if (first === undefined) throw new Error('the lab has no nodes');
  const demoDir = join(dir, DEMO_FS_VOLUME);
  const staging = join(demoDir, 'staging');
  const mountPath = join(demoDir, 'mount');
  const controller = new CsiClient(controllerSocket);
  const node = new CsiClient(nodeSocket(first));
  let volumeId = '';
  let staged = false;
  let published = false;
  const teardown = async () => {
    if (published)
      await retrying(() =>
        node.call('Node', 'NodeUnpublishVolume', { volume_id: volumeId, target_path: mountPath }),
      );
    if (staged)
      await retrying(() =>
        node.call('Node', 'NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging }),
      );
    controller.close();
    node.close();
    await stopAll();
  };
  try {
    await start(
      'controller',
      ['controller', '--csi-endpoint', controllerSocket, '--namespace', options.namespace],
      controllerSocket,
    );
    // The migrator decides every live migration of a migratable volume (migrator/).
    await start('migrator', ['migrator', '--namespace', options.namespace], undefined);
    for (const n of network.nodes) {
      await start(
        `${n.name}-node-plugin`,
        [
          'node',
          '--node-id',
          n.name,
          '--csi-endpoint',
          nodeSocket(n),
          '--engine-socket-dir',
          dataPlane.engineSocketDir(n),
          '--state-dir',
          join(dir, 'node-state', n.name),
        ],
        nodeSocket(n),
      );
    }

    const mount = capability('mount');
    const replicas = String(Math.min(3, network.nodes.length));
    const created = await retrying<{ volume: { volume_id: string; volume_context: Record<string, string> } }>(
      () =>
        controller.call('Controller', 'CreateVolume', {
          name: DEMO_FS_VOLUME,
          capacity_range: { required_bytes: String(DEMO_FS_BYTES) },
          volume_capabilities: [mount],
          parameters: { numberOfReplicas: replicas },
        }),
    );
    volumeId = created.volume.volume_id;
    const publishedTo = await retrying<{ publish_context: Record<string, string> }>(() =>
      controller.call('Controller', 'ControllerPublishVolume', {
        volume_id: volumeId,
        node_id: first.name,
        volume_capability: mount,
      }),
    );
    const common = {
      volume_id: volumeId,
      publish_context: publishedTo.publish_context,
      volume_context: created.volume.volume_context,
      volume_capability: mount,
    };
    await mkdir(staging, { recursive: true });
    staged = true;
    await retrying(() => node.call('Node', 'NodeStageVolume', { ...common, staging_target_path: staging }));
    published = true;
    await retrying(() =>
      node.call('Node', 'NodePublishVolume', {
        ...common,
        staging_target_path: staging,
        target_path: mountPath,
      }),
    );
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
  return {
    controllerSocket,
    nodeSocket,
    demo: { volumeId, node: first, mountPath },
    stop: teardown,
  };
}
