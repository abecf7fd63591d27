import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type Logger, silentLogger } from '../../lib/log.js';
import { packageRoot } from '../../lib/paths.js';

export interface Extent {
  offset: number;
  length: number;
}

export interface FsUtilOptions {
  /** The tandem-fsutil binary; default: see locateFsUtil(). */
  binary?: string;
  /** Each request fails after this long (the helper itself keeps running). */
  timeoutMs?: number;
  logger?: Logger;
}

/** An error from the helper or about it; `code` is an errno name ('EIO', 'ENOSPC', ...). */
export class FsUtilError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'FsUtilError';
  }
}

interface Pending {
  resolve(reply: Reply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

interface Reply {
  id: number;
  extents?: unknown;
  error?: unknown;
  code?: unknown;
}

interface Refable {
  ref?(): void;
  unref?(): void;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const SETPRIV = '/usr/bin/setpriv';
const STDERR_TAIL_BYTES = 4096;

/**
 * Where tandem-fsutil is: $TANDEM_FSUTIL, else the build in the work tree
 * (scripts/build-native.sh links it there), else whatever PATH has (the image
 * installs it in /usr/local/bin).
 */
export function locateFsUtil(): string {
  const fromEnv = process.env.TANDEM_FSUTIL;
  if (fromEnv) return fromEnv;
  const built = join(packageRoot(), '.cache', 'bin', 'tandem-fsutil');
  return existsSync(built) ? built : 'tandem-fsutil';
}

/**
 * Client of `tandem-fsutil serve`, the helper for the syscalls Node lacks
 * (SEEK_DATA/SEEK_HOLE, PUNCH_HOLE). The child starts on first use, answers
 * many requests concurrently over JSON lines, and is restarted by the next call
 * after it dies. Not lib/service.ts: that one only logs a child's output, and
 * this one talks to it. The child holds the event loop only while requests
 * are pending, so an idle helper never keeps a process alive.
 */
export class FsUtil {
  readonly #binary: string;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  #child: ChildProcessWithoutNullStreams | undefined;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #stderrTail = '';

  constructor(options: FsUtilOptions = {}) {
    this.#binary = options.binary ?? locateFsUtil();
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#logger = options.logger ?? silentLogger();
  }

  /** The helper's process id while it runs (for logs and tests). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** The allocated ranges inside [offset, offset+length), ascending, merged, clipped to the range. */
  async extents(path: string, offset: number, length: number): Promise<Extent[]> {
    const reply = await this.#call('extents', path, offset, length);
    const list = reply.extents;
    if (!Array.isArray(list)) throw this.#protocolError('extents reply without an extents list');
    return list.map((pair: unknown) => {
      if (
        !Array.isArray(pair) ||
        pair.length !== 2 ||
        !pair.every((n) => Number.isSafeInteger(n) && n >= 0)
      ) {
        throw this.#protocolError(`bad extent ${JSON.stringify(pair)}`);
      }
      return { offset: pair[0] as number, length: pair[1] as number };
    });
  }

  /** Deallocates [offset, offset+length) without changing the file size; it then reads as zeroes. */
  async punchHole(path: string, offset: number, length: number): Promise<void> {
    await this.#call('punch', path, offset, length);
  }

  /** Stops the helper (closing its stdin, then SIGKILL after 5 s); a later call starts a new one. */
  async close(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  async #call(op: 'extents' | 'punch', path: string, offset: number, length: number): Promise<Reply> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(
        `fsutil ${op}: offset ${offset} and length ${length} must be non-negative integers`,
      );
    }
    const child = this.#ensureChild();
    const id = this.#nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(id)?.reject(
          new FsUtilError(`tandem-fsutil ${op} ${path}: no answer after ${this.#timeoutMs} ms`, 'ETIMEDOUT'),
        );
      }, this.#timeoutMs);
      if (this.#pending.size === 0) this.#hold(child, true);
      this.#pending.set(id, { resolve, reject, timer });
      child.stdin.write(`${JSON.stringify({ id, op, path, offset, length })}\n`);
    });
    if (reply.error !== undefined) {
      const code = typeof reply.code === 'string' && /^E[A-Z0-9]+$/.test(reply.code) ? reply.code : 'EIO';
      throw new FsUtilError(`tandem-fsutil ${op}: ${String(reply.error)}`, code);
    }
    return reply;
  }

  #ensureChild(): ChildProcessWithoutNullStreams {
    if (this.#child) return this.#child;
    // setpriv makes the kernel kill the helper when this process dies, even by SIGKILL.
    const [command, args] = existsSync(SETPRIV)
      ? [SETPRIV, ['--pdeathsig', 'SIGKILL', '--', this.#binary, 'serve']]
      : [this.#binary, ['serve']];
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child = child;
    this.#stderrTail = '';
    this.#logger.debug({ pid: child.pid, binary: this.#binary }, 'tandem-fsutil started');

    createInterface({ input: child.stdout }).on('line', (line) => this.#onLine(line));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      this.#stderrTail = (this.#stderrTail + text).slice(-STDERR_TAIL_BYTES);
    });
    // A dead child's EPIPE shows up here; 'close' reports it to the callers.
    child.stdin.on('error', () => {});
    child.on('error', (err) => this.#onGone(child, `cannot start ${this.#binary}: ${err.message}`));
    // 'close', not 'exit': it comes after the last reply and stderr line are read.
    child.on('close', (code, signal) =>
      this.#onGone(child, `tandem-fsutil exited (${signal ? `signal ${signal}` : `code ${code}`})`),
    );
    this.#hold(child, false);
    return child;
  }

  #onLine(line: string): void {
    let reply: Reply;
    try {
      reply = JSON.parse(line) as Reply;
    } catch {
      this.#logger.warn({ line: line.slice(0, 200) }, 'tandem-fsutil wrote a line that is not JSON');
      return;
    }
    const pending = typeof reply?.id === 'number' ? this.#settle(reply.id) : undefined;
    if (pending) pending.resolve(reply);
    // Otherwise the request already timed out, or the helper could not parse one of ours.
    else this.#logger.warn({ reply }, 'tandem-fsutil reply matches no pending request');
  }

  #onGone(child: ChildProcessWithoutNullStreams, why: string): void {
    if (this.#child !== child) return;
    this.#child = undefined;
    const tail = this.#stderrTail.trim().split('\n').slice(-3).join('\n');
    const message = tail ? `${why}: ${tail}` : why;
    if (this.#pending.size > 0) this.#logger.warn({ pending: this.#pending.size }, message);
    for (const id of [...this.#pending.keys()]) {
      this.#settle(id)?.reject(new FsUtilError(`${message} (the next request restarts it)`, 'EIO'));
    }
  }

  /** Removes a pending request, and lets the event loop go when none is left. */
  #settle(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    if (!pending) return undefined;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (this.#pending.size === 0 && this.#child) this.#hold(this.#child, false);
    return pending;
  }

  #hold(child: ChildProcessWithoutNullStreams, hold: boolean): void {
    // The pipes are net.Sockets at run time, though typed as plain streams.
    const handles = [child, child.stdin, child.stdout, child.stderr] as unknown as Refable[];
    for (const handle of handles) {
      if (hold) handle.ref?.();
      else handle.unref?.();
    }
  }

  #protocolError(what: string): FsUtilError {
    return new FsUtilError(`tandem-fsutil: ${what}`, 'EIO');
  }
}

let shared: FsUtil | undefined;

/** The process-wide helper the replica stores share. */
export function defaultFsUtil(): FsUtil {
  shared ??= new FsUtil();
  return shared;
}
