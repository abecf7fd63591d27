#!/usr/bin/env node
import { CommanderError } from '@commander-js/extra-typings';
import { errorMessage, UsageError } from '../lib/errors.js';
import { buildProgram } from './program.js';

/** Exit codes: 0 success, 1 runtime failure, 2 invalid usage (flag, value, environment). */
const program = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander has already printed the message (and the hint) to stderr.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof UsageError) {
    process.stderr.write(`tandem: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`tandem: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  }
}
