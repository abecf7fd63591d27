import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from '@commander-js/extra-typings';
import { sweepStaleNetworks } from '../../lab/netns.js';
import { integerIn, parseDurationMs } from '../../lib/config.js';
import { createLogger } from '../../lib/log.js';
import { untilStopSignal } from '../../lib/signals.js';
import { describeLab, startLab } from '../../test/harness/lab.js';
import { logLevelOption } from '../options.js';

export function labCommand() {
  return new Command('lab')
    .description('local lab: a real control plane and simulated nodes on this machine (needs root)')
    .addOption(
      new Option('--nodes <n>', 'number of simulated nodes')
        .argParser(integerIn(1, 8))
        .default(3)
        .env('TANDEM_LAB_NODES'),
    )
    .addOption(
      new Option('--state-dir <path>', 'lab state (certificates, etcd data, logs, kubeconfig)').default(
        join(tmpdir(), 'tandem-lab'),
      ),
    )
    .addOption(
      new Option(
        '--exit-after <duration>',
        'stop by itself after this long, e.g. 30s (default: run until Ctrl-C)',
      ).argParser(parseDurationMs),
    )
    .addOption(new Option('--clean', 'remove simulated networks left by labs or tests that died, then exit'))
    .addOption(logLevelOption().default('warn' as const))
    .action(async (options) => {
      const logger = createLogger('lab', options.logLevel);
      if (options.clean) {
        process.stdout.write(`removed ${sweepStaleNetworks(logger)} stale simulated network(s)\n`);
        return;
      }
      const lab = await startLab({ nodes: options.nodes, stateDir: options.stateDir, logger });
      process.stdout.write(
        `${describeLab(lab)}\n\n${options.exitAfter === undefined ? 'Press Ctrl-C to stop; everything the lab started is removed.' : `Stopping by itself in ${options.exitAfter} ms.`}\n`,
      );
      await untilStopSignal(options.exitAfter === undefined ? {} : { afterMs: options.exitAfter });
      process.stdout.write('Stopping the lab...\n');
      await lab.stop();
      process.stdout.write('Lab stopped; nothing left running.\n');
    });
}
