import { Command, Option } from '@commander-js/extra-typings';
import { NBD_TX_FLAG } from '../../driver/nbd/constants.js';
import { RelayDevice } from '../../driver/nbd/relay-device.js';
import { NbdServer } from '../../driver/nbd/server.js';
import { createLogger } from '../../lib/log.js';
import { absolutePath, logLevelOption } from '../options.js';

/**
 * `tandem nbd-relay`: serves one export of an engine on a socket of its own and keeps serving it
 * across restarts of the engine (driver/nbd/relay-device.ts says how and why). It is meant to sit
 * between nbdfuse and the engine's socket on a node; the node plugin does not start it yet, for
 * the reason docs/faults.md gives (a fenced attachment's writes must never reach a later engine).
 */
export function nbdRelayCommand() {
  return new Command('nbd-relay')
    .description("serve an engine's export on a socket of its own, reconnecting when the engine restarts")
    .addOption(
      new Option('--upstream <path>', "the engine's NBD socket")
        .argParser(absolutePath)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--export <name>', 'the export to relay (as the engine names it)').makeOptionMandatory(),
    )
    .addOption(
      new Option('--listen <path>', 'the unix socket clients connect to')
        .argParser(absolutePath)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        '--max-pause <ms>',
        'how long a request waits for the engine to come back before it fails with EIO',
      )
        .argParser((value) => {
          const ms = Number(value);
          if (!Number.isInteger(ms) || ms < 1000 || ms > 3_600_000)
            throw new Error(
              `--max-pause must be a whole number of milliseconds from 1000 to 3600000, not "${value}"`,
            );
          return ms;
        })
        .default(120_000),
    )
    .addOption(logLevelOption())
    .action(async (options) => {
      const log = createLogger('nbd-relay', options.logLevel).child({ export: options.export });
      const device = await RelayDevice.open({
        socketPath: options.upstream,
        exportName: options.export,
        maxPauseMs: options.maxPause,
        log,
      });
      const server = new NbdServer({
        exportName: options.export,
        size: device.size,
        device,
        multiConn: (device.transmissionFlags & NBD_TX_FLAG.CAN_MULTI_CONN) !== 0,
        readOnly: (device.transmissionFlags & NBD_TX_FLAG.READ_ONLY) !== 0,
        logger: log,
      });
      await server.listenUnix(options.listen);
      log.info({ listen: options.listen, upstream: options.upstream, size: device.size }, 'relaying');
      const stop = async (signal: string) => {
        log.info({ signal }, 'stopping');
        await server.close();
        device.close();
        process.exit(0);
      };
      process.once('SIGTERM', () => void stop('SIGTERM'));
      process.once('SIGINT', () => void stop('SIGINT'));
    });
}
