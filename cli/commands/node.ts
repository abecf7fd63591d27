import { Command } from '@commander-js/extra-typings';
import {
  csiEndpointOption,
  kubeconfigOption,
  logLevelOption,
  metricsAddressOption,
  nodeIdOption,
} from '../options.js';
import { notYetAvailable } from './not-yet.js';

export function nodeCommand() {
  return new Command('node')
    .description('CSI node service: stages (NBD device, filesystem) and publishes volumes on this node')
    .addOption(nodeIdOption())
    .addOption(csiEndpointOption())
    .addOption(kubeconfigOption())
    .addOption(metricsAddressOption('0.0.0.0:9502'))
    .addOption(logLevelOption())
    .action(notYetAvailable('node', 5));
}
