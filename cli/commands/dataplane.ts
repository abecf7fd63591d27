import { Command, Option } from '@commander-js/extra-typings';
import { ReplicaServer } from '../../driver/replica/server.js';
import { parseHostPort } from '../../lib/config.js';
import { serveAdmin, untilStopSignal } from '../../lib/http-admin.js';
import { createLogger } from '../../lib/log.js';
import { logLevelOption, metricsAddressOption, nodeIdOption } from '../options.js';

export function dataplaneCommand() {
  return new Command('dataplane')
    .description("data plane of one node: the replica server for this node's replicas (TDRP over TCP)")
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
    .addOption(logLevelOption())
    .action(async (options) => {
      const log = createLogger('dataplane', options.logLevel).child({ node: options.nodeId });
      const server = new ReplicaServer({ dataDir: options.dataDir, log });
      const port = await server.listen(options.listen.host, options.listen.port);
      const admin = await serveAdmin(
        server.metrics.registry,
        options.metricsAddress.host,
        options.metricsAddress.port,
      );
      log.info(
        { host: options.listen.host, port, dataDir: options.dataDir, metricsPort: admin.port },
        'replica server listening',
      );
      const signal = await untilStopSignal();
      log.info({ signal }, 'shutting down');
      await server.close();
      await admin.close();
    });
}
