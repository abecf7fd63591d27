/**
 * One real Kubernetes node on this machine: its own network namespace (from SimulatedNetwork),
 * its own mount namespace with private /var/lib, /var/log and /run, its own containerd, kubelet
 * and kube-proxy, and its own cgroup root. What each setting is for is in
 * ../shared/notes/real-kubelet.md; the files are written by node-config.ts.
 *
 * The mount namespace is held by a small process (`holder`) and entered by every component with
 * nsenter, so each component is its own process with its own log, and the namespace (with every
 * mount the kubelet, containerd and the pods made in it) disappears when the last of them exits:
 * the host never sees a node's mounts, and a node's teardown cannot leave one behind.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../lib/exec.js';
import { type Logger, silentLogger } from '../lib/log.js';
import { waitFor } from '../lib/readiness.js';
import { Service } from '../lib/service.js';
import {
  createNodeCgroups,
  describeProcess,
  killNodeProcesses,
  pidsCgroup,
  removeNodeCgroups,
} from './cgroups.js';
import type { ControlPlane } from './control-plane.js';
import type { SimulatedNode } from './netns.js';
import {
  cniConfig,
  containerdConfig,
  kubeletConfig,
  kubeProxyConfig,
  type NodePaths,
  nodePaths,
} from './node-config.js';
import { logTail } from './startup.js';
import { toolPath } from './tools.js';

export interface RealNodeOptions {
  node: SimulatedNode;
  /** The node's folder on the host; must not lie under /var/lib, /var/log or /run. */
  dir: string;
  podCidr: string;
  clusterCidr: string;
  /** The kubelet's cgroupRoot, unique on the machine, e.g. /tandem-ab12-node-1. */
  cgroupRoot: string;
  controlPlane: ControlPlane;
  sandboxImage: string;
  logger?: Logger;
}

/** The node's own copies of these: the kubelet and CNI keep state there, on fixed paths. */
const PRIVATE_PATHS = ['/var/lib', '/var/log', '/run'];
/** Unix socket paths longer than this do not fit sockaddr_un. */
const MAX_SOCKET_PATH = 100;

/**
 * Runs in the new mount namespace before anything else. Mounts copied from the host would pin
 * the host's FUSE, loop and NBD file systems (an nbdfuse-backed volume elsewhere could then never
 * be unstaged), so those copies are dropped first. /var/lib/kubelet and /var/lib/tandem are made
 * rshared, as every path is on a systemd host: containerd refuses Bidirectional mounts (the CSI
 * node plugin's, the share managers') from a path that is not a shared mount.
 */
const HOLDER_SCRIPT = `set -e
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $5, $(i + 1), $(i + 2); break } }' /proc/self/mountinfo |
  while read -r point type source; do
    case "$type:$source" in fuse*|*:/dev/loop*|*:/dev/nbd*) umount -l "$point" 2>/dev/null || true ;; esac
  done
mount --bind "$1/var-lib" /var/lib
mkdir -p /var/lib/kubelet
mount --bind /var/lib/kubelet /var/lib/kubelet
mount --make-rshared /var/lib/kubelet
mkdir -p /var/lib/tandem
mount --bind /var/lib/tandem /var/lib/tandem
mount --make-rshared /var/lib/tandem
mount --bind "$1/var-log" /var/log
mount -t tmpfs -o mode=0755 tandem-node-run /run
mkdir -p /run/lock
echo 1 > /proc/sys/net/ipv4/ip_forward
touch "$1/holder-ready"
exec sleep infinity
`;

export class RealNode {
  private readonly services: Service[] = [];
  private stopped = false;

  private constructor(
    readonly node: SimulatedNode,
    readonly paths: NodePaths,
    readonly cgroupRoot: string,
    private readonly logger: Logger,
  ) {}

  get name(): string {
    return this.node.name;
  }

  /** The process holding the node's mount namespace (enter it at /proc/<pid>/ns/mnt). */
  get holderPid(): number | undefined {
    return this.services[0]?.pid;
  }

  get containerdSocket(): string {
    return this.paths.containerdSocket;
  }

