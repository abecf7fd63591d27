import { Command, Option } from '@commander-js/extra-typings';
import { identityHandlers } from '../../driver/csi/identity.js';
import { csiServices } from '../../driver/csi/proto.js';
import { CsiServer } from '../../driver/csi/server.js';
import { KubeletRegistration } from '../../driver/node/registration.js';
import { nodeHandlers, nodeReadiness } from '../../driver/node/service.js';
import { releaseDeadSharesHere } from '../../driver/share-manager/share-manager.js';
import { unixSocketPath } from '../../lib/config.js';
import { UsageError } from '../../lib/errors.js';
import { serveAdmin } from '../../lib/http-admin.js';
import { createLogger } from '../../lib/log.js';
import { createRegistry } from '../../lib/metrics.js';
import { canConnect } from '../../lib/readiness.js';
import { untilStopSignal } from '../../lib/signals.js';
import {
  absolutePath,
  csiEndpointOption,
  engineSocketDirOption,
  frontendOption,
  logLevelOption,
  metricsAddressOption,
  nodeIdOption,
} from '../options.js';

/** Empty means "do not register" (a test plays the kubelet), so an empty value is legal here. */
const absolutePathOrEmpty = (value: string): string => (value === '' ? '' : absolutePath(value));

/** How often the node plugin releases what killed share managers left on its node. */
const SHARE_SWEEP_MS = 10_000;

export function nodeCommand() {
  return new Command('node')
    .description('CSI node service: stages (NBD device, filesystem) and publishes volumes on this node')
    .addOption(nodeIdOption())
    .addOption(csiEndpointOption())
    .addOption(engineSocketDirOption())
    .addOption(
      new Option('--state-dir <path>', 'stage records and block-device attachments of this node')
        .argParser(absolutePath)
        .default('/var/lib/tandem/node')
        .env('TANDEM_NODE_STATE_DIR'),
    )
    .addOption(frontendOption())
    .addOption(
      new Option(
        '--share-manager-state-dir <path>',
        "share managers' state folder on this node, as mounted here (Bidirectional): the mounts of killed ones are released from it; empty: none",
      )
        .argParser(absolutePathOrEmpty)
        .default('')
        .env('TANDEM_SHARE_MANAGER_STATE_DIR'),
    )
    .addOption(
      new Option(
        '--kubelet-registration-dir <path>',
        "the kubelet's plugin registration directory (its plugins_registry) as mounted here; empty: do not register with the kubelet",
      )
        .argParser(absolutePathOrEmpty)
        .default('')
        .env('TANDEM_KUBELET_REGISTRATION_DIR'),
    )
    .addOption(
      new Option(
        '--kubelet-registration-path <path>',
        'the CSI socket as the kubelet sees it on the host; required with --kubelet-registration-dir',
      )
        .argParser(unixSocketPath)
        .env('TANDEM_KUBELET_REGISTRATION_PATH'),
    )
    .addOption(metricsAddressOption('0.0.0.0:9502'))
    .addOption(logLevelOption())
    .hook('preAction', (command) => {
      // Here rather than in the action, so a manifest check parsing the arguments sees the refusal.
      const { kubeletRegistrationDir, kubeletRegistrationPath } = command.opts();
      if (kubeletRegistrationDir !== '' && kubeletRegistrationPath === undefined)
        throw new UsageError(
          '--kubelet-registration-path is required with --kubelet-registration-dir: the kubelet needs the CSI socket as it sees it on the host.',
        );
      if (kubeletRegistrationDir === '' && kubeletRegistrationPath !== undefined)
        throw new UsageError(
          '--kubelet-registration-path has no effect without --kubelet-registration-dir (where the kubelet looks for plugins).',
        );
    })
    .action(async (options) => {
      const logger = createLogger('node', options.logLevel).child({ node: options.nodeId });
      const ready = nodeReadiness({ stateDir: options.stateDir, frontend: options.frontend });
      const server = new CsiServer({
        endpoint: options.csiEndpoint,
        logger,
        services: [
          {
            definition: csiServices().Identity,
            handlers: identityHandlers({ ready }),
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
      let refused: (error: string) => void = () => {};
      const refusal = new Promise<string>((resolve) => {
        refused = resolve;
      });
      const registration =
        options.kubeletRegistrationDir === ''
          ? undefined
          : new KubeletRegistration({
              registrationDir: options.kubeletRegistrationDir,
              kubeletEndpoint: options.kubeletRegistrationPath ?? '',
              logger,
              onRefused: refused,
            });
      // After the CSI socket listens: the kubelet calls NodeGetInfo as soon as it sees this one.
      await registration?.start();
      // What the livenessprobe sidecar checked (Probe's readiness through the CSI socket), plus
      // the registration socket, whose loss the kubelet does not heal.
      const healthy = async (): Promise<true | string> => {
        if (!(await ready())) return 'not ready';
        if (!(await canConnect({ path: server.path })))
          return `the CSI socket ${server.path} does not accept connections`;
        return registration ? registration.health() : true;
      };
      const metrics = await serveAdmin(
        createRegistry('node'),
        options.metricsAddress.host,
        options.metricsAddress.port,
        {},
        { healthy, logger },
      );
      logger.info(
        {
          stateDir: options.stateDir,
          engineSocketDir: options.engineSocketDir,
          frontend: options.frontend,
          metricsPort: metrics.port,
          kubeletRegistration: registration?.socketPath ?? 'off',
        },
        'node service ready',
      );
      // A share manager killed on this node leaves its filesystem mounted over a dead FUSE
      // connection (its Pod mounts Bidirectional, see driver/controller/share-manager-objects.ts),
      // and its successor may start on another node: released here within a sweep interval.
      const sweepShares = options.shareManagerStateDir;
      let sweeping: Promise<unknown> = Promise.resolve();
      const sweeper =
        sweepShares === ''
          ? undefined
          : setInterval(() => {
              sweeping = sweeping.then(() =>
                releaseDeadSharesHere({
                  nodeId: options.nodeId,
                  stateDir: sweepShares,
                  engineSocketDir: options.engineSocketDir,
                  frontend: options.frontend,
                  logger,
                }),
              );
            }, SHARE_SWEEP_MS);
      const end = await Promise.race([
        untilStopSignal().then((signal) => ({ signal: String(signal), refused: undefined })),
        refusal.then((error) => ({ signal: undefined, refused: error })),
      ]);
      logger.info(
        end.refused === undefined ? { signal: end.signal } : { kubeletError: end.refused },
        'shutting down',
      );
      if (sweeper) clearInterval(sweeper);
      await sweeping;
      // The registration socket first: the kubelet unregisters the plugin before its CSI socket goes.
      await registration?.stop();
      await server.stop();
      await metrics.close();
      // Like node-driver-registrar: a refused registration restarts the container, which registers anew.
      if (end.refused !== undefined) process.exitCode = 1;
    });
}
