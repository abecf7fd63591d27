/**
 * The block device behind the node's NBD relay (issue 16): an NBD client of the engine's socket
 * that outlives the engine. nbdfuse and loop devices cannot be given a new connection, so when
 * the data plane restarts (a rollout, an upgrade, a SIGKILL) and its engine with it, every I/O
 * through them fails for good. With the relay in between, nbdfuse's connection is to the relay,
 * which reconnects to the engine's socket — the data plane's reconciler starts the engine again
 * at the same path — and sends again every request that had no answer yet. (Not started by the
 * node plugin yet: it cannot tell its engine's restart from a fence so far, docs/faults.md.)
 *
 * Sending again is safe: a write the old engine acknowledged is on every replica, so nothing
 * acknowledged depends on the lost connection; a request that got no answer may run twice, and
 * NBD promises no order between requests in flight at the same time, so running it again after
 * the others is a valid order; a FLUSH sent again to the new engine flushes every replica. An
 * engine that answers ESHUTDOWN has left the volume (another engine serves it, or it is stopping):
 * the relay reconnects and asks its successor. Every other answer, errors included, goes back to
 * the client as it came.
 *
 * A request waits at most `maxPauseMs` for an engine (default 120 s, longer than a data-plane
 * restart takes, shorter than a guest kernel's I/O timeouts), then fails with EIO.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { NbdClient, type NbdReply, type NbdRequestSpec } from './client.js';
import { NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO } from './constants.js';
import { type BlockDevice, type NbdErrnoName, NbdIoError } from './device.js';

const ERRNO_NAMES = new Map<number, NbdErrnoName>(
  Object.entries(NBD_ERRNO).flatMap(([name, value]) => (value === 0 ? [] : [[value, name as NbdErrnoName]])),
);

export interface RelayDeviceOptions {
  /** The engine's NBD socket. */
  socketPath: string;
  exportName: string;
  log: Logger;
  maxPauseMs?: number;
  /** Time between two connection attempts while the engine is away. */
  retryMs?: number;
}

export class RelayDevice implements BlockDevice {
  readonly size: number;
  readonly transmissionFlags: number;
  /** Outages so far: how long each lasted from the lost connection to the next one, in ms. */
  readonly outagesMs: number[] = [];
  readonly #options: Required<Omit<RelayDeviceOptions, 'log'>> & { log: Logger };
  #client: NbdClient | undefined;
  #connecting: Promise<NbdClient> | undefined;
  #lostAt: number | undefined;
  #closed = false;

  private constructor(options: RelayDeviceOptions, first: NbdClient) {
    this.#options = { maxPauseMs: 120_000, retryMs: 100, ...options };
    this.#client = first;
    this.size = first.size;
    this.transmissionFlags = first.transmissionFlags;
    this.#watch(first);
  }

  /** Connects once (the engine must be there when the relay starts) and learns the export. */
  static async open(options: RelayDeviceOptions): Promise<RelayDevice> {
    return new RelayDevice(options, await NbdClient.connect(options.socketPath, options.exportName));
  }

  get connected(): boolean {
    return this.#client?.open === true;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const reply = await this.#call({ command: NBD_CMD.READ, offset, length });
    if (reply.data === undefined || reply.data.length !== length)
      throw new NbdIoError('EIO', 'short read from the engine');
    return reply.data;
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    await this.#call({
      command: NBD_CMD.WRITE,
      offset,
      length: data.length,
      payload: data,
      flags: fua ? NBD_CMD_FLAG.FUA : 0,
    });
  }

  async flush(): Promise<void> {
    await this.#call({ command: NBD_CMD.FLUSH, offset: 0, length: 0 });
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.#call({ command: NBD_CMD.TRIM, offset, length, flags: fua ? NBD_CMD_FLAG.FUA : 0 });
  }

  async writeZeroes(offset: number, length: number, fua: boolean, noHole: boolean): Promise<void> {
    const flags = (fua ? NBD_CMD_FLAG.FUA : 0) | (noHole ? NBD_CMD_FLAG.NO_HOLE : 0);
    await this.#call({ command: NBD_CMD.WRITE_ZEROES, offset, length, flags });
  }

  close(): void {
    this.#closed = true;
    this.#client?.close();
  }

  async #call(spec: NbdRequestSpec): Promise<NbdReply> {
    const deadline = Date.now() + this.#options.maxPauseMs;
    for (;;) {
      const client = await this.#connection(deadline);
      let reply: NbdReply;
      try {
        reply = await client.request(spec);
      } catch {
        continue; // the connection died with the request unanswered: send it again on the next one
      }
      if (reply.errno === NBD_ERRNO.ESHUTDOWN) {
        // The engine left the volume; its successor (or the one the reconciler starts) answers.
        this.#drop(client, 'the engine answered ESHUTDOWN');
        await sleep(this.#options.retryMs);
        continue;
      }
      if (reply.errno !== 0) {
        const name = ERRNO_NAMES.get(reply.errno) ?? 'EIO';
        throw new NbdIoError(name, `the engine answered ${name}`);
      }
      return reply;
    }
  }

  #drop(client: NbdClient, why: string): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#lostAt ??= Date.now();
    this.#options.log.warn({ why }, 'lost the engine; reconnecting');
    client.close();
  }

  #watch(client: NbdClient): void {
    void client.closed.then((err) => this.#drop(client, err.message));
  }

  #connection(deadline: number): Promise<NbdClient> {
    if (this.#client?.open) return Promise.resolve(this.#client);
    this.#connecting ??= this.#reconnect(deadline).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #reconnect(deadline: number): Promise<NbdClient> {
    const { socketPath, exportName, retryMs, log } = this.#options;
    this.#lostAt ??= Date.now();
    let lastError = '';
    while (!this.#closed) {
      try {
        const client = await NbdClient.connect(socketPath, exportName);
        if (client.size < this.size) {
          client.close();
          throw new Error(
            `the engine now serves ${client.size} bytes, less than the ${this.size} this relay offers`,
          );
        }
        this.#client = client;
        this.#watch(client);
        const pause = Date.now() - (this.#lostAt ?? Date.now());
        this.#lostAt = undefined;
        this.outagesMs.push(pause);
        log.info({ pauseMs: pause }, 'reconnected to the engine');
        return client;
      } catch (err) {
        lastError = (err as Error).message;
      }
      if (Date.now() > deadline) break;
      await sleep(retryMs);
    }
    throw new NbdIoError('EIO', `no engine on ${socketPath}: ${lastError || 'the relay is closing'}`);
  }
}