  static async start(options: RealNodeOptions): Promise<RealNode> {
    for (const path of PRIVATE_PATHS) {
      if (options.dir === path || options.dir.startsWith(`${path}/`))
        throw new Error(
          `a real node's folder cannot lie under ${path} (the node has its own): ${options.dir}`,
        );
    }
    const paths = nodePaths(options.dir);
    if (`${paths.containerdSocket}.ttrpc`.length > MAX_SOCKET_PATH)
      throw new Error(`node folder path too long for a unix socket: ${options.dir}`);
    const logger = (options.logger ?? silentLogger()).child({ node: options.node.name });
    const node = new RealNode(options.node, paths, options.cgroupRoot, logger);
    try {
      await node.writeFiles(options);
      await createNodeCgroups(options.cgroupRoot);
      await node.startHolder();
      const containerd = node.component('containerd', '/usr/bin/containerd', [
        '--config',
        paths.containerdConfig,
      ]);
      await waitFor(
        `${options.node.name}: containerd serving`,
        async () => (await node.ctr(['version'], { allowFailure: true })).code === 0,
        30_000,
        () => containerd.running,
      ).catch(node.withLog('containerd'));
      const kubelet = node.component('kubelet', toolPath('kubelet'), [
        `--config=${paths.kubeletConfig}`,
        `--kubeconfig=${paths.kubeletKubeconfig}`,
        `--hostname-override=${options.node.name}`,
        `--node-ip=${options.node.address}`,
        '--v=1',
      ]);
      node.component('kube-proxy', toolPath('kube-proxy'), [`--config=${paths.proxyConfig}`, '--v=1']);
      await waitFor(
        `${options.node.name}: kubelet healthy`,
        async () => (await fetch(`http://${options.node.address}:10248/healthz`)).ok,
        60_000,
        () => kubelet.running,
      ).catch(node.withLog('kubelet'));
      logger.info({ address: options.node.address, podCidr: options.podCidr }, 'real node started');
      return node;
    } catch (err) {
      await node.stop();
      throw err;
    }
  }

  private async writeFiles(options: RealNodeOptions): Promise<void> {
    const { paths, node } = { paths: this.paths, node: options.node };
    for (const dir of ['var-lib', 'var-log', 'cni', 'logs', 'containerd'])
      await mkdir(join(paths.dir, dir), { recursive: true });
    const cp = options.controlPlane;
    const serving = cp.ca.issue({
      commonName: `system:node:${node.name}`,
      organizations: ['system:nodes'],
      usage: 'server',
      dnsNames: [node.name],
      ipAddresses: [node.address],
    });
    await Promise.all([
      writeFile(paths.containerdConfig, containerdConfig(paths, options.sandboxImage)),
      writeFile(join(paths.cniConfDir, '10-tandem-lab.conflist'), cniConfig(options.podCidr)),
      writeFile(
        paths.kubeletConfig,
        kubeletConfig({
          paths,
          nodeAddress: node.address,
          cgroupRoot: options.cgroupRoot,
          caFile: join(paths.dir, 'ca.crt'),
        }),
      ),
      writeFile(join(paths.dir, 'ca.crt'), cp.caCertPem),
      writeFile(paths.kubeletCert, serving.cert),
      writeFile(paths.kubeletKey, serving.key, { mode: 0o600 }),
      writeFile(paths.proxyConfig, kubeProxyConfig(paths, node.name, options.clusterCidr)),
      // Node authorization knows a kubelet by this name and group.
      cp.writeKubeconfig(paths.kubeletKubeconfig, `system:node:${node.name}`, ['system:nodes']),
      // Bound to system:node-proxier by the apiserver's bootstrap RBAC.
      cp.writeKubeconfig(paths.proxyKubeconfig, 'system:kube-proxy'),
    ]);
  }

  private async startHolder(): Promise<void> {
    const ready = join(this.paths.dir, 'holder-ready');
    const holder = this.launch('holder', [
      'nsenter',
      `--net=/run/netns/${this.node.netns}`,
      '--',
      'unshare',
      '--mount',
      '--propagation',
      'slave',
      '--',
      'sh',
      '-c',
      HOLDER_SCRIPT,
      'holder',
      this.paths.dir,
    ]);
    await waitFor(
      `${this.node.name}: mount namespace`,
      async () => existsSync(ready),
      10_000,
      () => holder.running,
    ).catch(this.withLog('holder'));
  }

  /** A component inside the node: in its cgroup, its network and its mount namespace. */
  private component(name: string, command: string, args: string[]): Service {
    const holder = this.services[0]?.pid;
    if (holder === undefined) throw new Error(`${this.node.name}: the mount namespace is not held`);
    return this.launch(name, [
      'nsenter',
      `--net=/run/netns/${this.node.netns}`,
      `--mount=/proc/${holder}/ns/mnt`,
      '--',
      command,
      ...args,
    ]);
  }

