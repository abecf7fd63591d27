/**
 * The driver manifests (manifests/driver/, manifests/examples/storageclasses.yaml) agree with the
 * code they deploy: every `tandem` container's arguments parse with the real CLI (same flags, same
 * validating parsers, env vars as the pod sets them), the CSI socket and shared host paths line up
 * between containers and pods, RBAC grants what each component calls, sidecar images match the
 * versions the integration tests build and run, and (when those are built) the sidecars accept
 * their arguments.
 *
 * It sits in cli/ because jest's unit project only looks in the code folders.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import type { Command } from '@commander-js/extra-typings';
import type {
  KubernetesObject,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Container,
  V1CSIDriver,
  V1DaemonSet,
  V1Deployment,
  V1PodSpec,
  V1Role,
  V1RoleBinding,
  V1StorageClass,
  V1Volume,
} from '@kubernetes/client-node';
import { CSI_DRIVER_NAME } from '../lib/api/volume.js';
import { readManifests } from '../lib/kube/manifests.js';
import { parseStorageClassParameters } from '../lib/params/storage-class.js';
import { manifestsDir, packageRoot } from '../lib/paths.js';
import { toolsBinDir } from '../test/harness/tools.js';
import { buildProgram } from './program.js';

const NAMESPACE = 'tandem-system';
const driverObjects = await readManifests(join(manifestsDir(), 'driver'));
const exampleObjects = await readManifests(join(manifestsDir(), 'examples'));
const webhookObjects = await readManifests(join(manifestsDir(), 'webhook'));

const ofKind = <T>(objects: KubernetesObject[], kind: string): T[] =>
  objects.filter((o) => o.kind === kind) as T[];
const named = <T extends KubernetesObject>(objects: T[], name: string): T => {
  const found = objects.find((o) => o.metadata?.name === name);
  if (!found) throw new Error(`no ${objects[0]?.kind ?? 'object'} named ${name} in the manifests`);
  return found;
};

interface Workload {
  kind: string;
  name: string;
  pod: V1PodSpec;
}
const workloads: Workload[] = [
  ...ofKind<V1Deployment>(driverObjects, 'Deployment'),
  ...ofKind<V1DaemonSet>(driverObjects, 'DaemonSet'),
].map((w) => {
  const pod = w.spec?.template.spec;
  if (!pod) throw new Error(`${w.kind} ${w.metadata?.name} has no pod template`);
  return { kind: w.kind ?? '', name: w.metadata?.name ?? '', pod };
});
const workload = (name: string): Workload => {
  const found = workloads.find((w) => w.name === name);
  if (!found) throw new Error(`no workload ${name} in manifests/driver`);
  return found;
};
const container = (w: Workload, name: string): V1Container => {
  const found = w.pod.containers.find((c) => c.name === name);
  if (!found) throw new Error(`${w.name} has no container ${name}`);
  return found;
};

const webhookImage = ofKind<V1Deployment>(webhookObjects, 'Deployment')[0]?.spec?.template.spec?.containers[0]
  ?.image;
const isTandem = (c: V1Container) => c.image === webhookImage;

/** What Kubernetes puts in a container's environment for the fieldRefs these manifests use. */
const FIELD_VALUES: Record<string, string> = {
  'spec.nodeName': 'node-a',
  'status.hostIP': '10.0.0.7',
  'metadata.namespace': NAMESPACE,
};

function containerEnv(c: V1Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    const value = e.value ?? (field ? FIELD_VALUES[field] : undefined);
    if (value === undefined) throw new Error(`container ${c.name}: no test value for env ${e.name}`);
    env[e.name] = value;
  }
  return env;
}

/** Kubernetes' $(VAR) expansion of args from the container's env. */
function expand(args: string[], env: Record<string, string>, where: string): string[] {
  return args.map((arg) =>
    arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, name: string) => {
      const value = env[name];
      if (value === undefined) throw new Error(`${where}: $(${name}) names no env var of the container`);
      return value;
    }),
  );
}

interface ParsedTandem {
  command: string;
  options: Record<string, unknown>;
  /** Env vars some option of the command reads. */
  optionEnv: Set<string>;
}

/**
 * Parses a tandem container's args with the real command tree, as the container would see them
 * (only its declared env), with the command's action replaced so nothing starts.
 */
