/**
 * The per-node replica server (`tandem dataplane`): serves every replica stored under one data
 * directory to engines over TCP with the TDRP protocol (protocol.ts), one ReplicaSession per
 * connection.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { FsUtil } from './fsutil.js';
import { ReplicaServerMetrics } from './metrics.js';
import { ReplicaSession } from './session.js';
import { VolumeRegistry } from './volume-registry.js';

export interface ReplicaServerOptions {
  dataDir: string;
  log: Logger;
  fsutil?: FsUtil;
  metrics?: ReplicaServerMetrics;
}

export class ReplicaServer {
  readonly registry: VolumeRegistry;
  readonly metrics: ReplicaServerMetrics;
  readonly #log: Logger;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  constructor(options: ReplicaServerOptions) {
    this.#log = options.log;
    this.metrics = options.metrics ?? new ReplicaServerMetrics();
    this.registry = new VolumeRegistry(options.dataDir, options.log, options.fsutil);
    this.#server = createServer({ noDelay: true }, (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      new ReplicaSession(socket, this.registry, this.metrics, this.#log);
    });
  }

  /** Listens on host:port (port 0 picks one); resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        const address = this.#server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : port);
      });
    });
  }

  get connections(): number {
    return this.#sockets.size;
  }

  /** Stops accepting, ends every connection, closes the replicas. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    await this.registry.closeAll();
  }
}
