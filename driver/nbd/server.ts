// The NBD server the engine puts in front of a volume: one export, over a unix socket (the node's
// kernel client or nbdfuse) and/or TCP. Connection handling lives in connection.ts; this file owns
// the listeners, the set of connections and an orderly shutdown.

import { chmod, lstat, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { type Logger, silentLogger } from '../../lib/log.js';
import { NbdConnection, type RequestHook } from './connection.js';
import type { BlockDevice } from './device.js';
import { GROWABLE_EXPORT_BYTES, growableExportName } from './growable.js';
import { type ExportConfig, type HandshakeConfig, HandshakeParser } from './handshake.js';

export type { RequestHook } from './connection.js';
export { type BlockDevice, type NbdErrnoName, NbdIoError, type NbdOp } from './device.js';

export interface NbdServerOptions {
  exportName: string;
  /** Export size in bytes; a safe integer (volumes stay below 2^53 bytes). */
  size: number;
  device: BlockDevice;
  /** Advertise CAN_MULTI_CONN: only when FLUSH on one connection covers writes done on all. */
  multiConn: boolean;
  readOnly?: boolean;
  /**
   * Also offer the export as `<exportName>@growable` (growable.ts): advertised with
   * GROWABLE_EXPORT_BYTES, requests refused past `size` as it is at the time of each request, so
   * a connection that stays open follows resize(). Not listed by NBD_OPT_LIST.
   */
  growable?: boolean;
  /** Largest READ/WRITE accepted and advertised; default 32 MiB. */
  maxPayload?: number;
  description?: string;
  logger?: Logger;
  onRequest?: RequestHook;
  /** Per connection: stop reading while this many requests execute; default 128 (fio uses 32). */
  maxInFlight?: number;
  /** Per connection: stop reading past this many bytes of executing requests and unsent replies. */
  maxQueuedBytes?: number;
  /** A client that has not finished the handshake by then is dropped; default 30 s. */
  handshakeTimeoutMs?: number;
  /** How long close() lets executing requests finish before cutting connections; default 5 s. */
  closeTimeoutMs?: number;
}

export const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;
const DEFAULT_MAX_IN_FLIGHT = 128;
const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;
const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
/** Dead TCP peers (a node gone, a cable pulled) are noticed by keepalive rather than never. */
const TCP_KEEPALIVE_MS = 10_000;

export class NbdServer {
  /** Called after every executed request (not for refused ones); may be set at any time. */
  onRequest: RequestHook | undefined;
  private readonly options: NbdServerOptions;
  /** Replaced (never changed in place) by resize(): a connection keeps the one it started with. */
  private handshake: HandshakeConfig;
  private readonly log: Logger;
  private readonly listeners: Server[] = [];
  private readonly live = new Set<NbdConnection>();
  private nextId = 1;
  private closing: Promise<void> | undefined;

  constructor(options: NbdServerOptions) {
    if (!Number.isSafeInteger(options.size) || options.size < 0) {
      throw new RangeError('size must be a non-negative safe integer');
    }
    this.options = options;
    this.onRequest = options.onRequest;
    this.log = options.logger ?? silentLogger();
    const exportConfig = {
      size: BigInt(options.size),
      readOnly: options.readOnly === true,
      description: options.description,
    };
    // HandshakeParser validates this (maxPayload range, string lengths): fail here, not per client.
    this.handshake = {
      exports: this.exports(exportConfig),
      multiConn: options.multiConn,
      maxPayload: options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
    };
    new HandshakeParser(this.handshake);
  }

  /** The export map for the volume's export `config`: itself, and its growable twin if asked for. */
  private exports(config: ExportConfig): Map<string, ExportConfig> {
    const exports = new Map([[this.options.exportName, config]]);
    if (this.options.growable === true) {
      const size = BigInt(Math.max(GROWABLE_EXPORT_BYTES, this.options.size));
      exports.set(growableExportName(this.options.exportName), {
        ...config,
        size,
        hidden: true,
        // Read per request: the size new connections to the volume's export are offered now.
        limit: () => this.exportConfig().size,
      });
    }
    return exports;
  }

  /** The export size new connections are offered. */
  get size(): number {
    return Number(this.exportConfig().size);
  }

  /**
   * Grows the export: new connections negotiate `size` and may use all of it. Connections already
   * in transmission keep the size they negotiated, and their requests are checked against it, since
   * NBD has no way to tell a client its export changed (it reconnects to see the new size). The
   * device must already serve `size` bytes. A smaller size throws: volumes never shrink.
   * Connections to the growable export (if offered) may use the new size at once.
   */
  resize(size: number): void {
    const current = this.exportConfig();
    if (!Number.isSafeInteger(size) || BigInt(size) < current.size)
      throw new RangeError(`export size ${size} is not a safe integer of at least ${current.size}`);
    this.handshake = { ...this.handshake, exports: this.exports({ ...current, size: BigInt(size) }) };
  }

  private exportConfig(): ExportConfig {
    const config = this.handshake.exports.get(this.options.exportName);
    if (config === undefined) throw new Error('the export is missing from the handshake configuration');
    return config;
  }

  /** Open connections, including those still negotiating. */
  get connections(): number {
    let count = 0;
    for (const connection of this.live) if (connection.open) count++;
    return count;
  }

  /** Listens on a unix socket, replacing a stale socket file; the socket is mode 0660. */
  async listenUnix(path: string): Promise<void> {
    const existing = await lstat(path).catch(() => undefined);
    if (existing) {
      // Only ever delete a socket: a path that holds anything else is a configuration mistake.
      if (!existing.isSocket()) throw new Error(`${path} exists and is not a socket`);
      await rm(path, { force: true });
    }
    const server = this.createListener(false);
    await listen(server, (done) => server.listen(path, done));
    // Until this chmod the umask applies (0755 under the usual 022): nobody else can connect.
    await chmod(path, 0o660);
    this.log.info({ path, export: this.options.exportName }, 'NBD server listening');
  }

  /** Listens on TCP; port 0 picks a free port. Returns the bound port. */
  async listenTcp(host: string, port: number): Promise<number> {
    const server = this.createListener(true);
    await listen(server, (done) => server.listen({ host, port }, done));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('TCP listener has no port');
    this.log.info({ host, port: address.port, export: this.options.exportName }, 'NBD server listening');
    return address.port;
  }

  /**
   * Stops accepting, lets executing requests finish and reply (at most closeTimeoutMs), then cuts
   * what is left. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const listenersClosed = this.listeners.map(
      (server) => new Promise<void>((resolve) => server.close(() => resolve())),
    );
    const connections = [...this.live];
    for (const connection of connections) connection.shutdown();
    const timeoutMs = this.options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    });
    const finished = Promise.all(connections.map((c) => c.done)).then(() => false);
    if (await Promise.race([finished, expired])) {
      this.log.warn({ timeoutMs }, 'NBD requests still executing at close; cutting connections');
    }
    clearTimeout(timer);
    for (const connection of connections) connection.destroy();
    await Promise.all(listenersClosed);
  }

  private createListener(tcp: boolean): Server {
    // allowHalfOpen: a client that shuts down its sending side still gets replies to what it sent.
    const server = createServer({ allowHalfOpen: true, noDelay: tcp }, (socket) => this.accept(socket, tcp));
    server.on('error', (err) => this.log.error({ err }, 'NBD listener error'));
    this.listeners.push(server);
    return server;
  }

  private accept(socket: Socket, tcp: boolean): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (tcp) socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    const id = this.nextId++;
    const logger = this.log.child({ conn: id, ...(tcp ? { peer: socket.remoteAddress } : {}) });
    const connection = new NbdConnection(socket, {
      device: this.options.device,
      handshake: this.handshake,
      maxInFlight: this.options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      maxQueuedBytes: this.options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
      handshakeTimeoutMs: this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      lingerMs: this.options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS,
      logger,
      hooks: this,
    });
    this.live.add(connection);
    void connection.done.then(() => this.live.delete(connection));
  }
}

/** server.listen reports failure through 'error', success through its callback. */
function listen(server: Server, start: (done: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.close();
      reject(err);
    };
    server.once('error', onError);
    start(() => {
      server.off('error', onError);
      resolve();
    });
  });
}