function parseTandem(c: V1Container, where: string): ParsedTandem {
  const env = containerEnv(c);
  const args = expand([...(c.command ?? []), ...(c.args ?? [])], env, where);
  const errors: string[] = [];
  const program = buildProgram({ writeOut: () => {}, writeErr: (text) => errors.push(text) });
  const sub = (program.commands as unknown as Command[]).find((cmd) => cmd.name() === args[0]);
  if (!sub) throw new Error(`${where}: "${args[0]}" is not a tandem command`);
  let options: Record<string, unknown> | undefined;
  (sub as unknown as { action(fn: (opts: Record<string, unknown>) => void): void }).action((opts) => {
    options = opts;
  });
  const saved = process.env;
  process.env = env;
  try {
    program.parse(args, { from: 'user' });
  } catch (err) {
    throw new Error(
      `${where}: tandem ${args.join(' ')} is refused by the CLI: ${errors.join('') || String(err)}`,
    );
  } finally {
    process.env = saved;
  }
  if (!options) throw new Error(`${where}: the ${args[0]} action did not run`);
  const optionEnv = new Set(
    (sub.options as readonly { envVar?: string }[])
      .map((o) => o.envVar)
      .filter((v): v is string => v !== undefined),
  );
  return { command: args[0] ?? '', options, optionEnv };
}

/** A sidecar's `--flag=value` argument (undefined when absent). */
function flag(c: V1Container, name: string): string | undefined {
  for (const arg of c.args ?? []) {
    if (arg === `--${name}`) return '';
    if (arg.startsWith(`--${name}=`)) return arg.slice(name.length + 3);
  }
  return undefined;
}
function requiredFlag(c: V1Container, name: string): string {
  const value = flag(c, name);
  if (value === undefined) throw new Error(`container ${c.name} has no --${name}`);
  return value;
}

/** The pod volume a path inside a container lives on, and the path relative to the mount. */
function onVolume(w: Workload, c: V1Container, path: string): { volume: V1Volume; rest: string } {
  const mounts = (c.volumeMounts ?? [])
    .filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length);
  const mount = mounts[0];
  if (!mount) throw new Error(`${w.name}/${c.name}: ${path} is on no mounted volume`);
  const volume = w.pod.volumes?.find((v) => v.name === mount.name);
  if (!volume) throw new Error(`${w.name}/${c.name}: mount ${mount.name} names no pod volume`);
  return { volume, rest: relative(mount.mountPath, path) };
}
const hostPathOf = (w: Workload, c: V1Container, path: string): string => {
  const { volume, rest } = onVolume(w, c, path);
  if (!volume.hostPath) throw new Error(`${w.name}/${c.name}: ${path} is not on a hostPath volume`);
  return join(volume.hostPath.path, rest);
};

const SIDECAR_MODULES: Record<string, string> = {
  'csi-provisioner': 'github.com/kubernetes-csi/external-provisioner',
  'csi-attacher': 'github.com/kubernetes-csi/external-attacher',
  'csi-resizer': 'github.com/kubernetes-csi/external-resizer',
};
/** The sidecar version test/tools/build.sh builds, from its wrapper module's go.mod. */
function builtSidecarVersion(name: string): string {
  const goMod = readFileSync(join(packageRoot(), 'test', 'tools', name, 'go.mod'), 'utf8');
  const module = SIDECAR_MODULES[name] ?? '';
  const line = goMod
    .split('\n')
    .find((l) => l.trim().startsWith(`${module}/`) || l.trim().startsWith(`${module} `));
  const version = line?.trim().split(/\s+/)[1];
  if (!version) throw new Error(`test/tools/${name}/go.mod pins no ${module}`);
  return version;
}

