import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { heartbeatTimings, KubeShareEndpoint } from '../../driver/share-manager/endpoint.js';
import { ShareManagerMetrics } from '../../driver/share-manager/metrics.js';
import { NFS_PORT, ShareManager } from '../../driver/share-manager/share-manager.js';
import { integerIn, oneOf } from '../../lib/config.js';
import { errorMessage } from '../../lib/errors.js';
import { serveAdmin } from '../../lib/http-admin.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { KubeLeaseApi } from '../../lib/kube/leader-election.js';
import { createLogger } from '../../lib/log.js';
import { untilStopSignal } from '../../lib/signals.js';
import {
  absolutePath,
  engineSocketDirOption,
  frontendOption,
  kubeconfigOption,
  logLevelOption,
  metricsAddressOption,
  namespaceOption,
  nodeIdOption,
  volumeName,
} from '../options.js';

const ipAddress = (value: string): string => {
  if (isIP(value) === 0)
    throw new InvalidArgumentError(`"${value}" is not an IP address (the pod's or the node's).`);
  return value;
};

/**
 * The kubelet creates the file in every container and copies it into the Pod's status when the
 * container ends; outside a Pod it does not exist and nothing is written.
 */
async function writeTerminationMessage(path: string, message: string): Promise<void> {
  if (!existsSync(path)) return;
  await writeFile(path, message.slice(0, 4000)).catch(() => undefined);
}

export function shareManagerCommand() {
  return new Command('share-manager')
    .description('NFS share manager of one RWX volume: mounts it and exports it with NFS-Ganesha')
    .addOption(
      new Option('--volume <name>', 'the Volume to serve')
        .argParser(volumeName)
        .env('TANDEM_VOLUME')
        .makeOptionMandatory(),
    )
    .addOption(nodeIdOption())
    .addOption(
      new Option('--bind-address <ip>', "the address NFS clients reach (the pod's IP)")
        .argParser(ipAddress)
        .env('POD_IP')
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--port <n>', 'NFS port')
        .argParser(integerIn(1, 65535))
        .default(NFS_PORT)
        .env('TANDEM_NFS_PORT'),
    )
    .addOption(
      new Option('--fs-type <type>', "the volume's filesystem (made on first use)")
        .argParser(oneOf(['ext4', 'xfs'] as const))
        .default('ext4' as const)
        .env('TANDEM_FS_TYPE'),
    )
    .addOption(
      new Option('--fast-failover', 'grace 30 s and lease 20 s instead of 90 s and 60 s').env(
        'TANDEM_FAST_FAILOVER',
      ),
    )
    .addOption(engineSocketDirOption())
    .addOption(
      new Option(
        '--state-dir <path>',
        "the share manager's attachment records, mount point and Ganesha files",
      )
        .argParser(absolutePath)
        .default('/var/lib/tandem/share-manager')
        .env('TANDEM_SHARE_MANAGER_STATE_DIR'),
    )
    .addOption(frontendOption())
    .addOption(kubeconfigOption())
    .addOption(namespaceOption("the volume's Service, EndpointSlice and heartbeat Lease"))
    .addOption(
      new Option(
        '--identity <id>',
        "who holds the heartbeat Lease: the pod's UID, unique per share-manager incarnation",
      ).env('POD_UID'),
    )
    .addOption(
      new Option(
        '--no-endpoint',
        'serve without writing the EndpointSlice and the heartbeat Lease (no cluster)',
      ),
    )
    .addOption(
      new Option(
        '--termination-log <path>',
        "where a failed start writes why (the kubelet's terminationMessagePath); written only if it exists",
      )
        .argParser(absolutePath)
        .default('/dev/termination-log')
        .env('TANDEM_TERMINATION_LOG'),
    )
    .addOption(metricsAddressOption('0.0.0.0:9504'))
    .addOption(logLevelOption())
    .action(async (options) => {
      const logger = createLogger('share-manager', options.logLevel).child({
        node: options.nodeId,
        volume: options.volume,
      });
      const fastFailover = options.fastFailover === true;
      const kc = options.endpoint ? loadKubeConfig(options.kubeconfig) : undefined;
      const endpoint =
        kc === undefined
          ? undefined
          : new KubeShareEndpoint({
              kc,
              leases: new KubeLeaseApi(kc),
              namespace: options.namespace,
              volumeId: options.volume,
              nodeName: options.nodeId,
              identity: options.identity ?? `${options.nodeId}-${process.pid}`,
              timings: heartbeatTimings(fastFailover),
              logger,
            });
      let serving = false;
      let manager: ShareManager | undefined;
      const metrics = new ShareManagerMetrics(
        options.volume,
        () => (serving ? { address: options.bindAddress, port: options.port } : undefined),
        async () => (serving ? manager?.nfsOperations() : undefined),
      );
      const admin = await serveAdmin(
        metrics.registry,
        options.metricsAddress.host,
        options.metricsAddress.port,
        {},
        { healthy: async () => (serving ? true : 'not serving'), logger },
      );
      manager = await ShareManager.start({
        volumeId: options.volume,
        nodeId: options.nodeId,
        stateDir: options.stateDir,
        engineSocketDir: options.engineSocketDir,
        frontend: options.frontend,
        bindAddress: options.bindAddress,
        port: options.port,
        fsType: options.fsType,
        fastFailover,
        endpoint,
        logger,
      }).catch(async (err: unknown) => {
        await admin.close();
        await writeTerminationMessage(options.terminationLog, errorMessage(err));
        throw err;
      });
      serving = true;
      metrics.up.set({ volume: options.volume }, 1);
      metrics.gracePeriods.inc({ volume: options.volume });
      const end = await Promise.race([
        untilStopSignal().then((signal) => ({ signal: String(signal), died: undefined })),
        manager.ganeshaExited.then((died) => ({ signal: undefined, died })),
      ]);
      if (end.died !== undefined) {
        // Ganesha is gone: stop serving the volume here so a successor can take it.
        logger.error({ reason: end.died }, 'NFS-Ganesha died; releasing the volume');
        await writeTerminationMessage(options.terminationLog, end.died);
        process.exitCode = 1;
      } else logger.info({ signal: end.signal }, 'shutting down');
      serving = false;
      metrics.up.set({ volume: options.volume }, 0);
      await manager.stop().catch((err: unknown) => {
        logger.error({ err: errorMessage(err) }, 'release failed');
        process.exitCode = 1;
      });
      await admin.close();
    });
}
