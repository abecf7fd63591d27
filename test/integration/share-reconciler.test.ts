/**
 * The controller's share-manager reconciler against the real apiserver: from a ReadWriteMany
 * Filesystem Volume to its Service and Pod (placed as the class asked), the engine moved to the
 * Pod's node, ControllerPublishVolume answering with the Service address once the share manager
 * advertises itself, and replacement when the Pod fails, its node is lost, or its heartbeat stops;
 * then DeleteVolume removing it all.
 *
 * What the test plays, because this suite runs the apiserver alone (the real-node suite has the
 * rest): the scheduler (a Binding, the API the scheduler itself uses), the kubelet (the Pod's
 * status: phase and PodScheduled, as kubelet and scheduler write them), the data plane (an engine
 * appears in status.engines when spec.engines asks for it: dataplane-reconciler.test.ts tests the
 * real one) and the share manager's endpoint, which is the product's own KubeShareEndpoint.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import {
  CoordinationV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  V1MicroTime,
  type V1Pod,
} from '@kubernetes/client-node';
import { KubeControllerCluster } from '../../driver/controller/cluster.js';
import { deleteVolume } from '../../driver/controller/provision.js';
import { controllerPublishVolume } from '../../driver/controller/publish.js';
import { KubeShareCluster } from '../../driver/controller/share-cluster.js';
import { ShareControllerMetrics } from '../../driver/controller/share-metrics.js';
import { ShareReconciler } from '../../driver/controller/share-reconciler.js';
import type { EventSink } from '../../driver/controller/volume-events.js';
import { NFS_OPTIONS_KEY, NFS_SERVER_KEY } from '../../driver/csi/publish-context.js';
import {
  FREE_BYTES_ANNOTATION,
  NODE_LABEL,
  nodeLeaseName,
  REPLICA_ADDRESS_ANNOTATION,
} from '../../driver/dataplane/node-registration.js';
import { heartbeatTimings, KubeShareEndpoint } from '../../driver/share-manager/endpoint.js';
import { shareManagerName } from '../../driver/share-manager/names.js';
import { newVolume, type Volume } from '../../lib/api/volume.js';
import { KubeLeaseApi } from '../../lib/kube/leader-election.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { silentLogger } from '../../lib/log.js';
import { createRegistry } from '../../lib/metrics.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';
import { mountCapability } from '../harness/csi-requests.js';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const discovery = kc.makeApiClient(DiscoveryV1Api);
const volumes = new VolumeClient(kc);
const namespace = uniqueName('share-reconcile');
const volumeId = uniqueName('pvc-share');
const name = shareManagerName(volumeId);
const log = silentLogger();
const cluster = new KubeControllerCluster(kc, namespace);
const shares = new KubeShareCluster(kc, namespace);
const events: { reason: string; type: string; message: string }[] = [];
const sink: EventSink = { record: (_, e) => events.push(e) };
const shareMetrics = new ShareControllerMetrics(createRegistry('share-reconciler-test'));
/** Replacements the reconciler counted for `cause`. */
async function failovers(cause: string): Promise<number> {
  return (await shareMetrics.failovers.get()).values.find((v) => v.labels.cause === cause)?.value ?? 0;
}
const reconciler = new ShareReconciler({
  cluster,
  shares,
  events: sink,
  log,
  metrics: shareMetrics,
  engineWaitMs: 10_000,
  pod: {
    namespace,
    image: 'tandem:0.1.0',
    serviceAccountName: 'default',
    defaults: {
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      tolerations: [{ key: 'storage', operator: 'Exists', effect: 'NoSchedule' }],
    },
  },
});
let stopDataPlane = false;
/** Nodes whose data plane is gone: their engines stay registered until the controller strikes them. */
const lostNodes = new Set<string>();
let dataPlane: Promise<void> | undefined;

