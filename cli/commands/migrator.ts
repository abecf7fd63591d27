import { Command, Option } from '@commander-js/extra-typings';
import { durationIn } from '../../lib/config.js';
import { runMigrator } from '../../migrator/run.js';
import { kubeconfigOption, logLevelOption, metricsAddressOption, namespaceOption } from '../options.js';

export function migratorCommand() {
  return new Command('migrator')
    .description(
      'live-migration state machine (leader-elected by a Lease): confirms or rolls back every migration of a migratable volume from what KubeVirt does, fences the losing engine, measures every migration',
    )
    .addOption(kubeconfigOption())
    .addOption(namespaceOption('credential Secrets, node Leases, the leader Lease'))
    .addOption(
      new Option(
        '--migration-timeout <duration>',
        'a migration whose target pod never runs (or whose target engine never serves) for this long is rolled back',
      )
        .argParser(durationIn(10_000, 3_600_000))
        .default(300_000, '5m')
        .env('TANDEM_MIGRATION_TIMEOUT'),
    )
    .addOption(
      new Option(
        '--resync-interval <duration>',
        'how often every volume with a migration is looked at again even without a change (timeouts, lost nodes)',
      )
        .argParser(durationIn(500, 600_000))
        .default(5_000, '5s')
        .env('TANDEM_MIGRATOR_RESYNC'),
    )
    .addOption(metricsAddressOption('0.0.0.0:9505'))
    .addOption(logLevelOption())
    .action(async (options) => {
      process.exitCode = await runMigrator({
        kubeconfig: options.kubeconfig,
        namespace: options.namespace,
        migrationTimeoutMs: options.migrationTimeout,
        resyncIntervalMs: options.resyncInterval,
        metricsAddress: options.metricsAddress,
        logLevel: options.logLevel,
      });
    });
}
