import { Command, Option } from '@commander-js/extra-typings';
import { parseHostPort } from '../../lib/config.js';
import { kubeconfigOption, logLevelOption, metricsAddressOption, nodeIdOption } from '../options.js';
import { notYetAvailable } from './not-yet.js';

export function dataplaneCommand() {
  return new Command('dataplane')
    .description("data plane of one node: replica server and engines (NBD) for this node's volumes")
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
    .addOption(kubeconfigOption())
    .addOption(metricsAddressOption('0.0.0.0:9503'))
    .addOption(logLevelOption())
    .action(notYetAvailable('dataplane', 4));
}
