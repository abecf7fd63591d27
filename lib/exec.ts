import { spawn } from 'node:child_process';
import { type Logger, silentLogger } from './log.js';
import { redact, redactCommandLine } from './redact.js';

export interface RunOptions {
  /** Kill the command (SIGKILL) after this long. Every command has a limit. */
  timeoutMs?: number;
  /** Values to hide in logs and error messages (credentials, keys). */
  secrets?: readonly string[];
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Resolve instead of throwing when the exit code is non-zero. */
  allowFailure?: boolean;
  logger?: Logger;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_CAPTURE_BYTES = 16 * 1024 * 1024;

/** A command that failed, timed out or could not start; the message is safe to log. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly commandLine: string,
    readonly code: number | null,
    readonly stderr: string,
    readonly timedOut: boolean,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

/**
 * Runs an external command to completion: the one place the product starts
 * short-lived processes (mkfs, mount, ip, nbd tools ...). It always has a
 * timeout, never goes through a shell, and logs the command line with secrets
 * hidden.
 */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const secrets = options.secrets ?? [];
  const logger = options.logger ?? silentLogger();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const commandLine = redactCommandLine(command, args, secrets);
  const started = process.hrtime.bigint();

  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout = new Capture();
    const stderr = new Capture();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);

    child.stdout.on('data', (chunk: Buffer) => stdout.add(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.add(chunk));
    child.stdin.on('error', () => {
      // The command may exit without reading its input; its exit code tells.
    });
    child.stdin.end(options.input ?? '');

    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new CommandError(`cannot start ${commandLine}: ${err.message}`, commandLine, null, '', false));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const result = { code: code ?? -1, stdout: stdout.text(), stderr: stderr.text() };
      logger.debug({ command: commandLine, code, signal, ms: Math.round(ms) }, 'command finished');
      if (timedOut) {
        reject(
          new CommandError(
            `${commandLine} timed out after ${timeoutMs} ms`,
            commandLine,
            null,
            redact(result.stderr, secrets),
            true,
          ),
        );
      } else if (result.code !== 0 && !options.allowFailure) {
        const tail = redact(result.stderr.trim(), secrets).split('\n').slice(-5).join('\n');
        const why = signal ? `killed by ${signal}` : `exited with code ${result.code}`;
        reject(
          new CommandError(
            `${commandLine} ${why}${tail ? `: ${tail}` : ''}`,
            commandLine,
            result.code,
            tail,
            false,
          ),
        );
      } else {
        resolve(result);
      }
    });
  });
}

/** Collects output up to a bound, so a chatty command cannot exhaust memory. */
class Capture {
  private chunks: Buffer[] = [];
  private size = 0;
  private truncated = false;

  add(chunk: Buffer): void {
    if (this.size >= MAX_CAPTURE_BYTES) {
      this.truncated = true;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  text(): string {
    const text = Buffer.concat(this.chunks).toString('utf8');
    return this.truncated ? `${text}\n[output truncated at ${MAX_CAPTURE_BYTES} bytes]` : text;
  }
}
