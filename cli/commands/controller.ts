import { Command, Option } from '@commander-js/extra-typings';
import { csiEndpointOption, kubeconfigOption, logLevelOption, metricsAddressOption } from '../options.js';
import { notYetAvailable } from './not-yet.js';

export function controllerCommand() {
  return new Command('controller')
    .description(
      'CSI controller service (leader-elected by a Lease): provisions, publishes and expands volumes',
    )
    .addOption(csiEndpointOption())
    .addOption(kubeconfigOption())
    .addOption(
      new Option('--leader-election-namespace <ns>', 'namespace of the leader-election Lease')
        .default('tandem-system')
        .env('POD_NAMESPACE'),
    )
    .addOption(metricsAddressOption('0.0.0.0:9501'))
    .addOption(logLevelOption())
    .action(notYetAvailable('controller', 5));
}
