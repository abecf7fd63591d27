import { chmod, lstat, mkdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';
import { unixSocketPath } from '../../lib/config.js';
import type { Logger } from '../../lib/log.js';
import { type CsiHandlers, serviceImplementation, VolumeLocks } from './rpc.js';

export interface CsiServiceEntry {
  definition: ServiceDefinition;
  handlers: CsiHandlers;
}

export interface CsiServerOptions {
  /** `unix:///csi/csi.sock` or `/csi/csi.sock`. */
  endpoint: string;
  logger: Logger;
  /** The services this process serves: Identity everywhere, plus Controller or Node. */
  services: readonly CsiServiceEntry[];
}

/**
 * The gRPC server of one Tandem CSI process. All services share one set of
 * volume locks, so a Node call and an Identity call (or, in a combined process,
 * a Controller call) for the same volume exclude each other.
 */
export class CsiServer {
  readonly path: string;
  private readonly server = new Server();
  private readonly logger: Logger;
  private started = false;

  constructor(options: CsiServerOptions) {
    this.path = unixSocketPath(options.endpoint);
    this.logger = options.logger;
    const locks = new VolumeLocks();
    for (const { definition, handlers } of options.services) {
      this.server.addService(
        definition,
        serviceImplementation(definition, handlers, { logger: this.logger, locks }),
      );
    }
  }

  async start(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    await removeStaleSocket(this.path);
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix://${this.path}`, ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      );
    });
    this.started = true;
    // Only the sidecars and kubelet (same pod / root) talk to the socket.
    await chmod(this.path, 0o660);
    this.logger.info({ endpoint: `unix://${this.path}` }, 'CSI server listening');
  }

  /**
   * Lets calls in flight finish for up to graceMs, then cuts the rest off (the
   * sidecars retry them against the next instance; every CSI call is
   * idempotent), and removes the socket.
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.logger.warn(
          { graceMs },
          'CSI calls still running at the end of the grace period; cutting them off',
        );
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await rm(this.path, { force: true });
    this.logger.info({ endpoint: `unix://${this.path}` }, 'CSI server stopped');
  }
}

/**
 * A socket file left by a previous instance (killed, so it could not unlink
 * it) would make bind fail with EADDRINUSE. It is removed only if it is a
 * socket nobody answers on: a live one means another instance is running,
 * and something that is not a socket is not ours to delete.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const stats = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!stats) return;
  if (!stats.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  if (await answers(path)) throw new Error(`another process is serving on ${path}`);
  await rm(path, { force: true });
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