async function registerNode(node: string, renewedAgoMs = 0): Promise<void> {
  const body = {
    metadata: {
      name: nodeLeaseName(node),
      labels: { [NODE_LABEL]: node },
      annotations: {
        [REPLICA_ADDRESS_ANNOTATION]: `198.18.0.1:9500`,
        [FREE_BYTES_ANNOTATION]: String(2 ** 34),
      },
    },
    spec: {
      holderIdentity: node,
      leaseDurationSeconds: 40,
      renewTime: new V1MicroTime(Date.now() - renewedAgoMs),
    },
  };
  const current = await coordination
    .readNamespacedLease({ name: nodeLeaseName(node), namespace })
    .catch(() => undefined);
  if (current === undefined) await coordination.createNamespacedLease({ namespace, body });
  else
    await coordination.replaceNamespacedLease({
      name: nodeLeaseName(node),
      namespace,
      body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } },
    });
}

/** Plays the nodes' data planes: an engine registers where spec.engines asks, and leaves where it does not. */
async function followEngines(): Promise<void> {
  while (!stopDataPlane) {
    const volume = await volumes.get(volumeId).catch(() => undefined);
    if (volume !== undefined) {
      const wanted = (volume.spec.engines ?? []).map((e) => e.node);
      const current = volume.status?.engines ?? [];
      const engines = [
        ...current.filter((e) => wanted.includes(e.node) || lostNodes.has(e.node)),
        ...wanted
          .filter((node) => !current.some((e) => e.node === node))
          .map((node) => ({ node, id: `engine-${node}-${Date.now()}` })),
      ];
      if (engines.map((e) => e.id).join() !== current.map((e) => e.id).join()) {
        volume.status = { ...volume.status, engines, epoch: (volume.status?.epoch ?? 1) + 1 };
        await volumes.replaceStatus(volume).catch(() => undefined);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const readPod = () => core.readNamespacedPod({ name, namespace }).catch(() => undefined);

/** Plays the scheduler (a Binding) and the kubelet (phase Running, the Pod's IP). */
async function scheduleAndRun(node: string): Promise<V1Pod> {
  await core.createNamespacedPodBinding({
    name,
    namespace,
    body: { metadata: { name }, target: { kind: 'Node', name: node } },
  });
  return setPodStatus({
    phase: 'Running',
    podIP: '198.18.9.7',
    conditions: [{ type: 'Ready', status: 'True' }],
  });
}

async function setPodStatus(status: V1Pod['status']): Promise<V1Pod> {
  const pod = (await readPod()) as V1Pod;
  pod.status = { ...pod.status, ...status };
  return core.replaceNamespacedPodStatus({ name, namespace, body: pod });
}

const pass = async () => {
  await reconciler.reconcileAll([await volumes.get(volumeId)]);
  await reconciler.settled();
};
const context = () => ({ logger: log, signal: new AbortController().signal });

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  for (const node of ['node-1', 'node-2', 'node-3']) await registerNode(node);
  const created = await volumes.create(
    newVolume(volumeId, {
      sizeBytes: 64 * 1024 * 1024,
      numberOfReplicas: 2,
      accessMode: 'ReadWriteMany',
      volumeMode: 'Filesystem',
      fsType: 'ext4',
      engines: [],
      share: {
        nfsOptions: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5',
        fastFailover: true,
        nodeSelector: { role: 'nfs' },
        tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'nfs', effect: 'NoSchedule' }],
        nodes: ['node-2', 'node-3'],
      },
    }),
  );
  created.status = {
    epoch: 1,
    state: 'Detached',
    replicas: [
      { node: 'node-1', address: '198.18.0.1:9500', mode: 'ReadWrite' },
      { node: 'node-3', address: '198.18.0.3:9500', mode: 'ReadWrite' },
    ],
    engines: [],
  };
  await volumes.replaceStatus(created);
  dataPlane = followEngines();
}, 60_000);

afterAll(async () => {
  stopDataPlane = true;
  await dataPlane;
  await volumes.delete(volumeId).catch(() => undefined);
  await core.deleteNamespace({ name: namespace }).catch(() => undefined);
});

