/**
 * The YAML under manifests/ as objects, and lookups into it for the manifest checks
 * (cli/manifests.test.ts): objects by kind and name, the driver's workloads and their containers,
 * a sidecar's `--flag=value` arguments, which pod volume (and host path) a container path lives on,
 * the port an HTTP probe asks, kubelet's plugin directories on the host, the sidecar versions
 * test/tools/build.sh builds, and the API rights the migrator must and must not
 * have (checked against the YAML there and against the real apiserver in
 * test/integration/migrator-rbac.test.ts).
 */
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type {
  KubernetesObject,
  V1Container,
  V1DaemonSet,
  V1Deployment,
  V1PodSpec,
  V1Volume,
} from '@kubernetes/client-node';
import { readManifests } from '../../lib/kube/manifests.js';
import { manifestsDir, packageRoot } from '../../lib/paths.js';

export const NAMESPACE = 'tandem-system';

export interface ManifestSet {
  /** manifests/driver */
  driver: KubernetesObject[];
  /** manifests/examples */
  examples: KubernetesObject[];
  /** manifests/migrator */
  migrator: KubernetesObject[];
  /** manifests/webhook */
  webhook: KubernetesObject[];
}

export async function loadManifests(): Promise<ManifestSet> {
  return {
    driver: await readManifests(join(manifestsDir(), 'driver')),
    examples: await readManifests(join(manifestsDir(), 'examples')),
    migrator: await readManifests(join(manifestsDir(), 'migrator')),
    webhook: await readManifests(join(manifestsDir(), 'webhook')),
  };
}

export const ofKind = <T>(objects: KubernetesObject[], kind: string): T[] =>
  objects.filter((o) => o.kind === kind) as T[];

export const named = <T extends KubernetesObject>(objects: T[], name: string): T => {
  const found = objects.find((o) => o.metadata?.name === name);
  if (!found) throw new Error(`no ${objects[0]?.kind ?? 'object'} named ${name} in the manifests`);
  return found;
};

/** A Deployment or DaemonSet, reduced to what the checks look at. */
export interface Workload {
  kind: string;
  name: string;
  pod: V1PodSpec;
}

export function workloadsOf(objects: KubernetesObject[]): Workload[] {
  return [...ofKind<V1Deployment>(objects, 'Deployment'), ...ofKind<V1DaemonSet>(objects, 'DaemonSet')].map(
    (w) => {
      const pod = w.spec?.template.spec;
      if (!pod) throw new Error(`${w.kind} ${w.metadata?.name} has no pod template`);
      return { kind: w.kind ?? '', name: w.metadata?.name ?? '', pod };
    },
  );
}

export function workloadNamed(workloads: Workload[], name: string): Workload {
  const found = workloads.find((w) => w.name === name);
  if (!found) throw new Error(`no workload ${name} in manifests/driver`);
  return found;
}

export function container(w: Workload, name: string): V1Container {
  const found = w.pod.containers.find((c) => c.name === name);
  if (!found) throw new Error(`${w.name} has no container ${name}`);
  return found;
}

/** A sidecar's `--flag=value` argument (undefined when absent). */
export function flag(c: V1Container, name: string): string | undefined {
  for (const arg of c.args ?? []) {
    if (arg === `--${name}`) return '';
    if (arg.startsWith(`--${name}=`)) return arg.slice(name.length + 3);
  }
  return undefined;
}

export function requiredFlag(c: V1Container, name: string): string {
  const value = flag(c, name);
  if (value === undefined) throw new Error(`container ${c.name} has no --${name}`);
  return value;
}

/** The pod volume a path inside a container lives on, and the path relative to the mount. */
export function onVolume(w: Workload, c: V1Container, path: string): { volume: V1Volume; rest: string } {
  const mounts = (c.volumeMounts ?? [])
    .filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length);
  const mount = mounts[0];
  if (!mount) throw new Error(`${w.name}/${c.name}: ${path} is on no mounted volume`);
  const volume = w.pod.volumes?.find((v) => v.name === mount.name);
  if (!volume) throw new Error(`${w.name}/${c.name}: mount ${mount.name} names no pod volume`);
  return { volume, rest: relative(mount.mountPath, path) };
}

/** The host path a path inside a container is, through the container's hostPath mount. */
export function hostPathOf(w: Workload, c: V1Container, path: string): string {
  const { volume, rest } = onVolume(w, c, path);
  if (!volume.hostPath) throw new Error(`${w.name}/${c.name}: ${path} is not on a hostPath volume`);
  return join(volume.hostPath.path, rest);
}

