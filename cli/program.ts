import { Command } from '@commander-js/extra-typings';
import { controllerCommand } from './commands/controller.js';
import { dataplaneCommand } from './commands/dataplane.js';
import { engineCommand } from './commands/engine.js';
import { labCommand } from './commands/lab.js';
import { labMigrateCommand } from './commands/lab-migrate.js';
import { migratorCommand } from './commands/migrator.js';
import { nbdRelayCommand } from './commands/nbd-relay.js';
import { nodeCommand } from './commands/node.js';
import { replicaCommand } from './commands/replica.js';
import { scrubCommand } from './commands/scrub.js';
import { shareManagerCommand } from './commands/share-manager.js';
import { statusCommand } from './commands/status.js';
import { webhookCommand } from './commands/webhook.js';

export const VERSION = '0.1.0';

export interface ProgramOutput {
  writeOut: (text: string) => void;
  writeErr: (text: string) => void;
}

/**
 * The `tandem` command tree; main.ts runs it, tests drive it directly. Errors
 * (bad flag, bad value, unknown command) throw CommanderError instead of
 * exiting, at every level, so the caller picks the exit code.
 */
export function buildProgram(output?: ProgramOutput): Command {
  const program = new Command('tandem')
    .description('Replicated block storage for Kubernetes, built for KubeVirt live migration.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for the allowed options)')
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
  for (const command of [
    controllerCommand(),
    nodeCommand(),
    dataplaneCommand(),
    engineCommand(),
    nbdRelayCommand(),
    replicaCommand(),
    scrubCommand(),
    webhookCommand(),
    migratorCommand(),
    shareManagerCommand(),
    labCommand(),
    labMigrateCommand(),
    statusCommand(),
  ]) {
    program.addCommand(
      command.allowExcessArguments(false).showHelpAfterError('(run with --help for the allowed options)'),
    );
  }
  const everyCommand = (c: Command): Command[] => [
    c,
    ...c.commands.flatMap((sub) => everyCommand(sub as Command)),
  ];
  for (const command of everyCommand(program)) {
    command.exitOverride();
    if (output) command.configureOutput(output);
  }
  return program;
}
