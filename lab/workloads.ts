/** Objects the lab demo and the end-to-end tests create on real nodes: claims, pods, Deployments. */
import { LAB_TANDEM_IMAGE } from './cluster.js';

/** What workload pods run: Tandem's own image (Debian with coreutils), present on every node. */
export const WORKLOAD_IMAGE = LAB_TANDEM_IMAGE;

export interface ClaimSpec {
  storageClass?: string;
  size?: string;
  accessModes?: string[];
  volumeMode?: 'Filesystem' | 'Block';
}

export function claim(namespace: string, name: string, spec: ClaimSpec = {}) {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace },
    spec: {
      storageClassName: spec.storageClass ?? 'tandem',
      accessModes: spec.accessModes ?? ['ReadWriteOnce'],
      volumeMode: spec.volumeMode ?? 'Filesystem',
      resources: { requests: { storage: spec.size ?? '64Mi' } },
    },
  };
}

export interface PodSpec {
  claim: string;
  /** Filesystem claims are mounted at /data, Block claims appear as /dev/tandem. */
  block?: boolean;
  script?: string;
  /** Pins the pod to this node (by its kubernetes.io/hostname label). */
  node?: string;
  labels?: Record<string, string>;
}

const SLEEP_FOREVER = 'trap "exit 0" TERM; while true; do sleep 1; done';

function podTemplateSpec(spec: PodSpec) {
  return {
    // A node selector, not nodeName: a pod bound by nodeName skips the scheduler, and a
    // WaitForFirstConsumer claim is provisioned only once the scheduler picked its pod's node.
    // KubeVirt places a migration's target pod the same way (node affinity to the target).
    ...(spec.node === undefined ? {} : { nodeSelector: { 'kubernetes.io/hostname': spec.node } }),
    terminationGracePeriodSeconds: 2,
    // Writes to the volume and to raw devices as root; Tandem's image defaults to uid 1000.
    securityContext: { runAsUser: 0 },
    containers: [
      {
        name: 'app',
        image: WORKLOAD_IMAGE,
        imagePullPolicy: 'Never',
        command: ['sh', '-c', spec.script ?? SLEEP_FOREVER],
        ...(spec.block
          ? { volumeDevices: [{ name: 'disk', devicePath: '/dev/tandem' }] }
          : { volumeMounts: [{ name: 'disk', mountPath: '/data' }] }),
        resources: { requests: { cpu: '10m', memory: '16Mi' } },
      },
    ],
    volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: spec.claim } }],
  };
}

export function pod(namespace: string, name: string, spec: PodSpec) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: name, ...spec.labels } },
    spec: podTemplateSpec(spec),
  };
}

export function deployment(namespace: string, name: string, spec: PodSpec) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace },
    spec: {
      replicas: 1,
      // An RWO volume can be attached to one node at a time: the old pod goes first.
      strategy: { type: 'Recreate' },
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: podTemplateSpec(spec) },
    },
  };
}

export function namespace(name: string) {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
}
