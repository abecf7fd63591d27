/**
 * The data plane on simulated nodes, as separate processes: a real kube-apiserver on the bridge
 * address with the Volume CRD, one `tandem dataplane` (replica server) per replica node in its
 * network namespace, a Volume whose status lists those replicas, and `tandem engine` processes
 * started on any node on demand. Clients (fio, nbdcopy) run on the host against the engine's unix
 * socket: sockets are files, so they cross network namespaces.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api } from '@kubernetes/client-node';
import { CREDENTIAL_KEY, credentialSecretName } from '../../driver/dataplane/credentials.js';
import { ReplicaStore } from '../../driver/replica/store.js';
import { type ControlPlane, startControlPlane } from '../../lab/control-plane.js';
import { SimulatedNetwork as Network, type SimulatedNetwork, type SimulatedNode } from '../../lab/netns.js';
import { API_VERSION, VOLUME_KIND, type Volume } from '../../lib/api/volume.js';
import { run } from '../../lib/exec.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { installCrds } from '../../lib/kube/manifests.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { manifestsDir, packageRoot } from '../../lib/paths.js';
import { canConnect, waitFor } from '../../lib/readiness.js';
import type { Service } from '../../lib/service.js';
import { tandemEntry } from './cli-process.js';

export const REPLICA_PORT = 9500;
export const DATAPLANE_ADMIN_PORT = 9505;

export interface SimDataPlaneOptions {
  /** Simulated nodes; replicas go on the first `replicas` of them. */
  nodes: number;
  replicas: number;
  sizeBytes: number;
  volume?: string;
  /** Engine flags added to every engine started (e.g. a short --request-timeout). */
  engineArgs?: string[];
  /**
   * Run the data planes with --reconcile (registration Leases and credential Secrets in this
   * namespace), as the DaemonSet does, so a CSI controller can place volumes on them; the hand-made
   * volume gets its Secret there so the reconcilers keep its replicas.
   */
  reconcileNamespace?: string;
  /**
   * Put each replica node's data directory on a tmpfs of this many bytes (mounted before its
   * server starts, unmounted by destroy()), so a test can make a replica's disk full (the fault
   * campaign fills it with a ballast file) without touching the host's own disk.
   */
  tmpfsBytes?: number;
}

export interface EngineProcess {
  node: SimulatedNode;
  socket: string;
  uri: string;
  adminAddress: string;
  service: Service;
  logFile: string;
}

export class SimDataPlane {
  readonly volume: string;
  readonly volumes: VolumeClient;
  readonly replicaServices: Map<string, Service>;
  /** Engines started by this volume and its siblings (socket and admin port numbers). */
  readonly #counter: { engines: number };
  /** What start() created and destroy() removes (attach() leaves them to their owner). */
  #owned: { controlPlane: ControlPlane; dir: string } | undefined;

  private constructor(
    readonly network: SimulatedNetwork,
    readonly kubeconfigPath: string,
    readonly dir: string,
    readonly credentialFile: string,
    readonly options: SimDataPlaneOptions,
    shared?: { replicaServices: Map<string, Service>; counter: { engines: number } },
  ) {
    this.replicaServices = shared?.replicaServices ?? new Map();
    this.#counter = shared?.counter ?? { engines: 0 };
    this.volume = options.volume ?? 'vol-sim';
    this.volumes = new VolumeClient(loadKubeConfig(kubeconfigPath));
  }

