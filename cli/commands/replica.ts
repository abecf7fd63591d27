import { Command, Option } from '@commander-js/extra-typings';
import { readCredentialFile } from '../../driver/engine/credential.js';
import { ReplicaStore } from '../../driver/replica/store.js';
import { parseSize } from '../../lib/config.js';
import { volumeName } from '../options.js';

const dataDirOption = () =>
  new Option('--data-dir <path>', 'where replica files live')
    .default('/var/lib/tandem')
    .env('TANDEM_DATA_DIR');

/**
 * Local replica administration on a node (the data-plane DaemonSet does the same from the Volume
 * resources; by hand it serves the lab, tests and recovery).
 */
export function replicaCommand() {
  const replica = new Command('replica').description("create, list and delete this node's replica files");
  replica
    .command('create')
    .description('create (or confirm) a replica: sparse data file, metadata, credential')
    .addOption(dataDirOption())
    .addOption(new Option('--volume <name>', 'volume name').argParser(volumeName).makeOptionMandatory())
    .addOption(
      new Option('--size <bytes>', 'volume size, e.g. 1Gi').argParser(parseSize).makeOptionMandatory(),
    )
    .addOption(
      new Option('--credential-file <path>', "the volume's data-plane credential").makeOptionMandatory(),
    )
    .action(async (options) => {
      const store = await ReplicaStore.create(options.dataDir, {
        volume: options.volume,
        sizeBytes: options.size,
        secret: await readCredentialFile(options.credentialFile),
      });
      process.stdout.write(
        `${JSON.stringify({ volume: store.volume, sizeBytes: store.sizeBytes, epoch: store.epoch })}\n`,
      );
      await store.close();
    });
  replica
    .command('list')
    .description('list the replicas in the data directory')
    .addOption(dataDirOption())
    .action(async (options) => {
      for (const volume of await ReplicaStore.list(options.dataDir)) {
        const store = await ReplicaStore.open(options.dataDir, volume);
        const { sizeBytes, epoch, dirty } = store;
        await store.close();
        process.stdout.write(`${JSON.stringify({ volume, sizeBytes, epoch, dirty })}\n`);
      }
    });
  replica
    .command('delete')
    .description('delete a replica (idempotent)')
    .addOption(dataDirOption())
    .addOption(new Option('--volume <name>', 'volume name').argParser(volumeName).makeOptionMandatory())
    .action(async (options) => {
      await ReplicaStore.remove(options.dataDir, options.volume);
    });
  return replica;
}
