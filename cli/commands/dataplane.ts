import { mkdir } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { Registry } from 'prom-client';
import { DEFAULT_ENGINE_SOCKET_DIR } from '../../driver/csi/node-topology.js';
import { type NodeAgent, startNodeAgent } from '../../driver/dataplane/node-agent.js';
import { EnginePool, parseEngineSpec } from '../../driver/engine/engine-pool.js';
import { KubeMembershipStore } from '../../driver/engine/kube-membership.js';
import { EngineMetrics } from '../../driver/engine/metrics.js';
import { ReplicaServerMetrics } from '../../driver/replica/metrics.js';
import { ReplicaServer } from '../../driver/replica/server.js';
import { durationIn, parseHostPort } from '../../lib/config.js';
import { AdminInputError, serveAdmin } from '../../lib/http-admin.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { createLogger } from '../../lib/log.js';
import { createRegistry } from '../../lib/metrics.js';
import { untilStopSignal } from '../../lib/signals.js';
import {
  kubeconfigOption,
  logLevelOption,
  metricsAddressOption,
  namespaceOption,
  nodeIdOption,
} from '../options.js';

export function dataplaneCommand() {
  return new Command('dataplane')
    .description(
      "data plane of one node: the replica server for this node's replicas, and the engines of the volumes used here",
    )
    .addOption(nodeIdOption())
    .addOption(
      new Option('--listen <host:port>', 'replica server address')
        .argParser(parseHostPort)
        .default(parseHostPort('0.0.0.0:9500'), '0.0.0.0:9500')
        .env('TANDEM_DATAPLANE_LISTEN'),
    )
    .addOption(
      new Option('--data-dir <path>', 'where replica files live')
        .default('/var/lib/tandem')
        .env('TANDEM_DATA_DIR'),
    )
    .addOption(metricsAddressOption('0.0.0.0:9503'))
    .addOption(
      new Option(
        '--admin-address <host:port>',
        'where engines are started and stopped (POST /engines, /engines/stop)',
      )
        .argParser(parseHostPort)
        .default(parseHostPort('127.0.0.1:9505'), '127.0.0.1:9505')
        .env('TANDEM_DATAPLANE_ADMIN'),
    )
    .addOption(kubeconfigOption())
    .addOption(
      new Option(
        '--reconcile',
        'run the replicas and engines the Volume resources ask of this node, and register the node (the DaemonSet mode)',
      ).env('TANDEM_DATAPLANE_RECONCILE'),
    )
    .addOption(
      new Option(
        '--advertise-address <host:port>',
        "the replica server's address as other nodes reach it (default: --listen, which must then not be 0.0.0.0)",
      )
        .argParser(parseHostPort)
        .env('TANDEM_ADVERTISE_ADDRESS'),
    )
    .addOption(
      new Option('--engine-socket-dir <path>', "where engines' NBD sockets go (shared with the node plugin)")
        .default(DEFAULT_ENGINE_SOCKET_DIR)
        .env('TANDEM_ENGINE_SOCKET_DIR'),
    )
    .addOption(namespaceOption('credential Secrets and node Leases'))
    .addOption(
      new Option(
        '--node-lease-duration <duration>',
        "how long the node's registration Lease stays valid without a renewal (whole seconds; renewed every quarter of it); past it the controller treats the node as lost",
      )
        .argParser(nodeLeaseDuration)
        .default(40_000, '40s')
        .env('TANDEM_NODE_LEASE_DURATION'),
    )
    .addOption(logLevelOption())
    .action(async (options) => {
      const log = createLogger('dataplane', options.logLevel).child({ node: options.nodeId });
      const serverMetrics = new ReplicaServerMetrics();
      const engineMetrics = new EngineMetrics(createRegistry('engine', false));
      const server = new ReplicaServer({ dataDir: options.dataDir, log, metrics: serverMetrics });
      const port = await server.listen(options.listen.host, options.listen.port);
      const metrics = Registry.merge([serverMetrics.registry, engineMetrics.registry]);
      const metricsServer = await serveAdmin(
        metrics,
        options.metricsAddress.host,
        options.metricsAddress.port,
      );
      // Engines need the Volume resources; loaded on first use so a replica-only node needs no kubeconfig.
      let volumes: VolumeClient | undefined;
      const pool = new EnginePool({
        node: options.nodeId,
        registry: server.registry,
        metrics: engineMetrics,
        storeFor: (volume) => {
          volumes ??= new VolumeClient(loadKubeConfig(options.kubeconfig));
          return new KubeMembershipStore(volumes, volume);
        },
        log,
      });
      const admin = await serveAdmin(metrics, options.adminAddress.host, options.adminAddress.port, {
        '/engines': (body) => pool.start(parseEngineSpec(body)),
        '/engines/stop': async (body) => {
          const volume = (body as { volume?: unknown } | undefined)?.volume;
          if (typeof volume !== 'string') throw new AdminInputError('send {"volume": "<name>"}');
          return pool.stop(volume);
        },
        '/engines/list': () => pool.list(),
      });
      let agent: NodeAgent | undefined;
      if (options.reconcile) {
        const advertise = options.advertiseAddress ?? { host: options.listen.host, port };
        if (advertise.host === '0.0.0.0' || advertise.host === '::')
          throw new InvalidArgumentError(
            '--reconcile needs --advertise-address (or TANDEM_ADVERTISE_ADDRESS): --listen is a wildcard address, which other nodes cannot reach',
          );
        await mkdir(options.engineSocketDir, { recursive: true, mode: 0o750 });
        agent = await startNodeAgent({
          kc: loadKubeConfig(options.kubeconfig),
          node: options.nodeId,
          namespace: options.namespace,
          dataDir: options.dataDir,
          engineSocketDir: options.engineSocketDir,
          advertiseAddress: `${advertise.host}:${advertise.port}`,
          pool,
          replicas: server.registry,
          log,
          leaseDurationSeconds: options.nodeLeaseDuration / 1000,
          renewIntervalMs: options.nodeLeaseDuration / 4,
        });
      }
      log.info(
        {
          reconcile: agent !== undefined,
          host: options.listen.host,
          port,
          dataDir: options.dataDir,
          metricsPort: metricsServer.port,
          adminPort: admin.port,
        },
        'replica server listening',
      );
      const signal = await untilStopSignal();
      log.info({ signal }, 'shutting down');
      // The reconciler first, so it does not start engines again while they are being stopped.
      await agent?.stop();
      await pool.stopAll();
      await server.close();
      await Promise.all([metricsServer.close(), admin.close()]);
    });
}

/** 4 s to 10 min in whole seconds: a Lease's duration is a whole number of seconds. */
function nodeLeaseDuration(value: string): number {
  const ms = durationIn(4_000, 600_000)(value);
  if (ms % 1000 !== 0)
    throw new InvalidArgumentError(
      `${value} is not a whole number of seconds (a Lease's duration is in seconds).`,
    );
  return ms;
}
