import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RunOptions, type RunResult, run } from '../lib/exec.js';
import { type Logger, silentLogger } from '../lib/log.js';
import { isProcessAlive } from '../lib/pid.js';
import { Service, type ServiceOptions } from '../lib/service.js';
import { killNodeProcessesSync, removeNodeCgroups } from './cgroups.js';
import { releaseSysctls } from './sysctls.js';

/**
 * Simulated nodes: one network namespace per node, each with its own address,
 * joined by veth pairs to a bridge in the root namespace. The bridge carries an
 * address too, so processes in the root namespace (the test, the apiserver of
 * the lab) and the nodes reach each other. Addresses come from 198.18.0.0/15,
 * the range RFC 2544 sets aside for network tests, one /24 per network.
 *
 * Every network claims its /24 by creating a folder under CLAIMS_DIR holding
 * its owner's pid and the names of what it created. A network whose owner died
 * without cleaning up (SIGKILL, a crashed worker) is removed by the next
 * create(), and `tandem lab` and the test setup sweep at start too.
 */

export interface SimulatedNode {
  /** Node name as the cluster sees it: node-1, node-2, ... */
  name: string;
  netns: string;
  address: string;
  /** Root-namespace end of the node's veth pair; taking it down cuts the node off. */
  hostVeth: string;
}

export interface NetworkOptions {
  nodes: number;
  logger?: Logger;
}

interface Claim {
  pid: number;
  netns: string[];
  links: string[];
  /** cgroup roots of real nodes (lab/real-node.ts): their processes are killed, the cgroups removed. */
  cgroups?: string[];
}

const CLAIMS_DIR = '/run/tandem-sim';
const SUBNET_PREFIX = '198.18';
const MAX_NODES = 32;

export class SimulatedNetwork {
  private readonly services = new Set<Service>();
  private destroyed = false;

  private constructor(
    readonly id: string,
    readonly subnet: number,
    readonly bridge: string,
    readonly hostAddress: string,
    readonly nodes: readonly SimulatedNode[],
    private readonly logger: Logger,
  ) {}

