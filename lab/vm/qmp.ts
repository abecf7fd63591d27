/**
 * A QEMU Machine Protocol client over TCP (QMP, docs/interop/qmp-spec in QEMU's source): one
 * JSON object per line each way. The server greets with `{"QMP": ...}`; the client must send
 * `qmp_capabilities` before any other command; every command gets exactly one `return` or
 * `error` reply, in order; `event` messages may arrive at any time between them. Commands are
 * sent one at a time (QMP without the out-of-band capability answers strictly in order), so a
 * reply always belongs to the oldest command still waiting.
 */
import { connect, type Socket } from 'node:net';

/** A QMP `error` reply: `class` is QEMU's error class (GenericError, CommandNotFound, ...). */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    description: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${description}`);
    this.name = 'QmpError';
  }
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

interface Waiting {
  command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

export class QmpClient {
  readonly events: QmpEvent[] = [];
  readonly #socket: Socket;
  readonly #waiting: Waiting[] = [];
  #buffer = '';
  #closed: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.#receive(chunk));
    socket.on('error', (err) => this.#fail(err));
    socket.on('close', () => this.#fail(new Error('QMP connection closed')));
  }

  /** Connects, reads the greeting and negotiates capabilities (none). */
  static async connect(host: string, port: number, timeoutMs = 10_000): Promise<QmpClient> {
    const socket = connect({ host, port });
    const client = new QmpClient(socket);
    const greeting = new Promise<void>((resolve, reject) => {
      client.#waiting.push({ command: '(greeting)', resolve: () => resolve(), reject });
    });
    const timer = setTimeout(
      () => socket.destroy(new Error(`no QMP greeting from ${host}:${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      await greeting;
      await client.execute('qmp_capabilities');
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** Runs one command and returns its `return` value; an `error` reply throws QmpError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<T>((resolve, reject) => {
      this.#waiting.push({ command, resolve: resolve as (value: unknown) => void, reject });
      this.#socket.write(
        `${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`,
      );
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #receive(chunk: string): void {
    this.#buffer += chunk;
    for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line !== '') this.#message(line);
    }
  }

  #message(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#fail(new Error(`QMP sent a line that is not JSON: ${line.slice(0, 200)}`));
      return;
    }
    if (typeof message.event === 'string') {
      this.events.push(message as unknown as QmpEvent);
      return;
    }
    const waiting = this.#waiting.shift();
    if (!waiting) return;
    if ('QMP' in message || 'return' in message) {
      waiting.resolve(message.return);
    } else if (typeof message.error === 'object' && message.error !== null) {
      const error = message.error as { class?: string; desc?: string };
      waiting.reject(new QmpError(waiting.command, error.class ?? 'Unknown', error.desc ?? ''));
    } else {
      waiting.reject(new Error(`QMP ${waiting.command}: unexpected reply ${line.slice(0, 200)}`));
    }
  }

  #fail(err: Error): void {
    this.#closed ??= err;
    for (const waiting of this.#waiting.splice(0)) waiting.reject(err);
  }
}

/** `query-migrate`'s reply (MigrationInfo), the fields read here. */
export interface MigrationInfo {
  status?:
    | 'none'
    | 'setup'
    | 'cancelling'
    | 'cancelled'
    | 'active'
    | 'postcopy-active'
    | 'postcopy-paused'
    | 'postcopy-recover'
    | 'completed'
    | 'failed'
    | 'colo'
    | 'pre-switchover'
    | 'device'
    | 'wait-unplug';
  /** Milliseconds the guest was paused for the switch-over (completed migrations). */
  downtime?: number;
  'expected-downtime'?: number;
  /** Milliseconds from start to completion. */
  'total-time'?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  ram?: { transferred: number; remaining: number; total: number; 'dirty-sync-count'?: number };
}
