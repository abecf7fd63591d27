import { Command, Option } from '@commander-js/extra-typings';
import { readCredentialFile } from '../../driver/engine/credential.js';
import { KubeMembershipStore } from '../../driver/engine/kube-membership.js';
import { scrubReplicas } from '../../driver/engine/scrub.js';
import { parseHostPort } from '../../lib/config.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { createLogger } from '../../lib/log.js';
import { kubeconfigOption, logLevelOption, volumeName } from '../options.js';

/** Exit status 1 when replicas differ (or one is unreachable), so scripts and CronJobs can alert. */
export function scrubCommand() {
  return new Command('scrub')
    .description("compare a volume's replicas by range hashes and report blocks that differ")
    .addOption(
      new Option('--volume <name>', 'the Volume resource').argParser(volumeName).makeOptionMandatory(),
    )
    .addOption(
      new Option(
        '--engine-admin <host:port>',
        'ask the running engine to scrub under its range lock (its admin address)',
      ).argParser(parseHostPort),
    )
    .addOption(
      new Option('--credential-file <path>', "the volume's data-plane credential (direct scrub)").env(
        'TANDEM_CREDENTIAL_FILE',
      ),
    )
    .addOption(kubeconfigOption())
    .addOption(logLevelOption())
    .action(async (options) => {
      const log = createLogger('scrub', options.logLevel);
      let report: { divergent: unknown[]; unreachable?: unknown[] };
      if (options.engineAdmin !== undefined) {
        const { host, port } = options.engineAdmin;
        const res = await fetch(`http://${host.includes(':') ? `[${host}]` : host}:${port}/scrub`, {
          method: 'POST',
        });
        if (!res.ok) throw new Error(`the engine answered ${res.status}: ${await res.text()}`);
        report = (await res.json()) as typeof report;
      } else {
        if (options.credentialFile === undefined)
          throw new Error('give --credential-file (or --engine-admin)');
        const store = new KubeMembershipStore(
          new VolumeClient(loadKubeConfig(options.kubeconfig)),
          options.volume,
        );
        report = await scrubReplicas({
          volume: options.volume,
          secret: await readCredentialFile(options.credentialFile),
          record: await store.read(),
          log,
        });
      }
      process.stdout.write(`${JSON.stringify(report)}\n`);
      if (report.divergent.length > 0 || (report.unreachable?.length ?? 0) > 0) process.exitCode = 1;
    });
}