/** A container's HTTP liveness probe: its path and the port number it asks (a named port resolved). */
export function livenessHttpGet(w: Workload, c: V1Container): { path: string | undefined; port: number } {
  const get = c.livenessProbe?.httpGet;
  if (!get) throw new Error(`${w.name}/${c.name} has no httpGet liveness probe`);
  if (typeof get.port === 'number') return { path: get.path, port: get.port };
  const port = (c.ports ?? []).find((p) => p.name === get.port)?.containerPort;
  if (port === undefined)
    throw new Error(`${w.name}/${c.name}: the probe's port ${get.port} is not declared`);
  return { path: get.path, port };
}

/**
 * kubelet's directories on the host (its defaults under --root-dir=/var/lib/kubelet): the one it
 * watches for plugins' registration sockets, and the one CSI drivers keep their own sockets in.
 */
export const KUBELET_PLUGINS_REGISTRY = '/var/lib/kubelet/plugins_registry';
export const KUBELET_PLUGINS_DIR = '/var/lib/kubelet/plugins';

/** The CSI sidecars test/tools/build.sh builds, by container name, with their Go modules. */
export const SIDECAR_MODULES: Record<string, string> = {
  'csi-provisioner': 'github.com/kubernetes-csi/external-provisioner',
  'csi-attacher': 'github.com/kubernetes-csi/external-attacher',
  'csi-resizer': 'github.com/kubernetes-csi/external-resizer',
};

/** The sidecar version test/tools/build.sh builds, from its wrapper module's go.mod. */
export function builtSidecarVersion(name: string): string {
  const goMod = readFileSync(join(packageRoot(), 'test', 'tools', name, 'go.mod'), 'utf8');
  const module = SIDECAR_MODULES[name] ?? '';
  const line = goMod
    .split('\n')
    .find((l) => l.trim().startsWith(`${module}/`) || l.trim().startsWith(`${module} `));
  const version = line?.trim().split(/\s+/)[1];
  if (!version) throw new Error(`test/tools/${name}/go.mod pins no ${module}`);
  return version;
}

/**
 * A set of API rights: verbs on group/resource (`resource/subresource` for a subresource), in a
 * namespace or, without one, cluster-wide; `name` for a right on one object only.
 */
export interface ApiRight {
  verbs: string[];
  group: string;
  resource: string;
  namespace?: string;
  name?: string;
}

/** One verb of an ApiRight, with a label for test output. */
export interface RightCase {
  verb: string;
  right: ApiRight;
  label: string;
}

export const rightCases = (rights: readonly ApiRight[]): RightCase[] =>
  rights.flatMap((right) =>
    right.verbs.map((verb) => ({
      verb,
      right,
      label: `${verb} ${right.group || 'core'}/${right.resource}${right.name ? `/${right.name}` : ''} in ${right.namespace ?? 'all namespaces'}`,
    })),
  );

export const MIGRATOR_ACCOUNT = 'tandem-migrator';