describe('manifests/driver', () => {
  it('declares the CSIDriver csi.tandem.dev as the design needs it', () => {
    const drivers = ofKind<V1CSIDriver>(driverObjects, 'CSIDriver');
    expect(drivers).toHaveLength(1);
    expect(drivers[0]?.metadata?.name).toBe(CSI_DRIVER_NAME);
    expect(drivers[0]?.spec).toEqual({
      attachRequired: true,
      podInfoOnMount: true,
      volumeLifecycleModes: ['Persistent'],
      fsGroupPolicy: 'File',
      storageCapacity: false,
      requiresRepublish: false,
    });
  });

  it('puts every namespaced object in tandem-system', () => {
    const clusterScoped = new Set(['CSIDriver', 'ClusterRole', 'ClusterRoleBinding']);
    for (const o of driverObjects) {
      if (clusterScoped.has(o.kind ?? '')) expect(o.metadata?.namespace).toBeUndefined();
      else
        expect(`${o.kind}/${o.metadata?.name} in ${o.metadata?.namespace}`).toBe(
          `${o.kind}/${o.metadata?.name} in ${NAMESPACE}`,
        );
    }
  });

  it('has the controller Deployment, the node plugin and the data-plane DaemonSets', () => {
    expect(workloads.map((w) => `${w.kind}/${w.name}`).sort()).toEqual([
      'DaemonSet/tandem-dataplane',
      'DaemonSet/tandem-node',
      'Deployment/tandem-controller',
    ]);
    const controller = ofKind<V1Deployment>(driverObjects, 'Deployment')[0];
    expect(controller?.spec?.replicas).toBe(2);
  });

  describe.each(workloads.map((w) => [w.name, w] as const))('%s', (_, w) => {
    it('runs `tandem` containers whose arguments and env the CLI accepts', () => {
      const tandem = w.pod.containers.filter(isTandem);
      expect(tandem).toHaveLength(1);
      for (const c of tandem) {
        const parsed = parseTandem(c, `${w.name}/${c.name}`);
        // Every env var is read by an option or expanded into an argument: none is set for nothing.
        const referenced = (c.args ?? []).join(' ');
        for (const e of c.env ?? []) {
          expect(`${e.name}: ${parsed.optionEnv.has(e.name) || referenced.includes(`$(${e.name})`)}`).toBe(
            `${e.name}: true`,
          );
        }
      }
    });

    it('uses the same tandem image as the webhook, and pinned sidecar images', () => {
      expect(webhookImage).toMatch(/^tandem:/);
      for (const c of w.pod.containers) {
        if (isTandem(c)) continue;
        expect(c.image).toMatch(/^registry\.k8s\.io\/sig-storage\/[a-z-]+:v\d+\.\d+\.\d+$/);
      }
    });

    it('runs under a ServiceAccount the manifests create', () => {
      const accounts = ofKind<KubernetesObject>(driverObjects, 'ServiceAccount');
      expect(accounts.map((a) => a.metadata?.name)).toContain(w.pod.serviceAccountName);
    });

    it('names only declared ports in probes, and declares no port twice', () => {
      const ports = w.pod.containers.flatMap((c) => c.ports ?? []);
      const names = ports.map((p) => p.name);
      expect(new Set(names).size).toBe(names.length);
      expect(new Set(ports.map((p) => p.containerPort)).size).toBe(ports.length);
      for (const c of w.pod.containers) {
        const port = c.livenessProbe?.httpGet?.port;
        if (typeof port === 'string') expect(names).toContain(port);
        expect(`${c.name} resources: ${c.resources?.requests !== undefined}`).toBe(
          `${c.name} resources: true`,
        );
      }
    });

    it('mounts only volumes the pod declares', () => {
      const volumes = new Set((w.pod.volumes ?? []).map((v) => v.name));
      for (const c of w.pod.containers)
        for (const m of c.volumeMounts ?? [])
          expect(`${c.name} mounts ${m.name}, declared: ${volumes.has(m.name)}`).toBe(
            `${c.name} mounts ${m.name}, declared: true`,
          );
    });
  });

  it('lines the controller socket up between tandem controller and its sidecars', () => {
    const w = workload('tandem-controller');
    const controller = container(w, 'controller');
    const parsed = parseTandem(controller, 'controller');
    expect(parsed.command).toBe('controller');
    const socket = onVolume(w, controller, String(parsed.options.csiEndpoint));
    expect(socket.volume.emptyDir).toBeDefined();
    for (const name of ['csi-provisioner', 'csi-attacher', 'csi-resizer', 'liveness-probe']) {
      const c = container(w, name);
      const address = onVolume(w, c, requiredFlag(c, 'csi-address'));
      expect(`${name}: ${address.volume.name}/${address.rest}`).toBe(
        `${name}: ${socket.volume.name}/${socket.rest}`,
      );
    }
  });

  it('gives the sidecars the flags the design asks for', () => {
    const w = workload('tandem-controller');
    const provisioner = container(w, 'csi-provisioner');
    expect(provisioner.args).toEqual(
      expect.arrayContaining([
        '--leader-election',
        '--feature-gates=Topology=true',
        '--extra-create-metadata',
        '--timeout=60s',
        '--default-fstype=ext4',
      ]),
    );
    expect(container(w, 'csi-attacher').args).toContain('--leader-election');
    // ControllerPublishVolume may wait --engine-wait for the engine: the attacher must outwait it.
    const engineWaitMs = Number(parseTandem(container(w, 'controller'), 'controller').options.engineWait);
    const timeout = /^(\d+)s$/.exec(requiredFlag(container(w, 'csi-attacher'), 'timeout'));
    expect(Number(timeout?.[1]) * 1000).toBeGreaterThan(engineWaitMs);
    expect(container(w, 'csi-resizer').args).toEqual(
      expect.arrayContaining(['--leader-election', '--handle-volume-inuse-error=false']),
    );
  });

  it('uses the sidecar versions test/tools/build.sh builds for the integration tests', () => {
    const w = workload('tandem-controller');
    for (const name of Object.keys(SIDECAR_MODULES)) {
      expect(container(w, name).image).toBe(
        `registry.k8s.io/sig-storage/${name}:${builtSidecarVersion(name)}`,
      );
    }
  });

  const built = Object.keys(SIDECAR_MODULES).filter((name) => existsSync(join(toolsBinDir(), name)));
  const itWhenBuilt = built.length === Object.keys(SIDECAR_MODULES).length ? it : it.skip;
  itWhenBuilt('passes the sidecars arguments they accept (the built binaries parse them)', () => {
    const w = workload('tandem-controller');
    for (const name of Object.keys(SIDECAR_MODULES)) {
      // A kubeconfig that does not exist: a sidecar that got past its flags stops right there.
      const marker = '/nonexistent/tandem-manifest-check';
      const run = spawnSync(
        join(toolsBinDir(), name),
        [...(container(w, name).args ?? []), `--kubeconfig=${marker}`],
        {
          encoding: 'utf8',
          timeout: 20_000,
        },
      );
      const output = `${run.stdout}${run.stderr}`;
      expect(
        `${name}: ${/provided but not defined|unknown flag|unrecognized|invalid (value|argument)/.test(output)}`,
      ).toBe(`${name}: false`);
      expect(`${name} reached its kubeconfig: ${output.includes(marker)}`).toBe(
        `${name} reached its kubeconfig: true`,
      );
    }
  });

  it('registers the node plugin socket with kubelet at its host path', () => {
    const w = workload('tandem-node');
    const node = container(w, 'node');
    const parsed = parseTandem(node, 'node');
    expect(parsed.command).toBe('node');
    const endpoint = String(parsed.options.csiEndpoint);
    const hostSocket = hostPathOf(w, node, endpoint);
    expect(dirname(hostSocket)).toBe(`/var/lib/kubelet/plugins/${CSI_DRIVER_NAME}`);
    const registrar = container(w, 'node-driver-registrar');
    expect(hostPathOf(w, registrar, requiredFlag(registrar, 'csi-address'))).toBe(hostSocket);
    expect(requiredFlag(registrar, 'kubelet-registration-path')).toBe(hostSocket);
    expect(hostPathOf(w, registrar, '/registration')).toBe('/var/lib/kubelet/plugins_registry');
    const probe = container(w, 'liveness-probe');
    expect(hostPathOf(w, probe, requiredFlag(probe, 'csi-address'))).toBe(hostSocket);
  });

  it('gives the node plugin the host paths and privileges it needs', () => {
    const w = workload('tandem-node');
    const node = container(w, 'node');
    expect(node.securityContext?.privileged).toBe(true);
    const kubelet = node.volumeMounts?.find((m) => m.mountPath === '/var/lib/kubelet');
    expect(kubelet?.mountPropagation).toBe('Bidirectional');
    expect(hostPathOf(w, node, '/var/lib/kubelet')).toBe('/var/lib/kubelet');
    expect(hostPathOf(w, node, '/dev')).toBe('/dev');
  });

  it('shares the engine socket dir between the data plane and the node plugin, and keeps their state apart', () => {
    const nodeW = workload('tandem-node');
    const planeW = workload('tandem-dataplane');
    const node = parseTandem(container(nodeW, 'node'), 'node').options;
    const plane = parseTandem(container(planeW, 'dataplane'), 'dataplane').options;
    expect(hostPathOf(nodeW, container(nodeW, 'node'), String(node.engineSocketDir))).toBe(
      hostPathOf(planeW, container(planeW, 'dataplane'), String(plane.engineSocketDir)),
    );
    // The data plane treats every volume-named directory in its data dir as a replica.
    const nodeState = hostPathOf(nodeW, container(nodeW, 'node'), String(node.stateDir));
    const replicas = hostPathOf(planeW, container(planeW, 'dataplane'), String(plane.dataDir));
    expect(`${nodeState}/`.startsWith(`${replicas}/`) || `${replicas}/`.startsWith(`${nodeState}/`)).toBe(
      false,
    );
  });

  it('runs the data plane reconciling, on the host network, advertising the node IP', () => {
    const w = workload('tandem-dataplane');
    const c = container(w, 'dataplane');
    const parsed = parseTandem(c, 'dataplane');
    expect(parsed.command).toBe('dataplane');
    expect(parsed.options.reconcile).toBe(true);
    expect(w.pod.hostNetwork).toBe(true);
    expect(c.securityContext?.privileged).toBe(true);
    const listen = parsed.options.listen as { port: number };
    expect(parsed.options.advertiseAddress).toEqual({
      host: FIELD_VALUES['status.hostIP'],
      port: listen.port,
    });
    expect(c.env?.find((e) => e.name === 'NODE_IP')?.valueFrom?.fieldRef?.fieldPath).toBe('status.hostIP');
    expect(c.ports?.find((p) => p.name === 'replicas')?.containerPort).toBe(listen.port);
    expect(parsed.options.nodeId).toBe(FIELD_VALUES['spec.nodeName']);
  });

  it('serves metrics where each tandem container declares its metrics port', () => {
    for (const w of workloads) {
      const c = w.pod.containers.find(isTandem);
      if (!c) continue;
      const metrics = parseTandem(c, w.name).options.metricsAddress as { port: number };
      expect(`${w.name}: ${c.ports?.find((p) => p.name === 'metrics')?.containerPort}`).toBe(
        `${w.name}: ${metrics.port}`,
      );
    }
  });
});

