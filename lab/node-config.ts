/**
 * The configuration files of one real node: containerd's, the CNI network's, the kubelet's and
 * kube-proxy's. Pure functions of the node's paths and addresses, so a unit test can check each
 * setting the notes in ../shared/notes/real-kubelet.md found necessary on these hosts.
 */
import { join } from 'node:path';
import { MAX_PODS_PER_NODE } from './addresses.js';

export interface NodePaths {
  /** The node's folder on the host (never under /var/lib, /var/log or /run: those are the node's own). */
  dir: string;
  containerdSocket: string;
  containerdConfig: string;
  cniConfDir: string;
  kubeletConfig: string;
  kubeletKubeconfig: string;
  kubeletCert: string;
  kubeletKey: string;
  proxyConfig: string;
  proxyKubeconfig: string;
  logs: string;
}

export function nodePaths(dir: string): NodePaths {
  return {
    dir,
    containerdSocket: join(dir, 'containerd.sock'),
    containerdConfig: join(dir, 'containerd.toml'),
    cniConfDir: join(dir, 'cni'),
    kubeletConfig: join(dir, 'kubelet.json'),
    kubeletKubeconfig: join(dir, 'kubelet.kubeconfig'),
    kubeletCert: join(dir, 'kubelet.crt'),
    kubeletKey: join(dir, 'kubelet.key'),
    proxyConfig: join(dir, 'kube-proxy.json'),
    proxyKubeconfig: join(dir, 'kube-proxy.kubeconfig'),
    logs: join(dir, 'logs'),
  };
}

/** Debian's containernetworking-plugins install here. */
export const CNI_BIN_DIR = '/usr/lib/cni';

export function containerdConfig(paths: NodePaths, sandboxImage: string): string {
  const toml = (value: string) => JSON.stringify(value);
  return `# One node's own containerd: its own socket, root and state, so two nodes never see each other's
# containers (two kubelets on one containerd delete each other's pods).
version = 2
root = ${toml(join(paths.dir, 'containerd', 'root'))}
state = ${toml(join(paths.dir, 'containerd', 'state'))}

[grpc]
  address = ${toml(paths.containerdSocket)}

[plugins."io.containerd.internal.v1.opt"]
  path = ${toml(join(paths.dir, 'containerd', 'opt'))}

[plugins."io.containerd.grpc.v1.cri"]
  # Built here like every image: no registry is reachable.
  sandbox_image = ${toml(sandboxImage)}
  # Without it every sandbox fails ("can't get final child's PID from pipe"): root here lacks
  # CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj below the runtime's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # No systemd on these hosts: the kubelet's cgroupDriver is cgroupfs too.
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${toml(CNI_BIN_DIR)}
    conf_dir = ${toml(paths.cniConfDir)}
`;
}

/** A bridge network on the node's own pod range; other nodes' pods are reached by host routes. */
export function cniConfig(podCidr: string): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'tandem-lab',
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni0',
          isGateway: true,
          // Pod addresses are routed (the host and every node have a route per node's range), so
          // no NAT: the apiserver and other pods see the pod's own address.
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: podCidr }]], routes: [{ dst: '0.0.0.0/0' }] },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

export interface KubeletSettings {
  paths: NodePaths;
  nodeAddress: string;
  cgroupRoot: string;
  caFile: string;
}

export function kubeletConfig(settings: KubeletSettings): string {
  const { paths } = settings;
  const runtime = `unix://${paths.containerdSocket}`;
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      // 1.35 refuses cgroup v1 hosts by default; these hosts have nothing else.
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      // Each node its own root: two kubelets under one root clean up each other's pods.
      cgroupRoot: settings.cgroupRoot,
      failSwapOn: false,
      containerRuntimeEndpoint: runtime,
      imageServiceEndpoint: runtime,
      address: settings.nodeAddress,
      port: 10250,
      readOnlyPort: 0,
      // On the node's address, so the host can tell when it is up (plain HTTP, health only).
      healthzBindAddress: settings.nodeAddress,
      healthzPort: 10248,
      tlsCertFile: paths.kubeletCert,
      tlsPrivateKeyFile: paths.kubeletKey,
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: true },
        x509: { clientCAFile: settings.caFile },
      },
      authorization: { mode: 'Webhook' },
      maxPods: MAX_PODS_PER_NODE,
      // No cluster DNS in the lab: pods use the host's resolver.
      resolvConf: '/etc/resolv.conf',
      // A shared test machine: neither evict pods nor delete images because its disk is full.
      evictionHard: {
        'memory.available': '100Mi',
        'nodefs.available': '1%',
        'imagefs.available': '1%',
        'nodefs.inodesFree': '1%',
      },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      serializeImagePulls: false,
      // Faster volume and status feedback than production defaults, for bounded tests.
      syncFrequency: '10s',
      fileCheckFrequency: '10s',
      nodeStatusUpdateFrequency: '5s',
      volumeStatsAggPeriod: '10s',
      shutdownGracePeriod: '0s',
    },
    null,
    2,
  );
}

export function kubeProxyConfig(paths: NodePaths, nodeName: string, clusterCidr: string): string {
  return JSON.stringify(
    {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      clientConnection: { kubeconfig: paths.proxyKubeconfig },
      mode: 'iptables',
      hostnameOverride: nodeName,
      clusterCIDR: clusterCidr,
      metricsBindAddress: '127.0.0.1:10249',
      healthzBindAddress: '127.0.0.1:10256',
      // Zero leaves the machine-wide conntrack table size and timeouts as they are.
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      iptables: { minSyncPeriod: '1s', syncPeriod: '30s' },
    },
    null,
    2,
  );
}
