/**
 * The driver and migrator manifests (manifests/driver/, manifests/migrator/,
 * manifests/examples/storageclasses.yaml) agree with the code they deploy: every `tandem` container's arguments parse with the real CLI (same flags, same
 * validating parsers, env vars as the pod sets them), the CSI socket and shared host paths line up
 * between containers and pods (the node plugin's kubelet registration among them), liveness probes
 * reach the `tandem` containers' /healthz, RBAC grants what each component calls, sidecar images match the
 * versions the integration tests build and run, and (when those are built) the sidecars accept
 * their arguments. The lookups live in test/harness/driver-manifests.ts, the CLI parsing in
 * test/harness/tandem-container-args.ts, the RBAC evaluation in test/harness/rbac-check.ts.
 *
 * It sits in cli/ because jest's unit project only looks in the code folders.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type {
  KubernetesObject,
  V1Container,
  V1CSIDriver,
  V1Deployment,
  V1PersistentVolumeClaim,
  V1Pod,
  V1PodDisruptionBudget,
  V1StorageClass,
} from '@kubernetes/client-node';
import { registrationSocketPath } from '../driver/node/registration.js';
import { toolsBinDir } from '../lab/tools.js';
import { CSI_DRIVER_NAME } from '../lib/api/volume.js';
import { parseStorageClassParameters } from '../lib/params/storage-class.js';
import {
  builtSidecarVersion,
  CONTROLLER_ACCOUNT,
  CONTROLLER_SHARE_FORBIDDEN,
  CONTROLLER_SHARE_RIGHTS,
  container,
  hostPathOf,
  KUBELET_PLUGINS_DIR,
  KUBELET_PLUGINS_REGISTRY,
  livenessHttpGet,
  loadManifests,
  MIGRATOR_ACCOUNT,
  MIGRATOR_FORBIDDEN,
  MIGRATOR_RIGHTS,
  NAMESPACE,
  named,
  ofKind,
  onVolume,
  type RightCase,
  requiredFlag,
  rightCases,
  SHARE_MANAGER_ACCOUNT,
  SHARE_MANAGER_FORBIDDEN,
  SHARE_MANAGER_RIGHTS,
  SIDECAR_MODULES,
  type Workload,
  workloadNamed,
  workloadsOf,
} from '../test/harness/driver-manifests.js';
import { RbacCheck } from '../test/harness/rbac-check.js';
import { FIELD_VALUES, parseTandem } from '../test/harness/tandem-container-args.js';

const manifests = await loadManifests();
const driverObjects = manifests.driver;
const exampleObjects = manifests.examples;
const workloads = workloadsOf(driverObjects);
const workload = (name: string): Workload => workloadNamed(workloads, name);

const webhookImage = ofKind<V1Deployment>(manifests.webhook, 'Deployment')[0]?.spec?.template.spec
  ?.containers[0]?.image;
const isTandem = (c: V1Container) => c.image === webhookImage;

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
    for (const name of ['csi-provisioner', 'csi-attacher', 'csi-resizer']) {
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
        '--extra-create-metadata',
        '--timeout=60s',
        '--default-fstype=ext4',
      ]),
    );
    // Topology is GA in external-provisioner v6 and its gate is deprecated: naming it would stop a
    // later release from starting.
    expect(provisioner.args?.some((a) => a.startsWith('--feature-gates'))).toBe(false);
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

  it('registers the node plugin with kubelet itself, naming its socket at its host path', () => {
    const w = workload('tandem-node');
    // No node-driver-registrar or livenessprobe: `tandem node` does their work.
    expect(w.pod.containers.map((c) => c.name)).toEqual(['node']);
    const node = container(w, 'node');
    const parsed = parseTandem(node, 'node');
    expect(parsed.command).toBe('node');
    const hostSocket = hostPathOf(w, node, String(parsed.options.csiEndpoint));
    expect(dirname(hostSocket)).toBe(`${KUBELET_PLUGINS_DIR}/${CSI_DRIVER_NAME}`);
    // GetInfo's endpoint: the plugin-dir hostPath plus the socket's name, where kubelet dials it.
    expect(parsed.options.kubeletRegistrationPath).toBe(hostSocket);
    const registrationDir = String(parsed.options.kubeletRegistrationDir);
    expect(registrationDir).not.toBe('');
    expect(hostPathOf(w, node, registrationDir)).toBe(KUBELET_PLUGINS_REGISTRY);
    // kubelet finds the socket by watching the directory; a name starting with '.' it would skip.
    expect(hostPathOf(w, node, registrationSocketPath(registrationDir))).toBe(
      `${KUBELET_PLUGINS_REGISTRY}/${CSI_DRIVER_NAME}-reg.sock`,
    );
    const registry = onVolume(w, node, registrationDir).volume;
    expect(registry.hostPath?.type).toBe('Directory');
  });

  it("probes each tandem container's own /healthz on its metrics port (no livenessprobe sidecar)", () => {
    for (const name of ['tandem-controller', 'tandem-node']) {
      const w = workload(name);
      const c = w.pod.containers.find(isTandem);
      if (!c) throw new Error(`${name} has no tandem container`);
      const metrics = parseTandem(c, name).options.metricsAddress as { port: number };
      expect(`${name}: ${JSON.stringify(livenessHttpGet(w, c))}`).toBe(
        `${name}: ${JSON.stringify({ path: '/healthz', port: metrics.port })}`,
      );
      expect(w.pod.containers.filter((x) => x.image?.includes('/livenessprobe:')).map((x) => x.name)).toEqual(
        [],
      );
    }
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
  const rbac = new RbacCheck(driverObjects, NAMESPACE);
  const { roles, clusterRoles, roleBindings, clusterRoleBindings, accounts } = rbac;
  const binds = rbac.binds.bind(rbac);
  const can = rbac.can.bind(rbac);

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

  it.each([
    ['every right the share manager uses', SHARE_MANAGER_RIGHTS, true],
    ['none of the rights it must not have', SHARE_MANAGER_FORBIDDEN, false],
  ] as const)('grants the share manager %s', (_, rights, granted) => {
    const cases = rightCases(rights);
    expect(
      cases.map(
        (c) =>
          `${c.label}: ${can(SHARE_MANAGER_ACCOUNT, c.verb, c.right.group, c.right.resource, c.right.namespace)}`,
      ),
    ).toEqual(cases.map((c) => `${c.label}: ${granted}`));
  });

  it.each([
    ['every right it uses for share managers', CONTROLLER_SHARE_RIGHTS, true],
    ['no share-manager right outside tandem-system', CONTROLLER_SHARE_FORBIDDEN, false],
  ] as const)('grants the controller %s', (_, rights, granted) => {
    const cases = rightCases(rights);
    expect(
      cases.map(
        (c) =>
          `${c.label}: ${can(CONTROLLER_ACCOUNT, c.verb, c.right.group, c.right.resource, c.right.namespace)}`,
      ),
    ).toEqual(cases.map((c) => `${c.label}: ${granted}`));
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

describe('manifests/examples: the shared (RWX over NFS) class and its demo', () => {
  const shared = named(ofKind<V1StorageClass>(exampleObjects, 'StorageClass'), 'tandem-shared');

  it('tandem-shared is a valid class with fast failover, not migratable', () => {
    expect(shared.provisioner).toBe(CSI_DRIVER_NAME);
    const parsed = parseStorageClassParameters(shared.parameters);
    expect(parsed).toMatchObject({ ok: true, value: { migratable: false, fastFailover: true } });
  });

  it('the date demo claims ReadWriteMany Filesystem of that class, and both pods mount it', () => {
    const claim = named(
      ofKind<V1PersistentVolumeClaim>(exampleObjects, 'PersistentVolumeClaim'),
      'shared-dates',
    );
    expect(claim?.spec).toMatchObject({
      storageClassName: 'tandem-shared',
      accessModes: ['ReadWriteMany'],
      volumeMode: 'Filesystem',
    });
    const pods = ofKind<V1Pod>(exampleObjects, 'Pod').filter(
      (p) => p.metadata?.labels?.app === 'rwx-date-demo',
    );
    expect(pods.map((p) => p.spec?.volumes?.[0]?.persistentVolumeClaim?.claimName)).toEqual([
      claim?.metadata?.name,
      claim?.metadata?.name,
    ]);
  });
});

describe('manifests/migrator', () => {
  const objects = manifests.migrator;
  const deployment = named(ofKind<V1Deployment>(objects, 'Deployment'), MIGRATOR_ACCOUNT);
  const migrator = workloadNamed(workloadsOf(objects), MIGRATOR_ACCOUNT);
  const pod = migrator.pod;
  const labels = { 'app.kubernetes.io/name': 'tandem', 'app.kubernetes.io/component': 'migrator' };
  const rbac = new RbacCheck(objects, NAMESPACE);

  it('is one Deployment of 2 replicas, a PDB keeping one, every namespaced object in tandem-system', () => {
    expect(workloadsOf(objects)).toHaveLength(1);
    expect(deployment.spec?.replicas).toBe(2);
    expect(deployment.spec?.template.metadata?.labels).toEqual(labels);
    expect(deployment.spec?.selector.matchLabels).toEqual(labels);
    const pdbs = ofKind<V1PodDisruptionBudget>(objects, 'PodDisruptionBudget');
    expect(pdbs.map((p) => [p.spec?.minAvailable, p.spec?.selector?.matchLabels])).toEqual([[1, labels]]);
    const clusterScoped = new Set(['ClusterRole', 'ClusterRoleBinding']);
    for (const o of objects)
      expect(`${o.kind}/${o.metadata?.name} in ${o.metadata?.namespace}`).toBe(
        `${o.kind}/${o.metadata?.name} in ${clusterScoped.has(o.kind ?? '') ? undefined : NAMESPACE}`,
      );
  });

  it('runs `tandem migrator` with arguments and env the CLI accepts, probes and metrics on its port', () => {
    expect(pod.containers.map((c) => [c.name, isTandem(c)])).toEqual([['migrator', true]]);
    const c = container(migrator, 'migrator');
    const parsed = parseTandem(c, 'tandem-migrator');
    expect(parsed.command).toBe('migrator');
    // Its Lease, the node Leases and the credentials are looked for where the pod runs.
    expect(parsed.options.namespace).toBe(FIELD_VALUES['metadata.namespace']);
    for (const e of c.env ?? []) expect(`${e.name}: ${parsed.optionEnv.has(e.name)}`).toBe(`${e.name}: true`);
    const metrics = parsed.options.metricsAddress as { port: number };
    expect(c.ports).toEqual([{ name: 'metrics', containerPort: metrics.port }]);
    // lib/http-admin.ts serves GET /healthz (and /metrics), nothing else, on that port.
    for (const probe of [c.livenessProbe, c.readinessProbe])
      expect(probe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect([c.resources?.requests?.memory, c.resources?.limits?.memory].every(Boolean)).toBe(true);
  });

  it('runs restricted, spread over nodes, under a ServiceAccount the manifests create', () => {
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    expect(pod.containers[0]?.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    const spread = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0];
    expect(spread?.podAffinityTerm.topologyKey).toBe('kubernetes.io/hostname');
    expect(spread?.podAffinityTerm.labelSelector?.matchLabels).toEqual(labels);
    expect(pod.serviceAccountName).toBe(MIGRATOR_ACCOUNT);
    expect(rbac.accounts.has(MIGRATOR_ACCOUNT)).toBe(true);
    for (const b of [...rbac.roleBindings, ...rbac.clusterRoleBindings]) {
      expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: MIGRATOR_ACCOUNT, namespace: NAMESPACE }]);
      const pool = b.roleRef.kind === 'ClusterRole' ? rbac.clusterRoles : rbac.roles;
      expect(() => named<KubernetesObject>(pool, b.roleRef.name)).not.toThrow();
    }
  });

  // RbacCheck counts only rules for every object; a right on one named object (its own Lease) is
  // also granted by the Role's rules limited to that name.
  const allows = ({ verb, right }: RightCase): boolean =>
    rbac.can(MIGRATOR_ACCOUNT, verb, right.group, right.resource, right.namespace) ||
    (right.name !== undefined &&
      rbac.roleBindings
        .filter((b) => b.metadata?.namespace === right.namespace && rbac.binds(b.subjects, MIGRATOR_ACCOUNT))
        .flatMap((b) => named(rbac.roles, b.roleRef.name).rules ?? [])
        .some(
          (r) =>
            (r.apiGroups ?? []).includes(right.group) &&
            (r.resources ?? []).includes(right.resource) &&
            r.verbs.includes(verb) &&
            (r.resourceNames ?? []).includes(right.name ?? ''),
        ));

  it.each([
    ['every right the migrator uses', MIGRATOR_RIGHTS, true],
    ['none of the rights it must not have', MIGRATOR_FORBIDDEN, false],
  ] as const)('grants %s', (_, rights, granted) => {
    const cases = rightCases(rights);
    expect(cases.map((c) => `${c.label}: ${allows(c)}`)).toEqual(cases.map((c) => `${c.label}: ${granted}`));
  });
});
