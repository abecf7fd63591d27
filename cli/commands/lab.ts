import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from '@commander-js/extra-typings';
import { MAX_REAL_NODES } from '../../lab/addresses.js';
import { describeLab, startLab } from '../../lab/lab.js';
import { sweepStaleNetworks } from '../../lab/netns.js';
import { integerIn, parseDurationMs } from '../../lib/config.js';
import { createLogger } from '../../lib/log.js';
import { logLevelOption } from '../options.js';

export function labCommand() {
  return new Command('lab')
    .description(
      'local lab: a real control plane and real nodes on this machine, Tandem installed from its manifests (needs root)',
    )
    .addOption(
      new Option('--nodes <n>', 'number of nodes (kubelet + containerd each)')
        .argParser(integerIn(1, MAX_REAL_NODES))
        .default(3)
        .env('TANDEM_LAB_NODES'),
    )
    .addOption(
      new Option('--state-dir <path>', 'lab state (certificates, etcd data, node folders, logs)').default(
        join(tmpdir(), 'tandem-lab'),
      ),
    )
    .addOption(
      new Option(
        '--exit-after <duration>',
        'stop by itself after this long, e.g. 30s (default: run until Ctrl-C)',
      ).argParser(parseDurationMs),
    )
    .addOption(new Option('--no-demo', 'do not start the demo workloads'))
    .addOption(
      new Option('--clean', 'remove networks, nodes and cgroups left by labs or tests that died, then exit'),
    )
    .addOption(logLevelOption().default('warn' as const))
    .action(async (options) => {
      const logger = createLogger('lab', options.logLevel);
      if (options.clean) {
        process.stdout.write(`removed ${sweepStaleNetworks(logger)} stale simulated network(s)\n`);
        return;
      }
      process.stdout.write(`Starting the lab: a control plane and ${options.nodes} real node(s)...\n`);
      const lab = await startLab({
        nodes: options.nodes,
        stateDir: options.stateDir,
        demo: options.demo,
        logger,
      });
      // One listener for the lab's whole life: the first signal stops it in order, a second one
      // forces. Swapping listeners between the two would leave a moment with none, in which
      // the kernel's default action (death, nothing cleaned) would take a quick second Ctrl-C.
      let stopRequested: () => void = () => undefined;
      const stopping = new Promise<void>((resolve) => {
        stopRequested = resolve;
      });
      let stopBegun = false;
      const onSignal = () => {
        if (!stopBegun) {
          stopRequested();
          return;
        }
        process.stdout.write('Forcing: killing every process of the lab.\n');
        lab.forceStop();
        process.exit(130);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      if (options.exitAfter !== undefined) setTimeout(stopRequested, options.exitAfter).unref();
      process.stdout.write(
        `${describeLab(lab)}\n\n${options.exitAfter === undefined ? 'Press Ctrl-C to stop; everything the lab started is removed.' : `Stopping by itself in ${options.exitAfter} ms.`}\n`,
      );
      await stopping;
      stopBegun = true;
      process.stdout.write('Stopping the lab... (press Ctrl-C again to force)\n');
      const problems = await lab.stop();
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      if (problems.length > 0) {
        process.stdout.write(`Lab stopped with problems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write('Lab stopped; nothing left running.\n');
    });
}
