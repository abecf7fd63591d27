import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { isDnsName } from '../../lib/config.js';
import { kubeconfigOption, logLevelOption, nodeIdOption } from '../options.js';
import { notYetAvailable } from './not-yet.js';

const volumeName = (value: string): string => {
  if (!isDnsName(value))
    throw new InvalidArgumentError(`"${value}" is not a volume name (lower-case DNS name).`);
  return value;
};

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
    .addOption(kubeconfigOption())
    .addOption(logLevelOption())
    .action(notYetAvailable('share-manager'));
}
