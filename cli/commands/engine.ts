import { Command, Option } from '@commander-js/extra-typings';
import { readCredentialFile } from '../../driver/engine/credential.js';
import { EngineHost } from '../../driver/engine/host.js';
import { KubeMembershipStore } from '../../driver/engine/kube-membership.js';
import { durationIn, parseHostPort, unixSocketPath } from '../../lib/config.js';
import { serveAdmin } from '../../lib/http-admin.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { createLogger } from '../../lib/log.js';
import { untilStopSignal } from '../../lib/signals.js';
import {
  kubeconfigOption,
  logLevelOption,
  metricsAddressOption,
  nodeIdOption,
  volumeName,
} from '../options.js';

export function engineCommand() {
  return new Command('engine')
    .description("one volume's engine: NBD server in front of its replicas, with fencing and rebuild")
    .addOption(nodeIdOption())
    .addOption(
      new Option('--volume <name>', 'the Volume resource this engine serves')
        .argParser(volumeName)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--credential-file <path>', "file holding the volume's data-plane credential (≥ 16 bytes)")
        .env('TANDEM_CREDENTIAL_FILE')
        .makeOptionMandatory(),
    )
    .addOption(new Option('--nbd-socket <path>', 'serve NBD on this unix socket').argParser(unixSocketPath))
    .addOption(
      new Option('--nbd-listen <host:port>', 'serve NBD on this TCP address').argParser(parseHostPort),
    )
    .addOption(
      new Option(
        '--join',
        'attach as the second engine of a live migration instead of taking the volume over',
      ).default(false),
    )
    .addOption(
      new Option('--request-timeout <duration>', 'a replica that does not answer within this is fenced')
        .argParser(durationIn(100, 600_000))
        .default(5000, '5s'),
    )
    .addOption(
      new Option('--rebuild-interval <duration>', 'how often failed replicas are retried for a rebuild')
        .argParser(durationIn(100, 3_600_000))
        .default(3000, '3s'),
    )
    .addOption(kubeconfigOption())
    .addOption(metricsAddressOption('127.0.0.1:9504'))
    .addOption(logLevelOption())
    .action(async (options) => {
      if (options.nbdSocket === undefined && options.nbdListen === undefined) {
        throw new Error('give --nbd-socket, --nbd-listen or both: the engine needs somewhere to serve NBD');
      }
      const log = createLogger('engine', options.logLevel).child({ node: options.nodeId });
      const store = new KubeMembershipStore(
        new VolumeClient(loadKubeConfig(options.kubeconfig)),
        options.volume,
      );
      const host = await EngineHost.start({
        volume: options.volume,
        node: options.nodeId,
        secret: await readCredentialFile(options.credentialFile),
        store,
        mode: options.join ? 'join' : 'takeover',
        ...(options.nbdSocket === undefined ? {} : { nbdSocket: options.nbdSocket }),
        ...(options.nbdListen === undefined ? {} : { nbdTcp: options.nbdListen }),
        requestTimeoutMs: options.requestTimeout,
        rebuild: { checkIntervalMs: options.rebuildInterval },
        log,
      });
      const admin = await serveAdmin(
        host.metrics.registry,
        options.metricsAddress.host,
        options.metricsAddress.port,
        {
          '/scrub': () => host.scrub(),
          '/rebuild': async () => {
            await host.rebuilder.runOnce();
            return host.set.record;
          },
        },
      );
      log.info(
        {
          epoch: host.set.record.epoch,
          nbdSocket: options.nbdSocket,
          nbdPort: host.tcpPort,
          adminPort: admin.port,
        },
        'engine serving',
      );
      const signal = await untilStopSignal();
      log.info({ signal }, 'shutting down');
      await host.stop({ leave: true });
      await admin.close();
    });
}