  /** Starts `argv` after moving the shell into the node's runtime cgroup (its children inherit it). */
  private launch(name: string, argv: string[]): Service {
    const cgroupProcs = join(pidsCgroup(join(this.cgroupRoot, 'runtime')), 'cgroup.procs');
    const service = new Service({
      name: `${this.node.name}/${name}`,
      command: '/bin/sh',
      args: ['-c', `echo $$ > "${cgroupProcs}" && exec "$@"`, name, ...argv],
      logFile: join(this.paths.logs, `${name}.log`),
      logger: this.logger,
      stopGraceMs: 10_000,
    });
    this.services.push(service);
    return service;
  }

  private withLog(name: string) {
    return async (err: unknown): Promise<never> => {
      const tail = await logTail(join(this.paths.logs, `${name}.log`));
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${name} log:\n${tail}`);
    };
  }

  /** A short command inside the node's network and mount namespaces (curl, iptables, ls ...). */
  async inNode(command: string, args: readonly string[], timeoutMs = 10_000) {
    const holder = this.services[0]?.pid;
    if (holder === undefined) throw new Error(`${this.node.name}: not running`);
    return run(
      'nsenter',
      [`--net=/run/netns/${this.node.netns}`, `--mount=/proc/${holder}/ns/mnt`, '--', command, ...args],
      { timeoutMs, allowFailure: true, logger: this.logger },
    );
  }

  /** containerd's client on this node's socket, in the CRI's namespace. */
  ctr(args: readonly string[], options: { allowFailure?: boolean; timeoutMs?: number } = {}) {
    return run('ctr', ['--address', this.paths.containerdSocket, '--namespace', 'k8s.io', ...args], {
      timeoutMs: options.timeoutMs ?? 120_000,
      allowFailure: options.allowFailure ?? false,
      logger: this.logger,
    });
  }

  /** Loop devices mounted in the node's mount namespace (volumes staged by the node plugin or a share manager). */
  private async loopDevicesInUse(): Promise<string[]> {
    const pid = this.holderPid;
    if (pid === undefined) return [];
    const mountinfo = await readFile(`/proc/${pid}/mountinfo`, 'utf8').catch(() => '');
    const loops = new Set<string>();
    for (const line of mountinfo.split('\n')) {
      const source = line.split(' - ')[1]?.split(' ')[1];
      if (source !== undefined && /^\/dev\/loop\d+$/.test(source)) loops.add(source);
    }
    return [...loops];
  }

  /**
   * Loop devices are the kernel's, not the node's: one whose filesystem was still mounted when the
   * node's mount namespace ended (a claim left in the lab) stays attached to a FUSE file that is
   * gone. Those this node used are detached.
   */
  private async detachLeftLoops(loops: readonly string[]): Promise<void> {
    for (const loop of loops) {
      const attached = await run('losetup', ['--noheadings', '--output', 'NAME', loop], {
        allowFailure: true,
        timeoutMs: 10_000,
      });
      if (attached.stdout.trim() === '') continue;
      this.logger.warn({ node: this.node.name, loop }, 'detaching a loop device the node left attached');
      await run('losetup', ['-d', loop], { allowFailure: true, timeoutMs: 10_000, logger: this.logger });
    }
  }

  /**
   * Stops kube-proxy, the kubelet and containerd (in that order, each with SIGTERM first), then
   * kills whatever is left in the node's cgroups (shims, containers), which ends the mount
   * namespace, and removes the cgroups. Every step runs even when one before it failed.
   */
  async stop(): Promise<string[]> {
    if (this.stopped) return [];
    this.stopped = true;
    const problems: string[] = [];
    const loops = await this.loopDevicesInUse();
    for (const service of [...this.services].reverse()) {
      await service.stop().catch((err: unknown) => problems.push(`${service.name}: ${String(err)}`));
    }
    const left = await killNodeProcesses(this.cgroupRoot);
    if (left.length > 0)
      problems.push(`${this.node.name}: processes ${left.map(describeProcess).join(', ')} survived SIGKILL`);
    await this.detachLeftLoops(loops);
    const cgroups = removeNodeCgroups(this.cgroupRoot);
    if (cgroups.length > 0) problems.push(`${this.node.name}: cgroups not removed: ${cgroups.join(', ')}`);
    for (const problem of problems) this.logger.warn({ problem }, 'node teardown');
    return problems;
  }
}
