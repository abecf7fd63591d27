/**
 * What the controller creates for one RWX Filesystem volume in Tandem's namespace: the share
 * manager's Pod and the volume's Service without a selector (its EndpointSlice is written by the
 * share manager that serves; driver/share-manager/endpoint.ts).
 *
 * Placement is the scheduler's job, from what the class asks merged with the controller's
 * cluster-wide defaults: the node selector (the class's keys win), the tolerations (both), and
 * allowedTopologies as required node affinity on Tandem's topology key, together with the nodes
 * the controller knows are lost (a replacement must not land where the old one died). So a node
 * that does not match never hosts the share manager, and when none matches the scheduler says so in a
 * FailedScheduling Event that the controller repeats on the claim.
 *
 * The Pod never restarts in place (restartPolicy Never): a share manager that died is replaced by
 * the controller, which moves the engine first and may pick another node.
 */
import type { V1Pod, V1Service, V1Toleration } from '@kubernetes/client-node';
import type { ShareSpec } from '../../lib/api/volume.js';
import type { Toleration } from '../../lib/params/storage-class.js';
import { DEFAULT_ENGINE_SOCKET_DIR, TOPOLOGY_NODE_KEY } from '../csi/node-topology.js';
import {
  SHARE_MANAGER_COMPONENT,
  SHARE_MANAGER_VOLUME_LABEL,
  shareManagerName,
} from '../share-manager/names.js';
import { NFS_PORT } from '../share-manager/share-manager.js';

export interface ShareManagerPodOptions {
  namespace: string;
  image: string;
  /** The controller's own (the lab's images are never pulled); IfNotPresent when not given. */
  imagePullPolicy?: string;
  serviceAccountName: string;
  fsType: 'ext4' | 'xfs';
  /** Cluster-wide defaults from the controller's flags, merged under the class's own. */
  defaults: { nodeSelector: Record<string, string>; tolerations: readonly Toleration[] };
  engineSocketDir?: string;
  stateDir?: string;
  /** Nodes the controller knows are lost (their data plane is silent): never scheduled there. */
  avoidNodes?: readonly string[];
}

const COMPONENT_LABEL = 'app.kubernetes.io/component';

export function shareManagerLabels(volumeId: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'tandem',
    [COMPONENT_LABEL]: SHARE_MANAGER_COMPONENT,
    [SHARE_MANAGER_VOLUME_LABEL]: volumeId,
  };
}

/** Tolerations of both lists, each once; the class's come first. */
export function mergedTolerations(
  own: readonly Toleration[],
  defaults: readonly Toleration[],
): V1Toleration[] {
  const seen = new Set<string>();
  const merged: V1Toleration[] = [];
  for (const t of [...own, ...defaults]) {
    const key = `${t.key}\0${t.operator}\0${t.value ?? ''}\0${t.effect}`;
    if (seen.has(key)) continue;
    seen.add(key);
    merged.push({
      key: t.key,
      operator: t.operator,
      ...(t.value === undefined ? {} : { value: t.value }),
      effect: t.effect,
    });
  }
  return merged;
}

export function shareManagerPod(volumeId: string, share: ShareSpec, options: ShareManagerPodOptions): V1Pod {
  const name = shareManagerName(volumeId);
  const engineSocketDir = options.engineSocketDir ?? DEFAULT_ENGINE_SOCKET_DIR;
  const stateDir = options.stateDir ?? '/var/lib/tandem/share-manager';
  const nodes = share.nodes;
  const avoid = [...(options.avoidNodes ?? [])];
  const placement = [
    ...(nodes ? [{ key: TOPOLOGY_NODE_KEY, operator: 'In', values: nodes }] : []),
    ...(avoid.length > 0 ? [{ key: TOPOLOGY_NODE_KEY, operator: 'NotIn', values: avoid }] : []),
  ];
  const fieldEnv = (envName: string, fieldPath: string) => ({
    name: envName,
    valueFrom: { fieldRef: { fieldPath } },
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: options.namespace, labels: shareManagerLabels(volumeId) },
    spec: {
      restartPolicy: 'Never',
      serviceAccountName: options.serviceAccountName,
      // Ganesha gets a few seconds to write its recovery records before SIGKILL.
      terminationGracePeriodSeconds: 20,
      nodeSelector: { ...options.defaults.nodeSelector, ...share.nodeSelector },
      tolerations: mergedTolerations(share.tolerations ?? [], options.defaults.tolerations),
      ...(placement.length > 0
        ? {
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [{ matchExpressions: placement }],
                },
              },
            },
          }
        : {}),
      containers: [
        {
          name: 'share-manager',
          image: options.image,
          imagePullPolicy: options.imagePullPolicy ?? 'IfNotPresent',
          args: [
            'share-manager',
            '--volume',
            volumeId,
            '--fs-type',
            options.fsType,
            ...(share.fastFailover ? ['--fast-failover'] : []),
            '--engine-socket-dir',
            engineSocketDir,
            '--state-dir',
            stateDir,
          ],
          env: [
            fieldEnv('NODE_NAME', 'spec.nodeName'),
            fieldEnv('POD_IP', 'status.podIP'),
            fieldEnv('POD_NAME', 'metadata.name'),
            // The heartbeat's holder: unique per incarnation, where the name is the volume's.
            fieldEnv('POD_UID', 'metadata.uid'),
            fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
          ],
          ports: [{ name: 'nfs', containerPort: NFS_PORT, protocol: 'TCP' }],
          // The share manager writes why it could not serve to /dev/termination-log; a crash
          // without it leaves the log's end. The controller repeats it in its Event on the claim.
          terminationMessagePolicy: 'FallbackToLogsOnError',
          readinessProbe: { tcpSocket: { port: 'nfs' }, periodSeconds: 2, failureThreshold: 2 },
          // Attaches a loop device over nbdfuse, mounts, and runs Ganesha in a UTS namespace.
          securityContext: { privileged: true, runAsUser: 0, runAsGroup: 0 },
          volumeMounts: [
            { name: 'dev', mountPath: '/dev' },
            { name: 'engine-sockets', mountPath: engineSocketDir },
            // On the host, and Bidirectional: the FUSE, loop and filesystem mounts the share
            // manager makes here live in the node's mount namespace too. Were they only in the
            // Pod's, a SIGKILLed Pod would deadlock: nbdfuse, the last process of that namespace,
            // would unmount the filesystem on its own FUSE file as it exits and wait forever for
            // the journal write only it can serve (docs/rwx-nfs.md). The node's copy keeps the
            // filesystem alive instead, and a successor here releases what the dead one left.
            { name: 'state', mountPath: stateDir, mountPropagation: 'Bidirectional' },
          ],
          resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '1Gi' } },
        },
      ],
      volumes: [
        { name: 'dev', hostPath: { path: '/dev', type: 'Directory' } },
        { name: 'engine-sockets', hostPath: { path: engineSocketDir, type: 'DirectoryOrCreate' } },
        { name: 'state', hostPath: { path: stateDir, type: 'DirectoryOrCreate' } },
      ],
    },
  };
}

/** The volume's Service: a stable address for clients, no selector (the share manager writes the EndpointSlice). */
export function shareManagerService(volumeId: string, namespace: string): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: shareManagerName(volumeId), namespace, labels: shareManagerLabels(volumeId) },
    spec: {
      type: 'ClusterIP',
      ports: [{ name: 'nfs', port: NFS_PORT, targetPort: NFS_PORT, protocol: 'TCP' }],
      // NFSv4.1 clients keep one connection; nothing to balance, and a move changes the one endpoint.
      sessionAffinity: 'None',
    },
  };
}
