/**
 * The CSI Node service for real, for test/integration/csi-node.test.ts: node plugins (the node
 * service behind a real gRPC server on a unix socket, with a real grpc-js client), each with its own
 * state dir, sharing one engine socket dir in a temp dir; the volume's engine in this process over a
 * loopback data plane (startLoopbackDataPlane). `destroy()` removes whatever a test left (mounts,
 * read-only loops, attachments) and says what could not be removed.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, credentials } from '@grpc/grpc-js';
import { engineSocketPath } from '../../driver/csi/node-topology.js';
import { csiClients, csiServices } from '../../driver/csi/proto.js';
import { CsiServer } from '../../driver/csi/server.js';
import { detachBlockDevice } from '../../driver/node/block-device.js';
import { unmount } from '../../driver/node/mounts.js';
import { nodeHandlers } from '../../driver/node/service.js';
import { run } from '../../lib/exec.js';
import { createLogger, silentLogger } from '../../lib/log.js';
import { type LoopbackDataPlane, type LoopbackEngine, startLoopbackDataPlane } from './dataplane.js';
import { loopDevices, loopsUnder, mountsUnder } from './host-inspection.js';

export class NodePluginFixture {
  /** The data plane of the last startVolume. */
  dp: LoopbackDataPlane | undefined;
  readonly #servers: CsiServer[] = [];
  readonly #clients: Client[] = [];
  readonly #stateDirs: string[] = [];
  readonly #volumes: string[] = [];

  private constructor(
    /** The temp dir everything of the test lives in. */
    readonly dir: string,
    /** Where engines put their NBD sockets (engineSocketPath), shared by every node plugin. */
    readonly engineDir: string,
  ) {}

  static async create(): Promise<NodePluginFixture> {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-csi-node-'));
    const engineDir = join(dir, 'engines');
    await mkdir(engineDir);
    return new NodePluginFixture(dir, engineDir);
  }

  /** The state dir of node `name` (`state-<name>` in the temp dir). */
  stateDir(name: string): string {
    return join(this.dir, `state-${name}`);
  }

  /** Starts the node service of node `name` (nbdfuse frontend) and returns a client of it. */
  async startNode(name: string): Promise<Client> {
    const stateDir = this.stateDir(name);
    this.#stateDirs.push(stateDir);
    const socket = join(this.dir, `${name}.sock`);
    const server = new CsiServer({
      endpoint: `unix://${socket}`,
      logger: process.env.TANDEM_TEST_LOG ? createLogger('node', 'warn') : silentLogger(),
      services: [
        {
          definition: csiServices().Node,
          handlers: nodeHandlers({
            nodeId: name,
            stateDir,
            engineSocketDir: this.engineDir,
            frontend: 'nbdfuse',
            engineWaitMs: 1500,
          }),
        },
      ],
    });
    this.#servers.push(server);
    await server.start();
    const client = new (csiClients().Node)(`unix://${socket}`, credentials.createInsecure());
    this.#clients.push(client);
    return client;
  }

  /** Stops every node service started so far (their clients stay open), as a plugin restart does. */
  async stopNodes(): Promise<void> {
    for (const server of this.#servers.splice(0)) await server.stop(100);
  }

  /** A two-replica volume and its engine as node-1's, serving NBD at engineSocketPath. */
  async startVolume(volume: string, sizeBytes: number): Promise<LoopbackEngine> {
    this.#volumes.push(volume);
    this.dp = await startLoopbackDataPlane({ replicas: 2, sizeBytes, volume });
    return this.dp.startEngine('node-1', {
      socketDir: this.engineDir,
      extra: { nbdSocket: engineSocketPath(this.engineDir, volume) },
    });
  }

  /**
   * ControllerExpandVolume's effect on the data plane: every replica grows, then the engine;
   * returns what the engine's resize reports.
   */
  async growVolume(engine: LoopbackEngine, sizeBytes: number) {
    const dp = this.dp;
    if (!dp) throw new Error('no volume started');
    for (const replica of dp.replicas) await replica.server.registry.grow(dp.volume, sizeBytes);
    await dp.store.set({ ...(await dp.store.read()), sizeBytes });
    return engine.host.resize();
  }

  /**
   * Stops the node services and removes whatever a failed test left: mounts under the temp dir
   * outside the attachments (deepest first), read-only loops, then the attachments themselves,
   * then the data plane and the temp dir. Returns the mounts and loop devices still there before
   * the temp dir went (both empty when all went well).
   */
  async destroy(): Promise<{ mounts: string[]; loops: string[] }> {
    const dir = this.dir;
    for (const client of this.#clients.splice(0)) client.close();
    await this.stopNodes();
    const ours = await mountsUnder(`${dir}/`);
    for (const m of ours.reverse()) if (!m.mountPoint.includes('/devices/')) await unmount(m.mountPoint);
    const ourLoops = new Set(await loopsUnder(dir));
    const roLoops = (await loopDevices()).filter((d) => ourLoops.has(d.backFile));
    for (const l of roLoops) await run('losetup', ['-d', l.name], { allowFailure: true });
    for (const stateDir of this.#stateDirs.splice(0))
      for (const volume of this.#volumes)
        await detachBlockDevice({ stateDir: join(stateDir, 'devices'), volumeId: volume }).catch(
          () => undefined,
        );
    await this.dp?.destroy();
    const left = await mountsUnder(dir);
    const loops = await loopsUnder(dir);
    await rm(dir, { recursive: true, force: true });
    return { mounts: left.map((m) => m.mountPoint), loops };
  }
}
