import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Field names whose values never reach a log line, wherever they sit in a
 * logged object: the data plane's per-volume credentials, CSI secrets and
 * private keys all travel in objects we log on error paths.
 */
const REDACTED_PATHS = [
  'secret',
  'secrets',
  'credential',
  'password',
  'token',
  'privateKey',
  '*.secret',
  '*.secrets',
  '*.credential',
  '*.password',
  '*.token',
  '*.privateKey',
];

/**
 * One structured (JSON, one object per line) logger per process, written to
 * stderr so that commands such as `tandem status` keep stdout for their output.
 */
export function createLogger(component: string, level: LogLevel = 'info'): Logger {
  const options: LoggerOptions = {
    level,
    base: { component },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return pino(options, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything, for unit tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
