import { mkdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { type Logger, silentLogger } from '../lib/log.js';
import { CertificateAuthority, rsaKeyPairPem } from '../lib/pki.js';
import { freePort } from '../lib/ports.js';
import { Service } from '../lib/service.js';
import { firstAddress } from './addresses.js';
import { startControllers } from './controllers.js';
import { waitUntil } from './startup.js';
import { toolPath } from './tools.js';

export interface ControlPlaneOptions {
  /** State folder: certificates, etcd data, logs, kubeconfig. */
  dir: string;
  /** Address the apiserver listens on and advertises (default 127.0.0.1). */
  bindAddress?: string;
  readyTimeoutMs?: number;
  logger?: Logger;
  /** Remove `dir` on stop (default true). */
  removeOnStop?: boolean;
  /** ClusterIP range (default 198.19.0.0/26); its first address is the `kubernetes` Service's. */
  serviceCidr?: string;
  /**
   * Run a cluster for real kubelets: Node authorization and NodeRestriction, the ServiceAccount
   * admission plugin, apiserver-to-kubelet credentials, webhooks and aggregated APIs reached at
   * their endpoints (no kube-proxy runs on the control-plane host), and kube-controller-manager
   * and kube-scheduler beside the apiserver. Without it the apiserver runs alone and the tests
   * play the controllers.
   */
  withNodes?: boolean;
}

export interface ControlPlane {
  /** https://address:port of the kube-apiserver. */
  server: string;
  kubeconfigPath: string;
  caCertPem: string;
  /** Milliseconds from start to the apiserver reporting /readyz ok. */
  startupMs: number;
  logDir: string;
  serviceCidr: string;
  /** The cluster CA, to issue node, proxy and kubelet-serving credentials. */
  ca: CertificateAuthority;
  /** Writes a kubeconfig for a client certificate with this user and groups; returns its path. */
  writeKubeconfig(file: string, user: string, groups?: readonly string[]): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Default ClusterIP range: in the project's 198.18.0.0/15, in the 198.19.0.0/24 that no
 * simulated network takes (they use 198.19.<subnet>.0/24 with subnet >= 1 for pods and Services).
 */
const DEFAULT_SERVICE_CIDR = '198.19.0.0/26';

/**
 * Starts a real etcd and kube-apiserver on free ports with freshly generated
 * certificates; admin access is a client certificate in group system:masters.
 * Resolves once /readyz answers ok; on any failure everything started is
 * stopped again and the error carries the tail of the failing process's log.
 */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const started = Date.now();
  const logger = options.logger ?? silentLogger();
  const bindAddress = options.bindAddress ?? '127.0.0.1';
  const dirs = {
    pki: join(options.dir, 'pki'),
    etcd: join(options.dir, 'etcd'),
    logs: join(options.dir, 'logs'),
  };
  await Promise.all(Object.values(dirs).map((d) => mkdir(d, { recursive: true, mode: 0o700 })));

  const serviceCidr = options.serviceCidr ?? DEFAULT_SERVICE_CIDR;
  const pki = await writePki(dirs.pki, bindAddress, firstAddress(serviceCidr));
  const services: Service[] = [];
  const stopAll = async () => {
    for (const service of services.reverse()) await service.stop();
  };

  try {
    const etcdPort = await freePort();
    const peerPort = await freePort();
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcdLog = join(dirs.logs, 'etcd.log');
    const etcd = new Service({
      name: 'etcd',
      command: toolPath('etcd'),
      args: [
        '--name=tandem',
        `--data-dir=${dirs.etcd}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=tandem=http://127.0.0.1:${peerPort}`,
        // Test clusters are thrown away: skipping fsync makes etcd an order of magnitude faster here.
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      logFile: etcdLog,
      logger,
    });
    services.push(etcd);
    await waitUntil('etcd', etcd, etcdLog, options.readyTimeoutMs, async () => {
      const res = await fetch(`${etcdUrl}/health`);
      return res.ok && ((await res.json()) as { health?: string }).health === 'true';
    });

    const apiPort = await freePort(bindAddress);
    const server = `https://${bindAddress}:${apiPort}`;
    const apiLog = join(dirs.logs, 'kube-apiserver.log');
    const apiserver = new Service({
      name: 'kube-apiserver',
      command: toolPath('kube-apiserver'),
      args: [
        `--etcd-servers=${etcdUrl}`,
        `--bind-address=${bindAddress}`,
        `--advertise-address=${bindAddress}`,
        `--secure-port=${apiPort}`,
        `--tls-cert-file=${pki.servingCert}`,
        `--tls-private-key-file=${pki.servingKey}`,
        `--client-ca-file=${pki.caCert}`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${pki.saPublic}`,
        `--service-account-signing-key-file=${pki.saPrivate}`,
        `--service-cluster-ip-range=${serviceCidr}`,
        '--allow-privileged=true',
        '--enable-priority-and-fairness=false',
        '--profiling=false',
        ...(options.withNodes
          ? [
              '--authorization-mode=Node,RBAC',
              '--enable-admission-plugins=NodeRestriction',
              `--kubelet-client-certificate=${pki.kubeletClientCert}`,
              `--kubelet-client-key=${pki.kubeletClientKey}`,
              `--kubelet-certificate-authority=${pki.caCert}`,
              // kubectl logs/exec reach a kubelet at its node address, never a name.
              '--kubelet-preferred-address-types=InternalIP',
              // The apiserver's host runs no kube-proxy: webhooks are called at their endpoints.
              '--enable-aggregator-routing=true',
            ]
          : [
              '--authorization-mode=RBAC',
              // No kube-controller-manager runs here, so no namespace gets its "default"
              // ServiceAccount; the ServiceAccount admission plugin would refuse every pod.
              '--disable-admission-plugins=ServiceAccount',
            ]),
      ],
      logFile: apiLog,
      logger,
    });
    services.push(apiserver);
    const tls = { ca: pki.caPem, cert: pki.adminCertPem, key: pki.adminKeyPem };
    await waitUntil('kube-apiserver', apiserver, apiLog, options.readyTimeoutMs, () =>
      httpsOk(`${server}/readyz`, tls),
    );

    const kubeconfigPath = join(options.dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfig(server, tls), { mode: 0o600 });
    const writeKubeconfig = async (file: string, user: string, groups: readonly string[] = []) => {
      const pair = pki.ca.issue({ commonName: user, organizations: [...groups], usage: 'client' });
      await writeFile(file, kubeconfig(server, { ca: pki.caPem, cert: pair.cert, key: pair.key }), {
        mode: 0o600,
      });
      return file;
    };
    if (options.withNodes) {
      services.push(
        ...(await startControllers({
          dirs,
          pki,
          serviceCidr,
          writeKubeconfig,
          logger,
          readyTimeoutMs: options.readyTimeoutMs,
        })),
      );
    }
    const startupMs = Date.now() - started;
    logger.info({ server, kubeconfig: kubeconfigPath, startupMs }, 'control plane ready');
    return {
      server,
      kubeconfigPath,
      caCertPem: pki.caPem,
      startupMs,
      logDir: dirs.logs,
      serviceCidr,
      ca: pki.ca,
      writeKubeconfig,
      stop: async () => {
        await stopAll();
        if (options.removeOnStop ?? true) await rm(options.dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function writePki(dir: string, bindAddress: string, kubernetesServiceIp: string) {
  const ca = CertificateAuthority.create('tandem-test-cluster-ca');
  const serving = ca.issue({
    commonName: 'kube-apiserver',
    usage: 'server',
    dnsNames: [
      'localhost',
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
    ],
    ipAddresses: [...new Set(['127.0.0.1', bindAddress, kubernetesServiceIp])],
  });
  const admin = ca.issue({ commonName: 'tandem-admin', organizations: ['system:masters'], usage: 'client' });
  // The apiserver's identity towards kubelets (logs, exec, port-forward), as kubeadm names it.
  const kubeletClient = ca.issue({
    commonName: 'kube-apiserver-kubelet-client',
    organizations: ['system:masters'],
    usage: 'client',
  });
  const sa = rsaKeyPairPem();
  const files = {
    caCert: join(dir, 'ca.crt'),
    servingCert: join(dir, 'apiserver.crt'),
    servingKey: join(dir, 'apiserver.key'),
    saPublic: join(dir, 'sa.pub'),
    saPrivate: join(dir, 'sa.key'),
    kubeletClientCert: join(dir, 'apiserver-kubelet-client.crt'),
    kubeletClientKey: join(dir, 'apiserver-kubelet-client.key'),
  };
  await Promise.all([
    writeFile(files.kubeletClientCert, kubeletClient.cert),
    writeFile(files.kubeletClientKey, kubeletClient.key, { mode: 0o600 }),
    writeFile(files.caCert, ca.certPem),
    writeFile(files.servingCert, serving.cert),
    writeFile(files.servingKey, serving.key, { mode: 0o600 }),
    writeFile(files.saPublic, sa.publicKey),
    writeFile(files.saPrivate, sa.privateKey, { mode: 0o600 }),
  ]);
  return { ...files, ca, caPem: ca.certPem, adminCertPem: admin.cert, adminKeyPem: admin.key };
}

function kubeconfig(server: string, tls: { ca: string; cert: string; key: string }): string {
  const b64 = (pem: string) => Buffer.from(pem).toString('base64');
  // JSON is valid YAML, and every kubeconfig reader accepts it.
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'tandem', cluster: { server, 'certificate-authority-data': b64(tls.ca) } }],
      users: [
        {
          name: 'tandem-admin',
          user: { 'client-certificate-data': b64(tls.cert), 'client-key-data': b64(tls.key) },
        },
      ],
      contexts: [{ name: 'tandem', context: { cluster: 'tandem', user: 'tandem-admin' } }],
      'current-context': 'tandem',
    },
    null,
    2,
  );
}

function httpsOk(url: string, tls: { ca: string; cert: string; key: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(url, { ...tls, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
