/**
 * `tandem share-manager` processes on a CsiStack's nodes, as the controller will run them once it
 * places share managers itself: the engine asked for with ControllerPublishVolume on the node,
 * then the share manager started there. Nodes share this machine's network namespace (CsiStack
 * runs on loopback), so each node has loopback addresses of its own: its share manager listens on
 * 127.0.1.N, its clients connect from 127.0.2.N. A client reconnects to the new address after a
 * move, where in a cluster the volume's Service keeps one address and its EndpointSlice changes.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { releaseShare, shareLayout } from '../../driver/share-manager/share-manager.js';
import { silentLogger } from '../../lib/log.js';
import { Nfs4Client } from '../../lib/nfs4/client.js';
import { Nfs4Session } from '../../lib/nfs4/session.js';
import { packageRoot } from '../../lib/paths.js';
import { waitFor } from '../../lib/readiness.js';
import { Service } from '../../lib/service.js';
import { tandemEntry } from './cli-process.js';
import { retrying } from './csi-client.js';
import type { CsiStack } from './csi-stack.js';
import type { CsiVolumeSteps } from './csi-volume-steps.js';

export const serverAddress = (index: number) => `127.0.1.${index + 1}`;
export const clientAddress = (index: number) => `127.0.2.${index + 1}`;

const answers = (host: string) => Nfs4Session.answers({ host, port: 2049 }, 500);

export class ShareManagers {
  readonly running = new Map<number, Service>();

  constructor(
    private readonly stack: CsiStack,
    private readonly steps: CsiVolumeSteps,
    private readonly volumeId: string,
    private readonly fastFailover: boolean,
    private readonly fsType: 'ext4' | 'xfs' = 'ext4',
  ) {}

  private stateDir(index: number): string {
    return join(this.stack.dir, `share-manager-${this.steps.node(index).name}`);
  }

  /** Where the share manager on node `index` mounts the volume's filesystem. */
  mountOf(index: number): string {
    return shareLayout(this.stateDir(index), this.volumeId).mount;
  }

  /** Starts the share manager on node `index` (its engine must be published there); resolves once NFS answers. */
  async start(index: number): Promise<Service> {
    const node = this.steps.node(index);
    // Readiness below is "NFS answers at the address": that must not be someone else's server.
    if (await answers(serverAddress(index)))
      throw new Error(`an NFS server already answers at ${serverAddress(index)}:2049; stop it first`);
    const logFile = join(this.stack.dir, `share-manager-${node.name}.log`);
    const service = new Service({
      name: `share-manager-${node.name}`,
      command: process.execPath,
      args: [
        ...tandemEntry(),
        'share-manager',
        '--volume',
        this.volumeId,
        '--node-id',
        node.name,
        '--bind-address',
        serverAddress(index),
        '--engine-socket-dir',
        node.engineDir,
        '--state-dir',
        this.stateDir(index),
        ...(this.fastFailover ? ['--fast-failover'] : []),
        '--fs-type',
        this.fsType,
        // The apiserver refuses loopback addresses in EndpointSlices, and these share managers
        // listen on loopback: the endpoint has its own suite (share-manager-endpoint.test.ts).
        '--no-endpoint',
        '--metrics-address',
        `${serverAddress(index)}:9504`,
        '--log-level',
        'debug',
      ],
      cwd: packageRoot(),
      logFile,
    });
    this.running.set(index, service);
    try {
      await waitFor(
        `share manager on ${node.name} serving NFS`,
        () => answers(serverAddress(index)),
        120_000,
        () => service.running,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${(await readFile(logFile, 'utf8')).slice(-3000)}`);
    }
    return service;
  }

  /** The controller's part until it does this itself: the volume's engine leaves one node for another. */
  async moveEngine(from: number, to: number): Promise<void> {
    await retrying(() =>
      this.steps.controller.call('Controller', 'ControllerUnpublishVolume', {
        volume_id: this.volumeId,
        node_id: this.steps.node(from).name,
      }),
    );
    await this.steps.publish(this.volumeId, this.steps.node(to));
  }

  /** A client on node `from` of the share manager on node `server`, renewing its lease. */
  async client(
    server: number,
    from: number,
    ownerId: string,
    options: { verifier?: Buffer; reclaiming?: boolean } = {},
  ): Promise<Nfs4Client> {
    const c = await Nfs4Client.connect({
      endpoint: { host: serverAddress(server), port: 2049, localAddress: clientAddress(from) },
      ownerId,
      verifier: options.verifier,
      reclaiming: options.reclaiming,
      timeoutMs: 10_000,
    });
    c.keepAlive(3_000);
    return c;
  }

  /** Stops every share manager, then releases what killed ones left on their nodes. */
  async destroy(): Promise<void> {
    for (const service of this.running.values()) await service.stop();
    this.running.clear();
    for (let index = 0; index < this.stack.nodes.length; index++) {
      const node = this.steps.node(index);
      await releaseShare({
        volumeId: this.volumeId,
        nodeId: node.name,
        stateDir: this.stateDir(index),
        engineSocketDir: node.engineDir,
        frontend: 'auto',
        logger: silentLogger(),
      }).catch(() => undefined);
    }
  }
}
