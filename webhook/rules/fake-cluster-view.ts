import type {
  V1OwnerReference,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StorageClass,
} from '@kubernetes/client-node';
import { CSI_DRIVER_NAME, type Volume } from '../../lib/api/volume.js';
import type { AdmissionRequest, Operation } from '../admission.js';
import type { ClusterView } from '../cluster-view.js';

/** For tests only: an in-memory ClusterView over plain objects, and builders for them. */

export interface FakeCluster {
  storageClasses?: V1StorageClass[];
  claims?: V1PersistentVolumeClaim[];
  persistentVolumes?: V1PersistentVolume[];
  volumes?: Volume[];
  pods?: V1Pod[];
}

export const NAMESPACE = 'vms';

export function fakeClusterView(cluster: FakeCluster): ClusterView {
  const inNamespace =
    (namespace: string, name: string) => (o: { metadata?: { namespace?: string; name?: string } }) =>
      o.metadata?.namespace === namespace && o.metadata?.name === name;
  return {
    storageClass: async (name) => cluster.storageClasses?.find((c) => c.metadata?.name === name),
    claim: async (namespace, name) => cluster.claims?.find(inNamespace(namespace, name)),
    persistentVolume: async (name) => cluster.persistentVolumes?.find((pv) => pv.metadata?.name === name),
    volume: async (name) => cluster.volumes?.find((v) => v.metadata.name === name),
    pod: async (namespace, name) => cluster.pods?.find(inNamespace(namespace, name)),
    podsUsingClaim: async (namespace, claimName) =>
      (cluster.pods ?? []).filter(
        (p) =>
          p.metadata?.namespace === namespace &&
          (p.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === claimName),
      ),
  };
}

export function storageClass(
  name: string,
  options: { provisioner?: string; migratable?: string } = {},
): V1StorageClass {
  const { provisioner = CSI_DRIVER_NAME, migratable } = options;
  return {
    metadata: { name },
    provisioner,
    parameters: migratable === undefined ? {} : { migratable },
  };
}

export function persistentVolume(
  name: string,
  options: { driver?: string; migratable?: string; csi?: boolean } = {},
): V1PersistentVolume {
  const { driver = CSI_DRIVER_NAME, migratable, csi = true } = options;
  const volumeAttributes: Record<string, string> = migratable === undefined ? {} : { migratable };
  return {
    metadata: { name },
    spec: csi ? { csi: { driver, volumeHandle: name, volumeAttributes } } : { hostPath: { path: '/srv' } },
  };
}

export function claim(
  name: string,
  options: {
    accessModes?: string[];
    volumeMode?: string;
    storageClassName?: string;
    volumeName?: string;
  } = {},
): V1PersistentVolumeClaim {
  return { metadata: { name, namespace: NAMESPACE }, spec: { ...options } };
}

export interface PodOptions {
  labels?: Record<string, string>;
  phase?: string;
  claims?: string[];
  uid?: string;
  ownerReferences?: V1OwnerReference[];
  terminating?: boolean;
}

export function pod(name: string, options: PodOptions = {}): V1Pod {
  const {
    labels,
    phase = 'Running',
    claims = [],
    uid = `uid-${name}`,
    ownerReferences,
    terminating,
  } = options;
  return {
    metadata: {
      name,
      namespace: NAMESPACE,
      uid,
      labels,
      ownerReferences,
      ...(terminating ? { deletionTimestamp: new Date('2025-01-01T00:00:00Z') } : {}),
    },
    spec: {
      containers: [{ name: 'compute' }],
      volumes: claims.map((claimName, i) => ({ name: `disk${i}`, persistentVolumeClaim: { claimName } })),
    },
    status: { phase },
  };
}

export function request(
  kind: string,
  object: unknown,
  options: { operation?: Operation; oldObject?: unknown; namespace?: string | null; group?: string } = {},
): AdmissionRequest {
  const { operation = 'CREATE', oldObject, namespace = NAMESPACE, group = '' } = options;
  return {
    uid: 'review-1',
    kind: { group, version: 'v1', kind },
    operation,
    ...(namespace === null ? {} : { namespace }),
    object,
    ...(oldObject === undefined ? {} : { oldObject }),
  };
}