test("creates the Service and a Pod placed as the class asked, merged with the controller's defaults", async () => {
  await pass();
  const service = await core.readNamespacedService({ name, namespace });
  expect(service.spec?.selector).toBeUndefined();
  const pod = (await readPod()) as V1Pod;
  expect(pod.spec?.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', role: 'nfs' });
  // The class's, then the defaults' (the apiserver's DefaultTolerationSeconds adds its two after them).
  expect(pod.spec?.tolerations?.map((t) => t.key).slice(0, 2)).toEqual(['dedicated', 'storage']);
  expect(
    pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
  ).toEqual([
    {
      matchExpressions: [
        { key: 'topology.csi.tandem.dev/node', operator: 'In', values: ['node-2', 'node-3'] },
      ],
    },
  ]);
  expect(pod.spec?.containers[0]?.args).toEqual(
    expect.arrayContaining(['--fast-failover', '--fs-type', 'ext4']),
  );
  // A second pass changes nothing.
  await pass();
  expect((await readPod())?.metadata?.uid).toBe(pod.metadata?.uid);
});

test('an unschedulable share manager is said on the claim once, with what to check', async () => {
  await setPodStatus({
    phase: 'Pending',
    conditions: [
      {
        type: 'PodScheduled',
        status: 'False',
        reason: 'Unschedulable',
        message: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
      },
    ],
  });
  await pass();
  await pass();
  const said = events.filter((e) => e.reason === 'ShareManagerUnschedulable');
  expect(said).toHaveLength(1);
  expect(said[0]?.message).toMatch(/didn't match.*shareManagerNodeSelector/);
});

test('moves the engine to the scheduled node; ControllerPublishVolume answers with the Service address once it serves', async () => {
  const pod = await scheduleAndRun('node-2');
  await pass();
  expect((await volumes.get(volumeId)).spec.engines).toEqual([{ node: 'node-2' }]);
  expect((await volumes.get(volumeId)).status?.engines?.map((e) => e.node)).toEqual(['node-2']);

  const publishing = controllerPublishVolume(
    { cluster, shares, engineWaitMs: 15_000, pollMs: 100 },
    { volume_id: volumeId, node_id: 'node-1', volume_capability: mountCapability('MULTI_NODE_MULTI_WRITER') },
    context(),
  );
  // The share manager's own endpoint code, as the Pod runs it, with the Pod's UID as identity.
  const endpoint = new KubeShareEndpoint({
    kc,
    leases: new KubeLeaseApi(kc),
    namespace,
    volumeId,
    nodeName: 'node-2',
    identity: pod.metadata?.uid ?? '',
    timings: { ...heartbeatTimings(true), renewMs: 300_000 },
    logger: log,
  });
  await endpoint.publish({ address: '198.18.9.7', port: 2049 });
  const { publish_context } = await publishing;
  const service = await core.readNamespacedService({ name, namespace });
  expect(publish_context).toEqual({
    [NFS_SERVER_KEY]: service.spec?.clusterIP,
    [NFS_OPTIONS_KEY]: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5',
  });
  // The client node got no engine: only the share manager's node has one.
  expect((await volumes.get(volumeId)).spec.engines).toEqual([{ node: 'node-2' }]);
  await pass();
  expect(events.filter((e) => e.reason === 'ShareManagerStarted').map((e) => e.message)).toEqual([
    expect.stringMatching(/serves volume .* from node node-2/),
  ]);
}, 60_000);

test('a share manager whose heartbeat stopped is replaced: endpoint cleared, Pod deleted, Event with the reason', async () => {
  const before = await readPod();
  // The share manager stopped renewing a minute ago (its Lease lasts 6 s with fast failover).
  const heartbeat = await coordination.readNamespacedLease({ name, namespace });
  expect(heartbeat.spec?.holderIdentity).toBe(before?.metadata?.uid);
  heartbeat.spec = { ...heartbeat.spec, renewTime: new V1MicroTime(Date.now() - 60_000) };
  await coordination.replaceNamespacedLease({ name, namespace, body: heartbeat });
  await pass();
  const slice = await discovery.readNamespacedEndpointSlice({ name, namespace });
  expect(slice.endpoints ?? []).toEqual([]);
  expect(events.at(-1)).toMatchObject({
    type: 'Warning',
    reason: 'ShareManagerFailedOver',
    message: expect.stringMatching(/stopped renewing its heartbeat/),
  });
  // Forced (no grace): the Pod is gone at once, and the next pass makes its successor.
  expect((await readPod())?.metadata?.uid).not.toBe(before?.metadata?.uid);
  expect(await failovers('heartbeat_expired')).toBe(1);
  await pass();
  const next = await readPod();
  expect(next?.metadata?.uid).toBeDefined();
  expect(next?.metadata?.uid).not.toBe(before?.metadata?.uid);
}, 60_000);

test("a share manager on a lost node is force-deleted and its successor's node gets the engine, the lost one struck", async () => {
  await scheduleAndRun('node-3');
  await pass();
  expect((await volumes.get(volumeId)).spec.engines).toEqual([{ node: 'node-3' }]);
  const lostPod = await readPod();
  await registerNode('node-3', 120_000); // its data plane stopped renewing two minutes ago
  lostNodes.add('node-3');
  await pass();
  expect(events.at(-1)?.message).toMatch(/node node-3 is lost/);
  expect(await failovers('node_lost')).toBe(1);
  await pass();
  const next = await readPod();
  expect(next?.metadata?.uid).not.toBe(lostPod?.metadata?.uid);
  // The scheduler may still see node-3 Ready; the successor is kept off it all the same.
  expect(
    next?.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms[0]
      ?.matchExpressions,
  ).toContainEqual({ key: 'topology.csi.tandem.dev/node', operator: 'NotIn', values: ['node-3'] });
  await scheduleAndRun('node-2');
  const epochBefore = (await volumes.get(volumeId)).status?.epoch ?? 0;
  await pass();
  // Nobody on node-3 could stop its engine: the controller struck it with a new epoch.
  const volume: Volume = await volumes.get(volumeId);
  expect(volume.spec.engines).toEqual([{ node: 'node-2' }]);
  expect(volume.status?.engines?.map((e) => e.node)).toEqual(['node-2']);
  expect(volume.status?.epoch ?? 0).toBeGreaterThan(epochBefore);
  lostNodes.delete('node-3');
  await registerNode('node-3');
}, 60_000);

test('share managers that keep failing before they serve are retried ever more slowly, like CrashLoopBackOff', async () => {
  await setPodStatus({ phase: 'Failed' });
  const crashesBefore = await failovers('failed_start');
  await pass(); // the first failure in a row: replaced at once
  expect(events.at(-1)?.message).toMatch(/ended \(Failed\)/);
  // It never served: a failed start, not a failover.
  expect(await failovers('failed_start')).toBe(crashesBefore + 1);
  await pass();
  const second = await readPod();
  expect(second?.metadata?.uid).toBeDefined();
  await scheduleAndRun('node-2');
  await setPodStatus({ phase: 'Failed' });
  await pass(); // the second: its successor waits 10 s
  await pass();
  expect(await readPod()).toBeUndefined();
}, 60_000);

test('DeleteVolume removes the share manager, its Service, slice and Lease, and its engine, then the Volume', async () => {
  await new Promise((resolve) => setTimeout(resolve, 10_500)); // the back-off above ends
  await pass();
  await scheduleAndRun('node-2');
  await deleteVolume({ cluster, shares }, { volume_id: volumeId }, context());
  // The Pod runs (on node-2): it is deleted with its grace period, which its kubelet ends by
  // confirming the deletion once the containers stopped; the test plays that confirmation.
  expect((await readPod())?.metadata?.deletionTimestamp).toBeDefined();
  await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 });
  await eventually(async () => ((await readPod()) === undefined ? true : undefined), 20_000);
  await expect(core.readNamespacedService({ name, namespace })).rejects.toMatchObject({ code: 404 });
  await expect(coordination.readNamespacedLease({ name, namespace })).rejects.toMatchObject({ code: 404 });
  await expect(volumes.get(volumeId)).rejects.toMatchObject({ code: 404 });
}, 60_000);