  static async start(options: SimDataPlaneOptions): Promise<SimDataPlane> {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-simdp-'));
    const network = await Network.create({ nodes: options.nodes });
    let controlPlane: ControlPlane | undefined;
    try {
      controlPlane = await startControlPlane({
        dir: join(dir, 'control-plane'),
        bindAddress: network.hostAddress,
      });
      await installCrds(loadKubeConfig(controlPlane.kubeconfigPath), join(manifestsDir(), 'crds'));
      const started = controlPlane;
      const sim = await SimDataPlane.attach({
        network,
        kubeconfigPath: controlPlane.kubeconfigPath,
        dir,
        options,
      });
      sim.#owned = { controlPlane: started, dir };
      return sim;
    } catch (err) {
      await controlPlane?.stop().catch(() => undefined);
      await network.destroy();
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * The data plane on an existing network and cluster (the lab's): a credential, replicas and
   * their servers, the Volume. Its processes end with the network; files stay in `dir`.
   */
  static async attach(where: {
    network: SimulatedNetwork;
    kubeconfigPath: string;
    dir: string;
    options: SimDataPlaneOptions;
  }): Promise<SimDataPlane> {
    await mkdir(where.dir, { recursive: true });
    const credentialFile = join(where.dir, 'credential');
    await writeFile(credentialFile, randomBytes(32), { mode: 0o600 });
    const sim = new SimDataPlane(
      where.network,
      where.kubeconfigPath,
      where.dir,
      credentialFile,
      where.options,
    );
    await sim.#createVolume();
    return sim;
  }

  /**
   * Another volume on the same nodes and replica servers (a server serves every replica in its
   * data directory): its own credential, replicas and Volume resource. Engines started through
   * the returned object serve it. destroy() of the first one ends everything.
   */
  async withVolume(volume: string): Promise<SimDataPlane> {
    const credentialFile = join(this.dir, `credential-${volume}`);
    await writeFile(credentialFile, randomBytes(32), { mode: 0o600 });
    const sibling = new SimDataPlane(
      this.network,
      this.kubeconfigPath,
      this.dir,
      credentialFile,
      { ...this.options, volume },
      { replicaServices: this.replicaServices, counter: this.#counter },
    );
    await sibling.#createVolume();
    return sibling;
  }

  get replicaNodes(): SimulatedNode[] {
    return this.network.nodes.slice(0, this.options.replicas);
  }

  dataDir(node: SimulatedNode): string {
    return join(this.dir, 'data', node.name);
  }

  /** Where the node's data plane puts engine sockets (--reconcile), and its node plugin looks. */
  engineSocketDir(node: SimulatedNode): string {
    return join(this.dir, 'engines', node.name);
  }

  async #createVolume(): Promise<void> {
    const secret = await readFile(this.credentialFile);
    for (const node of this.replicaNodes) {
      await mkdir(this.dataDir(node), { recursive: true });
      const tmpfs = this.options.tmpfsBytes;
      if (tmpfs !== undefined && !this.replicaServices.has(node.name))
        await run('mount', ['-t', 'tmpfs', '-o', `size=${tmpfs}`, 'tandem-sim-data', this.dataDir(node)]);
      await (
        await ReplicaStore.create(this.dataDir(node), {
          volume: this.volume,
          sizeBytes: this.options.sizeBytes,
          secret,
        })
      ).close();
      if (!this.replicaServices.has(node.name)) await this.startReplicaServer(node);
    }
    const namespace = this.options.reconcileNamespace;
    if (namespace !== undefined) {
      await loadKubeConfig(this.kubeconfigPath)
        .makeApiClient(CoreV1Api)
        .createNamespacedSecret({
          namespace,
          body: {
            metadata: { name: credentialSecretName(this.volume) },
            data: { [CREDENTIAL_KEY]: secret.toString('base64') },
          },
        });
    }
    const created = await this.volumes.create({
      apiVersion: API_VERSION,
      kind: VOLUME_KIND,
      metadata: { name: this.volume },
      spec: {
        sizeBytes: this.options.sizeBytes,
        numberOfReplicas: this.options.replicas,
        accessMode: 'ReadWriteMany',
        volumeMode: 'Block',
        migratable: true,
      },
    } as Volume);
    await this.volumes.replaceStatus({
      ...created,
      status: {
        epoch: 1,
        replicas: this.replicaNodes.map((n) => ({
          node: n.name,
          address: `${n.address}:${REPLICA_PORT}`,
          mode: 'ReadWrite' as const,
        })),
        engines: [],
      },
    });
  }

  /** Starts (or restarts) the replica server of `node` and waits until it accepts connections. */
  async startReplicaServer(node: SimulatedNode): Promise<void> {
    const service = this.network.spawn(node, {
      name: 'dataplane',
      command: process.execPath,
      args: [
        ...tandemEntry(),
        'dataplane',
        '--node-id',
        node.name,
        '--listen',
        `${node.address}:${REPLICA_PORT}`,
        '--data-dir',
        this.dataDir(node),
        '--metrics-address',
        `${node.address}:9503`,
        '--admin-address',
        `${node.address}:${DATAPLANE_ADMIN_PORT}`,
        '--kubeconfig',
        this.kubeconfigPath,
        ...(this.options.reconcileNamespace === undefined
          ? []
          : [
              '--reconcile',
              '--namespace',
              this.options.reconcileNamespace,
              '--advertise-address',
              `${node.address}:${REPLICA_PORT}`,
              '--engine-socket-dir',
              this.engineSocketDir(node),
            ]),
      ],
      cwd: packageRoot(),
      logFile: join(this.dir, `${node.name}-dataplane.log`),
    });
    this.replicaServices.set(node.name, service);
    await waitFor(
      `${service.name} listening on ${node.address}:${REPLICA_PORT}`,
      () => canConnect({ host: node.address, port: REPLICA_PORT }),
      30_000,
      () => service.running,
    );
  }

  /** Starts `tandem engine` on `node`; resolves once its NBD socket accepts connections. */
  async startEngine(node: SimulatedNode, extraArgs: string[] = []): Promise<EngineProcess> {
    const n = ++this.#counter.engines;
    const socket = join(this.dir, `engine-${n}.sock`);
    const adminPort = 9510 + n;
    const logFile = join(this.dir, `${node.name}-engine-${n}.log`);
    const service = this.network.spawn(node, {
      name: `engine-${n}`,
      command: process.execPath,
      args: [
        ...tandemEntry(),
        'engine',
        '--node-id',
        node.name,
        '--volume',
        this.volume,
        '--credential-file',
        this.credentialFile,
        '--kubeconfig',
        this.kubeconfigPath,
        '--nbd-socket',
        socket,
        '--metrics-address',
        `${node.address}:${adminPort}`,
        ...(this.options.engineArgs ?? []),
        ...extraArgs,
      ],
      cwd: packageRoot(),
      logFile,
    });
    try {
      await waitFor(
        `${service.name} serving NBD on ${socket}`,
        () => canConnect({ path: socket }),
        60_000,
        () => service.running,
      );
    } catch (err) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`${(err as Error).message}\n${log.slice(-2000)}`);
    }
    return {
      node,
      socket,
      uri: `nbd+unix:///${this.volume}?socket=${socket}`,
      adminAddress: `${node.address}:${adminPort}`,
      service,
      logFile,
    };
  }

  /**
   * Starts the volume's engine inside `node`'s data-plane process (POST /engines on its admin
   * address), where it reaches the local replica directly.
   */
  async startHostedEngine(node: SimulatedNode, spec: Record<string, unknown> = {}): Promise<EngineProcess> {
    const socket = join(this.dir, `hosted-${++this.#counter.engines}.sock`);
    const adminAddress = `${node.address}:${DATAPLANE_ADMIN_PORT}`;
    const res = await fetch(`http://${adminAddress}/engines`, {
      method: 'POST',
      body: JSON.stringify({
        volume: this.volume,
        credentialFile: this.credentialFile,
        nbdSocket: socket,
        ...spec,
      }),
    });
    if (!res.ok) throw new Error(`POST /engines on ${node.name}: ${res.status} ${await res.text()}`);
    const service = this.replicaServices.get(node.name);
    if (service === undefined) throw new Error(`no data-plane process on ${node.name}`);
    return {
      node,
      socket,
      uri: `nbd+unix:///${this.volume}?socket=${socket}`,
      adminAddress,
      service,
      logFile: join(this.dir, `${node.name}-dataplane.log`),
    };
  }

  async stopHostedEngine(engine: EngineProcess): Promise<void> {
    const res = await fetch(`http://${engine.adminAddress}/engines/stop`, {
      method: 'POST',
      body: JSON.stringify({ volume: this.volume }),
    });
    if (!res.ok) throw new Error(`POST /engines/stop: ${res.status} ${await res.text()}`);
  }

  async record(): Promise<Volume> {
    return this.volumes.get(this.volume);
  }

  /** Polls the Volume until `check` holds; returns it. */
  async waitForRecord(check: (v: Volume) => boolean, timeoutMs: number, what: string): Promise<Volume> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.record();
      if (check(v)) return v;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; status: ${JSON.stringify(v.status)}`);
      await sleep(250);
    }
  }

  async destroy(): Promise<void> {
    await this.network.destroy();
    if (this.#owned === undefined) return;
    if (this.options.tmpfsBytes !== undefined)
      for (const node of this.replicaNodes)
        await run('umount', [this.dataDir(node)], { allowFailure: true, timeoutMs: 30_000 });
    await this.#owned.controlPlane.stop().catch(() => undefined);
    // TANDEM_KEEP_TEST_STATE=1 keeps the process logs and replica files for a post-mortem.
    if (process.env.TANDEM_KEEP_TEST_STATE === '1') process.stderr.write(`kept ${this.dir}\n`);
    else await rm(this.dir, { recursive: true, force: true });
  }
}
