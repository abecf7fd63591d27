import { Command } from '@commander-js/extra-typings';
import { kubeconfigOption, logLevelOption, metricsAddressOption } from '../options.js';
import { notYetAvailable } from './not-yet.js';

export function migratorCommand() {
  return new Command('migrator')
    .description('live-migration state machine: second engine on the target, then confirm or roll back')
    .addOption(kubeconfigOption())
    .addOption(metricsAddressOption('0.0.0.0:9504'))
    .addOption(logLevelOption())
    .action(notYetAvailable('migrator'));
}