describe('manifests/driver RBAC', () => {
  const roles = ofKind<V1Role>(driverObjects, 'Role');
  const clusterRoles = ofKind<V1ClusterRole>(driverObjects, 'ClusterRole');
  const roleBindings = ofKind<V1RoleBinding>(driverObjects, 'RoleBinding');
  const clusterRoleBindings = ofKind<V1ClusterRoleBinding>(driverObjects, 'ClusterRoleBinding');
  const accounts = new Set(
    ofKind<KubernetesObject>(driverObjects, 'ServiceAccount').map((a) => a.metadata?.name),
  );

  const binds = (subjects: V1RoleBinding['subjects'], account: string) =>
    (subjects ?? []).some(
      (s) => s.kind === 'ServiceAccount' && s.name === account && s.namespace === NAMESPACE,
    );

  /** Whether the ServiceAccount may do verb on group/resource (in namespace, or cluster-wide). */
  function can(account: string, verb: string, group: string, resource: string, namespace?: string): boolean {
    const rules = [
      ...clusterRoleBindings
        .filter((b) => binds(b.subjects, account))
        .flatMap((b) => named(clusterRoles, b.roleRef.name).rules ?? []),
      ...(namespace === undefined
        ? []
        : roleBindings
            .filter((b) => b.metadata?.namespace === namespace && binds(b.subjects, account))
            .flatMap((b) =>
              b.roleRef.kind === 'ClusterRole'
                ? (named(clusterRoles, b.roleRef.name).rules ?? [])
                : (named(roles, b.roleRef.name).rules ?? []),
            )),
    ];
    return rules.some(
      (r) =>
        (r.apiGroups ?? []).includes(group) &&
        (r.resources ?? []).includes(resource) &&
        r.verbs.includes(verb) &&
        (r.resourceNames === undefined || r.resourceNames.length === 0),
    );
  }
  const expectCan = (
    account: string,
    verbs: string[],
    group: string,
    resource: string,
    namespace?: string,
  ) => {
    for (const verb of verbs)
      expect(
        `${account} ${verb} ${group}/${resource}: ${can(account, verb, group, resource, namespace)}`,
      ).toBe(`${account} ${verb} ${group}/${resource}: true`);
  };

  it('binds only ServiceAccounts and roles that exist', () => {
    for (const b of [...roleBindings, ...clusterRoleBindings]) {
      for (const s of b.subjects ?? []) {
        expect(s.kind).toBe('ServiceAccount');
        expect(accounts.has(s.name)).toBe(true);
        expect(s.namespace).toBe(NAMESPACE);
      }
      const pool = b.roleRef.kind === 'ClusterRole' ? clusterRoles : roles;
      expect(() => named<KubernetesObject>(pool, b.roleRef.name)).not.toThrow();
    }
  });

  it('lets the controller pod do what the three sidecars and the controller do', () => {
    const sa = 'tandem-controller';
    // csi-provisioner
    expectCan(sa, ['get', 'list', 'watch', 'create', 'patch', 'delete'], '', 'persistentvolumes');
    expectCan(sa, ['get', 'list', 'watch', 'update'], '', 'persistentvolumeclaims');
    expectCan(sa, ['get', 'list', 'watch'], 'storage.k8s.io', 'storageclasses');
    expectCan(sa, ['get', 'list', 'watch'], 'storage.k8s.io', 'csinodes');
    expectCan(sa, ['get', 'list', 'watch'], '', 'nodes');
    // csi-attacher
    expectCan(sa, ['get', 'list', 'watch', 'patch'], 'storage.k8s.io', 'volumeattachments');
    expectCan(sa, ['patch'], 'storage.k8s.io', 'volumeattachments/status');
    // csi-resizer
    expectCan(sa, ['patch'], '', 'persistentvolumeclaims/status');
    expectCan(sa, ['get', 'list', 'watch'], '', 'pods');
    // every sidecar's and the controller's leader election, in tandem-system
    expectCan(
      sa,
      ['get', 'list', 'watch', 'create', 'update', 'delete'],
      'coordination.k8s.io',
      'leases',
      NAMESPACE,
    );
    // Tandem's own
    const volumeVerbs = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
    expectCan(sa, volumeVerbs, 'tandem.dev', 'volumes');
    expectCan(sa, volumeVerbs, 'tandem.dev', 'volumes/status');
    expectCan(sa, ['create', 'get', 'delete'], '', 'secrets', NAMESPACE);
    expectCan(sa, ['create', 'patch'], '', 'events');
    expectCan(sa, ['create', 'patch'], 'events.k8s.io', 'events');
    expectCan(sa, ['get', 'list'], '', 'persistentvolumes');
    // Secrets only in tandem-system, never cluster-wide.
    expect(can(sa, 'get', '', 'secrets')).toBe(false);
  });

  it('lets the data plane do what its reconciler and engines do, and no more', () => {
    const sa = 'tandem-dataplane';
    expectCan(sa, ['get', 'list', 'watch', 'update', 'patch'], 'tandem.dev', 'volumes');
    expectCan(sa, ['update', 'patch'], 'tandem.dev', 'volumes/status');
    expectCan(sa, ['get'], '', 'secrets', NAMESPACE);
    expectCan(sa, ['create', 'get', 'update'], 'coordination.k8s.io', 'leases', NAMESPACE);
    expect(can(sa, 'delete', 'tandem.dev', 'volumes')).toBe(false);
    expect(can(sa, 'create', '', 'secrets', NAMESPACE)).toBe(false);
    expect(can(sa, 'get', '', 'secrets')).toBe(false);
  });

  it('gives the node plugin no API rights', () => {
    expect([...roleBindings, ...clusterRoleBindings].filter((b) => binds(b.subjects, 'tandem-node'))).toEqual(
      [],
    );
  });
});

describe('manifests/examples StorageClasses', () => {
  const classes = ofKind<V1StorageClass>(exampleObjects, 'StorageClass').filter((c) =>
    ['tandem', 'tandem-migratable'].includes(c.metadata?.name ?? ''),
  );

  it('has tandem and tandem-migratable', () => {
    expect(classes.map((c) => c.metadata?.name).sort()).toEqual(['tandem', 'tandem-migratable']);
  });

  it.each(['tandem', 'tandem-migratable'])(
    '%s is a valid Tandem class that waits for its consumer and expands',
    (name) => {
      const sc = named(classes, name);
      expect(sc.provisioner).toBe(CSI_DRIVER_NAME);
      expect(sc.volumeBindingMode).toBe('WaitForFirstConsumer');
      expect(sc.allowVolumeExpansion).toBe(true);
      const parsed = parseStorageClassParameters(sc.parameters);
      expect(parsed).toMatchObject({ ok: true });
      if (parsed.ok) expect(parsed.value.migratable).toBe(name === 'tandem-migratable');
    },
  );
});
