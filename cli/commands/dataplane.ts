import { Command, Option } from '@commander-js/extra-typings';
import { Registry } from 'prom-client';
import { EnginePool, parseEngineSpec } from '../../driver/engine/engine-pool.js';
import { KubeMembershipStore } from '../../driver/engine/kube-membership.js';
import { EngineMetrics } from '../../driver/engine/metrics.js';
import { ReplicaServerMetrics } from '../../driver/replica/metrics.js';
import { ReplicaServer } from '../../driver/replica/server.js';
import { parseHostPort } from '../../lib/config.js';
import { AdminInputError, serveAdmin } from '../../lib/http-admin.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { createLogger } from '../../lib/log.js';
import { createRegistry } from '../../lib/metrics.js';
import { untilStopSignal } from '../../lib/signals.js';
import { kubeconfigOption, logLevelOption, metricsAddressOption, nodeIdOption } from '../options.js';

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
      log.info(
        {
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
      await pool.stopAll();
      await server.close();
      await Promise.all([metricsServer.close(), admin.close()]);
    });
}
