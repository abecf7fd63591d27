import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { type Logger, silentLogger } from './log.js';
import { redactCommandLine } from './redact.js';

export interface ServiceOptions {
  /** Short name for logs and errors, e.g. "etcd". */
  name: string;
  command: string;
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Append stdout and stderr here; without it they are discarded. */
  logFile?: string;
  secrets?: readonly string[];
  logger?: Logger;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
}

export interface ServiceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const SETPRIV = '/usr/bin/setpriv';

/**
 * A long-running child process (etcd, kube-apiserver, a data-plane server on a
 * simulated node). It is started under `setpriv --pdeathsig SIGKILL`, so the
 * kernel kills it when the process that started it dies — even by SIGKILL —
 * and a crashed test run never leaves servers behind.
 */
export class Service {
  readonly exited: Promise<ServiceExit>;
  private readonly child: ChildProcess;
  private exitInfo: ServiceExit | undefined;

  constructor(private readonly options: ServiceOptions) {
    const logger = options.logger ?? silentLogger();
    const out = options.logFile ? openSync(options.logFile, 'a') : 'ignore';
    const [command, args] = existsSync(SETPRIV)
      ? [SETPRIV, ['--pdeathsig', 'SIGKILL', '--', options.command, ...options.args]]
      : [options.command, [...options.args]];
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', out, out],
    });
    if (typeof out === 'number') closeSync(out);
    logger.debug(
      {
        service: options.name,
        pid: this.child.pid,
        command: redactCommandLine(options.command, options.args, options.secrets ?? []),
      },
      'service started',
    );
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        logger.error({ service: options.name, err: err.message }, 'service could not start');
        this.exitInfo = { code: -1, signal: null };
        resolve(this.exitInfo);
      });
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        logger.debug({ service: options.name, code, signal }, 'service exited');
        resolve(this.exitInfo);
      });
    });
  }

  get name(): string {
    return this.options.name;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the process is gone. */
  async stop(): Promise<ServiceExit> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    const grace = this.options.stopGraceMs ?? 5_000;
    const timer = setTimeout(() => this.child.kill('SIGKILL'), grace);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  /** Immediate SIGKILL, as a crash would be (used by failure tests). */
  async kill(): Promise<ServiceExit> {
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }
}