/** What `tandem migrator` calls (migrator/*.ts, its Lease, Events and credential reads). */
export const MIGRATOR_RIGHTS: ApiRight[] = [
  { verbs: ['get', 'list', 'watch', 'update'], group: 'tandem.dev', resource: 'volumes' },
  { verbs: ['update'], group: 'tandem.dev', resource: 'volumes/status' },
  { verbs: ['get', 'list', 'watch'], group: '', resource: 'pods' },
  { verbs: ['get', 'list', 'watch'], group: 'kubevirt.io', resource: 'virtualmachineinstances' },
  { verbs: ['get', 'list', 'watch'], group: 'kubevirt.io', resource: 'virtualmachineinstancemigrations' },
  { verbs: ['get', 'list', 'watch'], group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions' },
  { verbs: ['get', 'list', 'watch'], group: '', resource: 'persistentvolumes' },
  { verbs: ['get'], group: '', resource: 'persistentvolumeclaims' },
  { verbs: ['create', 'patch'], group: 'events.k8s.io', resource: 'events' },
  { verbs: ['create', 'patch'], group: '', resource: 'events' },
  // node-registration Leases, and creating its own
  {
    verbs: ['get', 'list', 'watch', 'create'],
    group: 'coordination.k8s.io',
    resource: 'leases',
    namespace: NAMESPACE,
  },
  {
    verbs: ['get', 'update'],
    group: 'coordination.k8s.io',
    resource: 'leases',
    namespace: NAMESPACE,
    name: 'tandem-migrator',
  },
  { verbs: ['get'], group: '', resource: 'secrets', namespace: NAMESPACE },
];

/** What the migrator must not be able to do: it decides through the Volume, and reads only. */
export const MIGRATOR_FORBIDDEN: ApiRight[] = [
  // credentials: only in tandem-system, only one by one
  { verbs: ['get', 'list'], group: '', resource: 'secrets' },
  { verbs: ['get'], group: '', resource: 'secrets', namespace: 'default' },
  {
    verbs: ['list', 'watch', 'create', 'update', 'delete'],
    group: '',
    resource: 'secrets',
    namespace: NAMESPACE,
  },
  { verbs: ['create', 'update', 'patch', 'delete'], group: '', resource: 'pods' },
  { verbs: ['delete'], group: '', resource: 'pods', namespace: 'default' },
  { verbs: ['update', 'patch'], group: '', resource: 'nodes' },
  { verbs: ['create', 'delete'], group: 'tandem.dev', resource: 'volumes' },
  { verbs: ['update', 'patch', 'delete'], group: 'kubevirt.io', resource: 'virtualmachineinstances' },
  {
    verbs: ['update', 'patch', 'delete'],
    group: 'kubevirt.io',
    resource: 'virtualmachineinstancemigrations',
  },
  { verbs: ['create', 'delete'], group: '', resource: 'persistentvolumes' },
  // only its own Lease: the nodes' Leases are the data plane's to write
  { verbs: ['update', 'delete'], group: 'coordination.k8s.io', resource: 'leases', namespace: NAMESPACE },
];

export const SHARE_MANAGER_ACCOUNT = 'tandem-share-manager';

/** What `tandem share-manager` calls (driver/share-manager/endpoint.ts): its EndpointSlice and heartbeat Lease. */
export const SHARE_MANAGER_RIGHTS: ApiRight[] = [
  {
    verbs: ['get', 'create', 'update'],
    group: 'discovery.k8s.io',
    resource: 'endpointslices',
    namespace: NAMESPACE,
  },
  {
    verbs: ['get', 'create', 'update'],
    group: 'coordination.k8s.io',
    resource: 'leases',
    namespace: NAMESPACE,
  },
];

/** A share manager serves one export: no credentials, no pods, no Volumes, nothing outside tandem-system. */
export const SHARE_MANAGER_FORBIDDEN: ApiRight[] = [
  { verbs: ['get', 'list'], group: '', resource: 'secrets', namespace: NAMESPACE },
  { verbs: ['create', 'delete'], group: '', resource: 'pods', namespace: NAMESPACE },
  { verbs: ['create', 'update', 'delete'], group: '', resource: 'services', namespace: NAMESPACE },
  { verbs: ['get', 'update'], group: 'tandem.dev', resource: 'volumes' },
  { verbs: ['delete', 'list'], group: 'discovery.k8s.io', resource: 'endpointslices', namespace: NAMESPACE },
  {
    verbs: ['create', 'update'],
    group: 'discovery.k8s.io',
    resource: 'endpointslices',
    namespace: 'default',
  },
  { verbs: ['delete'], group: 'coordination.k8s.io', resource: 'leases', namespace: NAMESPACE },
  { verbs: ['update'], group: 'coordination.k8s.io', resource: 'leases', namespace: 'kube-system' },
];

export const CONTROLLER_ACCOUNT = 'tandem-controller';

/** What the controller calls for share managers (driver/controller/share-cluster.ts), in tandem-system. */
export const CONTROLLER_SHARE_RIGHTS: ApiRight[] = [
  { verbs: ['get', 'create', 'delete'], group: '', resource: 'pods', namespace: NAMESPACE },
  { verbs: ['get', 'create', 'delete'], group: '', resource: 'services', namespace: NAMESPACE },
  {
    verbs: ['get', 'create', 'update', 'delete'],
    group: 'discovery.k8s.io',
    resource: 'endpointslices',
    namespace: NAMESPACE,
  },
  { verbs: ['get', 'delete'], group: 'coordination.k8s.io', resource: 'leases', namespace: NAMESPACE },
  { verbs: ['get'], group: 'storage.k8s.io', resource: 'storageclasses' },
];

/** Share managers live in tandem-system only: the controller makes no pod, Service or slice elsewhere. */
export const CONTROLLER_SHARE_FORBIDDEN: ApiRight[] = [
  { verbs: ['create', 'delete'], group: '', resource: 'pods', namespace: 'default' },
  { verbs: ['update', 'patch'], group: '', resource: 'pods', namespace: NAMESPACE },
  { verbs: ['create', 'delete'], group: '', resource: 'services', namespace: 'default' },
  {
    verbs: ['create', 'update'],
    group: 'discovery.k8s.io',
    resource: 'endpointslices',
    namespace: 'default',
  },
];
