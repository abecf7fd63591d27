/**
 * The whole driver as real processes on this machine, against the shared test apiserver: one
 * `tandem controller`, and per simulated node a `tandem dataplane --reconcile` (replica server on
 * its own loopback port, engines) and a `tandem node` plugin. Each stack gets its own namespace
 * for node Leases and credential Secrets, so stacks of parallel test files never see each other's
 * nodes. Processes can be killed and restarted individually (restart-safety tests).
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { freePort } from '../../lib/ports.js';
import { canConnect, waitFor } from '../../lib/readiness.js';
import { exitOf, spawnTandem } from './cli-process.js';
import { TEST_KUBECONFIG_ENV, testKubeConfig, uniqueName } from './cluster.js';

export interface StackNode {
  name: string;
  dataDir: string;
  engineDir: string;
  stateDir: string;
  nodeSocket: string;
  replicaPort: number;
}

/** Extra command-line arguments for the stack's processes (e.g. shorter timings), appended to the defaults. */
export interface CsiStackOptions {
  controllerArgs?: readonly string[];
  dataplaneArgs?: readonly string[];
  nodeArgs?: readonly string[];
  migratorArgs?: readonly string[];
}

type Role = 'controller' | 'migrator' | `migrator:${string}` | `dataplane:${string}` | `node:${string}`;

export class CsiStack {
  readonly dir: string;
  readonly namespace: string;
  readonly controllerSocket: string;
  readonly nodes: StackNode[] = [];
  readonly #children = new Map<Role, ChildProcessWithoutNullStreams>();
  readonly #kubeconfig: string;
  readonly #options: CsiStackOptions;
  readonly #migratorMetrics = new Map<string, number>();

  private constructor(dir: string, namespace: string, options: CsiStackOptions) {
    this.dir = dir;
    this.#options = options;
    this.namespace = namespace;
    this.controllerSocket = join(dir, 'controller.sock');
    const kubeconfig = process.env[TEST_KUBECONFIG_ENV];
    if (!kubeconfig) throw new Error(`${TEST_KUBECONFIG_ENV} is not set`);
    this.#kubeconfig = kubeconfig;
  }

