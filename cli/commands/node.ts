import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { identityHandlers } from '../../driver/csi/identity.js';
import { DEFAULT_ENGINE_SOCKET_DIR } from '../../driver/csi/node-topology.js';
import { csiServices } from '../../driver/csi/proto.js';
import { CsiServer } from '../../driver/csi/server.js';
import { nodeHandlers, nodeReadiness } from '../../driver/node/service.js';
import { oneOf } from '../../lib/config.js';
import { serveAdmin } from '../../lib/http-admin.js';
import { createLogger } from '../../lib/log.js';
import { createRegistry } from '../../lib/metrics.js';
import { untilStopSignal } from '../../lib/signals.js';
import { csiEndpointOption, logLevelOption, metricsAddressOption, nodeIdOption } from '../options.js';

const absolutePath = (value: string): string => {
  if (!value.startsWith('/')) throw new InvalidArgumentError(`"${value}" is not an absolute path.`);
  return value;
};

export function nodeCommand() {
  return new Command('node')
    .description('CSI node service: stages (NBD device, filesystem) and publishes volumes on this node')
    .addOption(nodeIdOption())
    .addOption(csiEndpointOption())
    .addOption(
      new Option(
        '--engine-socket-dir <path>',
        "where the data plane's engines listen (one socket per volume)",
      )
        .argParser(absolutePath)
        .default(DEFAULT_ENGINE_SOCKET_DIR)
        .env('TANDEM_ENGINE_SOCKET_DIR'),
    )
    .addOption(
      new Option('--state-dir <path>', 'stage records and block-device attachments of this node')
        .argParser(absolutePath)
        .default('/var/lib/tandem/node')
        .env('TANDEM_NODE_STATE_DIR'),
    )
    .addOption(
      new Option(
        '--frontend <kind>',
        'block device frontend: auto (kernel NBD when present), kernel-nbd or nbdfuse',
      )
        .argParser(oneOf(['auto', 'kernel-nbd', 'nbdfuse'] as const))
        .default('auto' as const)
        .env('TANDEM_NODE_FRONTEND'),
    )
    .addOption(metricsAddressOption('0.0.0.0:9502'))
    .addOption(logLevelOption())
    .action(async (options) => {
      const logger = createLogger('node', options.logLevel).child({ node: options.nodeId });
      const server = new CsiServer({
        endpoint: options.csiEndpoint,
        logger,
        services: [
          {
            definition: csiServices().Identity,
            handlers: identityHandlers({
              ready: nodeReadiness({ stateDir: options.stateDir, frontend: options.frontend }),
            }),
          },
          {
            definition: csiServices().Node,
            handlers: nodeHandlers({
              nodeId: options.nodeId,
              stateDir: options.stateDir,
              engineSocketDir: options.engineSocketDir,
              frontend: options.frontend,
            }),
          },
        ],
      });
      await server.start();
      const metrics = await serveAdmin(
        createRegistry('node'),
        options.metricsAddress.host,
        options.metricsAddress.port,
      );
      logger.info(
        {
          stateDir: options.stateDir,
          engineSocketDir: options.engineSocketDir,
          frontend: options.frontend,
          metricsPort: metrics.port,
        },
        'node service ready',
      );
      const signal = await untilStopSignal();
      logger.info({ signal }, 'shutting down');
      await server.stop();
      await metrics.close();
    });
}