  static async create(options: NetworkOptions): Promise<SimulatedNetwork> {
    if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > MAX_NODES) {
      throw new Error(`a simulated network has 1 to ${MAX_NODES} nodes, not ${options.nodes}`);
    }
    if (process.getuid?.() !== 0)
      throw new Error('simulated nodes need root (network namespaces, veth, bridges)');
    const logger = options.logger ?? silentLogger();
    sweepStaleNetworks(logger);
    const id = randomBytes(2).toString('hex');
    const subnet = claimSubnet(id);
    const bridge = `td${id}br`;
    const hostAddress = `${SUBNET_PREFIX}.${subnet}.1`;
    const nodes: SimulatedNode[] = Array.from({ length: options.nodes }, (_, i) => ({
      name: `node-${i + 1}`,
      netns: `tandem-${id}-node-${i + 1}`,
      address: `${SUBNET_PREFIX}.${subnet}.${11 + i}`,
      hostVeth: `td${id}n${i + 1}`,
    }));
    const network = new SimulatedNetwork(id, subnet, bridge, hostAddress, nodes, logger);
    writeClaim(subnet, {
      pid: process.pid,
      netns: nodes.map((n) => n.netns),
      links: [bridge, ...nodes.map((n) => n.hostVeth)],
    });
    liveNetworks.add(network);
    installExitCleanup();
    try {
      await ip(['link', 'add', bridge, 'type', 'bridge']);
      await ip(['addr', 'add', `${hostAddress}/24`, 'dev', bridge]);
      await ip(['link', 'set', bridge, 'up']);
      for (const node of nodes) await network.addNode(node);
    } catch (err) {
      await network.destroy();
      throw err;
    }
    logger.info({ network: id, nodes: nodes.map((n) => `${n.name}=${n.address}`) }, 'simulated nodes ready');
    return network;
  }

  private async addNode(node: SimulatedNode): Promise<void> {
    await ip(['netns', 'add', node.netns]);
    await ip(['link', 'add', node.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.netns]);
    await ip(['link', 'set', node.hostVeth, 'master', this.bridge, 'up']);
    const inNode = (args: string[]) => ip(['-n', node.netns, ...args]);
    await inNode(['link', 'set', 'lo', 'up']);
    await inNode(['addr', 'add', `${node.address}/24`, 'dev', 'eth0']);
    await inNode(['link', 'set', 'eth0', 'up']);
  }

  /**
   * Records the cgroup roots of real nodes started on this network, so that destroy(), the exit
   * handler and the sweeper (after a SIGKILL of this process) kill their processes (containerd's
   * shims and the pods outlive their parents) and remove the cgroups, then restore the kernel
   * settings the kubelets changed.
   */
  recordCgroups(roots: readonly string[]): void {
    const claim = readClaim(this.subnet);
    if (claim)
      writeClaim(this.subnet, { ...claim, cgroups: [...new Set([...(claim.cgroups ?? []), ...roots])] });
  }

  node(name: string): SimulatedNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no simulated node ${name}; have ${this.nodes.map((n) => n.name).join(', ')}`);
    return node;
  }

  /** Runs a command to completion inside a node's network namespace. */
  exec(
    node: SimulatedNode,
    command: string,
    args: readonly string[],
    options?: RunOptions,
  ): Promise<RunResult> {
    return run('ip', ['netns', 'exec', node.netns, command, ...args], { logger: this.logger, ...options });
  }

  /** Starts a long-running process inside a node; destroy() stops it. */
  spawn(node: SimulatedNode, options: ServiceOptions): Service {
    const service = new Service({
      ...options,
      name: `${node.name}/${options.name}`,
      command: 'ip',
      args: ['netns', 'exec', node.netns, options.command, ...options.args],
      logger: options.logger ?? this.logger,
    });
    this.services.add(service);
    void service.exited.then(() => this.services.delete(service));
    return service;
  }

  /** Takes the node's link down: it can reach no one and no one reaches it. */
  async cutLink(node: SimulatedNode): Promise<void> {
    await ip(['link', 'set', node.hostVeth, 'down']);
  }

  async restoreLink(node: SimulatedNode): Promise<void> {
    await ip(['link', 'set', node.hostVeth, 'up']);
  }

  /** Stops every process started in the nodes, then removes namespaces, links and the claim. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all([...this.services].map((s) => s.stop()));
    removeClaimed(this.subnet, readClaim(this.subnet));
    liveNetworks.delete(this);
    this.logger.info({ network: this.id }, 'simulated nodes removed');
  }

  /** Synchronous variant for process-exit handlers, where nothing async runs. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const service of this.services) if (service.pid) tryKill(service.pid);
    removeClaimed(this.subnet, readClaim(this.subnet));
    liveNetworks.delete(this);
  }
}

function ip(args: string[]): Promise<RunResult> {
  return run('ip', args, { timeoutMs: 10_000 });
}

/** Takes the first free /24 by creating its claim folder (mkdir is atomic across processes). */
function claimSubnet(id: string): number {
  mkdirSync(CLAIMS_DIR, { recursive: true });
  for (let subnet = 1; subnet <= 254; subnet++) {
    try {
      mkdirSync(join(CLAIMS_DIR, String(subnet)));
      writeFileSync(join(CLAIMS_DIR, String(subnet), 'id'), id);
      return subnet;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  throw new Error(
    `all simulated subnets in ${CLAIMS_DIR} are taken; remove stale ones with: tandem lab --clean`,
  );
}

function writeClaim(subnet: number, claim: Claim): void {
  writeFileSync(join(CLAIMS_DIR, String(subnet), 'claim.json'), JSON.stringify(claim));
}

function readClaim(subnet: number): Claim | undefined {
  try {
    return JSON.parse(readFileSync(join(CLAIMS_DIR, String(subnet), 'claim.json'), 'utf8')) as Claim;
  } catch {
    return undefined;
  }
}

/** Best-effort, synchronous removal: used by destroy, exit handlers and the sweeper alike. */
function removeClaimed(subnet: number, claim: Claim | undefined): void {
  for (const root of claim?.cgroups ?? []) {
    killNodeProcessesSync(root);
    removeNodeCgroups(root);
  }
  if (claim?.cgroups?.length) releaseSysctls(claim.pid);
  for (const netns of claim?.netns ?? [])
    spawnSync('ip', ['netns', 'del', netns], { stdio: 'ignore', timeout: 10_000 });
  for (const link of claim?.links ?? [])
    spawnSync('ip', ['link', 'del', link], { stdio: 'ignore', timeout: 10_000 });
  rmSync(join(CLAIMS_DIR, String(subnet)), { recursive: true, force: true });
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Removes networks whose owning process is gone. Returns how many it removed. */
export function sweepStaleNetworks(logger: Logger = silentLogger()): number {
  let removed = 0;
  let entries: string[];
  try {
    entries = readdirSync(CLAIMS_DIR);
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const subnet = Number(entry);
    if (!Number.isInteger(subnet)) continue;
    const claim = readClaim(subnet);
    // A claim without claim.json is either being created right now or was cut
    // short; only remove it when it is old enough not to be in flight.
    if (claim ? isProcessAlive(claim.pid) : claimAgeMs(subnet) < 60_000) continue;
    logger.warn(
      { subnet: `${SUBNET_PREFIX}.${subnet}.0/24`, pid: claim?.pid },
      'removing simulated network left by a dead process',
    );
    removeClaimed(subnet, claim);
    removed++;
  }
  return removed;
}

function claimAgeMs(subnet: number): number {
  try {
    return Date.now() - statSync(join(CLAIMS_DIR, String(subnet))).mtimeMs;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

const liveNetworks = new Set<SimulatedNetwork>();
let exitCleanupInstalled = false;

/**
 * On exit or SIGINT/SIGTERM, remove this process's networks synchronously, so
 * an interrupted test run or lab leaves nothing; SIGKILL is covered by the sweeper.
 */
function installExitCleanup(): void {
  if (exitCleanupInstalled) return;
  exitCleanupInstalled = true;
  const cleanAll = () => {
    for (const network of [...liveNetworks]) network.destroySync();
  };
  process.once('exit', cleanAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      // When someone else handles the signal (the lab does, to delete its workloads and stop
      // its nodes in order), leave the stop to them: the exit handler still runs at the end.
      if (process.listenerCount(signal) > 0) return;
      cleanAll();
      process.kill(process.pid, signal);
    });
  }
}