  /**
   * Starts the controller and `nodeCount` nodes named `<prefix>-1..n`; waits until all serve.
   * `options` adds arguments to every start (and restart) of a process of that kind.
   */
  static async start(
    nodeCount: number,
    prefix = uniqueName('csi'),
    options: CsiStackOptions = {},
  ): Promise<CsiStack> {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-csi-'));
    const stack = new CsiStack(dir, prefix, options);
    const core = testKubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: stack.namespace } } });
    try {
      for (let i = 1; i <= nodeCount; i++) {
        const name = `${prefix}-${i}`;
        const nodeDir = join(dir, name);
        stack.nodes.push({
          name,
          dataDir: join(nodeDir, 'data'),
          engineDir: join(nodeDir, 'engines'),
          stateDir: join(nodeDir, 'node-state'),
          nodeSocket: join(nodeDir, 'node.sock'),
          replicaPort: await freePort(),
        });
        mkdirSync(join(nodeDir, 'data'), { recursive: true });
      }
      await Promise.all([stack.startController(), ...stack.nodes.map((n) => stack.startNode(n.name))]);
    } catch (err) {
      await stack.destroy();
      throw err;
    }
    return stack;
  }

  node(name: string): StackNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no node ${name} in this stack`);
    return node;
  }

  /** Starts the controller unless it runs already. */
  async startController(): Promise<void> {
    if (this.#children.has('controller')) return;
    this.#spawn('controller', [
      'controller',
      '--csi-endpoint',
      this.controllerSocket,
      '--namespace',
      this.namespace,
      '--metrics-address',
      `127.0.0.1:${await freePort()}`,
      '--log-level',
      'debug',
      // Not a Pod: nothing to read its own image from (no kubelet here runs share managers anyway).
      '--share-manager-image',
      'tandem:0.1.0',
      ...(this.#options.controllerArgs ?? []),
    ]);
    await waitFor(
      'controller socket',
      () => canConnect({ path: this.controllerSocket }),
      30_000,
      this.#alive('controller'),
    );
  }

  /**
   * Starts a `tandem migrator` (role `migrator`, or `migrator:<n>` for a second candidate for its
   * Lease) unless it runs already; resolves once its metrics endpoint answers.
   */
  async startMigrator(role: 'migrator' | `migrator:${string}` = 'migrator'): Promise<void> {
    if (this.#children.has(role)) return;
    const metrics = await freePort();
    this.#spawn(role, [
      'migrator',
      '--namespace',
      this.namespace,
      '--metrics-address',
      `127.0.0.1:${metrics}`,
      '--log-level',
      'debug',
      ...(this.#options.migratorArgs ?? []),
    ]);
    this.#migratorMetrics.set(role, metrics);
    await waitFor(
      `${role} metrics endpoint`,
      () => canConnect({ host: '127.0.0.1', port: metrics }),
      30_000,
      this.#alive(role),
    );
  }

  /** Where the migrator of `role` serves /metrics (undefined when never started). */
  migratorMetricsPort(role: 'migrator' | `migrator:${string}` = 'migrator'): number | undefined {
    return this.#migratorMetrics.get(role);
  }

  /** Starts the node's data plane and node plugin (either may already run). */
  async startNode(name: string): Promise<void> {
    await Promise.all([this.startDataplane(name), this.startNodePlugin(name)]);
  }

  async startDataplane(name: string): Promise<void> {
    const node = this.node(name);
    const role = `dataplane:${name}` as const;
    if (this.#children.has(role)) return;
    const admin = await freePort();
    this.#spawn(role, [
      'dataplane',
      '--reconcile',
      '--node-id',
      name,
      '--listen',
      `127.0.0.1:${node.replicaPort}`,
      '--data-dir',
      node.dataDir,
      '--engine-socket-dir',
      node.engineDir,
      '--namespace',
      this.namespace,
      '--admin-address',
      `127.0.0.1:${admin}`,
      '--metrics-address',
      `127.0.0.1:${await freePort()}`,
      '--log-level',
      'debug',
      ...(this.#options.dataplaneArgs ?? []),
    ]);
    await waitFor(
      `${name} data plane`,
      () => canConnect({ host: '127.0.0.1', port: admin }),
      30_000,
      this.#alive(role),
    );
  }

  async startNodePlugin(name: string): Promise<void> {
    const node = this.node(name);
    const role = `node:${name}` as const;
    if (this.#children.has(role)) return;
    this.#spawn(role, [
      'node',
      '--node-id',
      name,
      '--csi-endpoint',
      node.nodeSocket,
      '--engine-socket-dir',
      node.engineDir,
      '--state-dir',
      node.stateDir,
      '--metrics-address',
      `127.0.0.1:${await freePort()}`,
      '--log-level',
      'debug',
      ...(this.#options.nodeArgs ?? []),
    ]);
    await waitFor(
      `${name} node plugin`,
      () => canConnect({ path: node.nodeSocket }),
      30_000,
      this.#alive(role),
    );
  }

  /** SIGKILL, like a crashed pod; the process's state on disk and in the API stays. */
  async kill(role: Role): Promise<void> {
    const child = this.#children.get(role);
    if (!child) return;
    this.#children.delete(role);
    child.kill('SIGKILL');
    await exitOf(child);
  }

  /** The pid of the role's running process (undefined when it does not run). */
  pid(role: Role): number | undefined {
    return this.#children.get(role)?.pid;
  }

  /** SIGTERM (or another signal), as kubelet stops a container; resolves with the exit code. */
  async stop(role: Role, signal: 'SIGTERM' | 'SIGINT' = 'SIGTERM'): Promise<number | null | undefined> {
    const child = this.#children.get(role);
    if (!child) return undefined;
    this.#children.delete(role);
    child.kill(signal);
    return exitOf(child);
  }

  /** Stops every process (SIGTERM, node plugins and controller first); removes the files unless kept. */
  async destroy(): Promise<void> {
    const order = [...this.#children.keys()].sort((a, b) => rank(a) - rank(b));
    for (const role of order) await this.stop(role);
    await testKubeConfig()
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: this.namespace })
      .catch(() => undefined);
    // TANDEM_KEEP_TEST_STATE=1 keeps the process logs for a post-mortem.
    if (process.env.TANDEM_KEEP_TEST_STATE === '1') process.stderr.write(`kept ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }

  /** Alive while the role's process runs: a readiness wait gives up as soon as it died. */
  #alive(role: Role): () => boolean {
    const child = this.#children.get(role);
    return () => child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  #spawn(role: Role, args: string[]): void {
    if (this.#children.has(role)) throw new Error(`${role} runs already; a second one would be orphaned`);
    const child = spawnTandem(args, { KUBECONFIG: this.#kubeconfig });
    const log = createWriteStream(join(this.dir, `${role.replace(':', '-')}.log`), { flags: 'a' });
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    this.#children.set(role, child);
  }
}

/** Node plugins go first (they hold mounts over the engines), data planes last. */
function rank(role: Role): number {
  if (role.startsWith('node:')) return 0;
  if (role === 'controller' || role.startsWith('migrator')) return 1;
  return 2;
}
