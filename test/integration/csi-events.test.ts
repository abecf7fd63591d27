/**
 * The Events the controller reports on the claim (docs/csi.md, "Events"), end to end: the whole
 * driver as real processes (CsiStack: `tandem controller`, per node `tandem dataplane --reconcile`
 * + `tandem node`) on the shared test apiserver, with the claim named by external-provisioner's
 * --extra-create-metadata parameters, and the Events read back from the events.k8s.io API.
 *
 * - NoRoomForReplicas (Warning): CreateVolume asks for 3 replicas on 2 nodes.
 * - ReplicaFailed (Warning), then RebuildStarted and RebuildFinished (Normal): a staged volume is
 *   written while the data plane of the node holding its second replica is SIGKILLed, then restarted.
 * - NodeLost (Warning), once: a node's data plane is stopped and its registration Lease (shortened
 *   here with --node-lease-duration, checked every second with --node-check-interval) expires.
 *
 * The claims need not exist (an Event may be about any object); they live in the stack's namespace,
 * so their Events go when the stack does. Every volume is torn down through CSI.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ServiceError, status } from '@grpc/grpc-js';
import {
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type EventsV1Event,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { engineSocketPath } from '../../driver/csi/node-topology.js';
import { parseLosetupList } from '../../driver/node/fuse-loop.js';
import { readMountInfo } from '../../driver/node/mounts.js';
import { GROUP, VERSION, VOLUME_PLURAL, type Volume } from '../../lib/api/volume.js';
import { run } from '../../lib/exec.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { testKubeConfig, uniqueName } from '../harness/cluster.js';
import { CsiClient, capability, retrying } from '../harness/csi-client.js';
import { CsiStack, type StackNode } from '../harness/csi-stack.js';

const MiB = 1024 * 1024;
const SIZE = 128 * MiB;
/** The data planes' Lease duration (renewed every quarter of it) and the leader's check interval. */
const LEASE_SECONDS = 6;
const NODE_CHECK_MS = 1000;
const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';

interface CreateVolumeResponse {
  volume: { volume_id: string; capacity_bytes: string };
}

/** Polls `check` until it returns a value; fails after `timeoutMs` saying what was awaited and what was last seen. */
async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  everyMs = 250,
  seen: () => unknown = () => undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `${what}: not within ${timeoutMs} ms${lastError ? ` (last error: ${String(lastError)})` : ''}; last seen: ${JSON.stringify(seen())}`,
      );
    await sleep(everyMs);
  }
}

const timeOf = (event: EventsV1Event): number =>
  new Date((event.eventTime ?? event.deprecatedFirstTimestamp ?? 0) as string | Date).getTime();

/** What a failure message shows of an Event. */
const brief = (e: EventsV1Event) => ({
  type: e.type,
  reason: e.reason,
  note: e.note,
  regarding: `${e.regarding?.kind}/${e.regarding?.namespace}/${e.regarding?.name}`,
  count: e.series?.count,
});

describe('Events on the claim: NoRoomForReplicas, ReplicaFailed, RebuildStarted/Finished, NodeLost', () => {
  let stack: CsiStack;
  let controller: CsiClient;
  const nodeClients = new Map<string, CsiClient>();
  let volumes: VolumeClient;
  let events: EventsV1Api;
  let core: CoreV1Api;
  /** Volumes a case created, so afterAll can clean up after a failed one. */
  const created = new Set<string>();
  const children = new Set<ChildProcess>();

  const node = (i: number): StackNode => {
    const n = stack.nodes[i];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  };
  const nodeClient = (n: StackNode): CsiClient => {
    let client = nodeClients.get(n.name);
    if (!client) {
      client = new CsiClient(n.nodeSocket);
      nodeClients.set(n.name, client);
    }
    return client;
  };

  const createRequest = (name: string, claim: string, replicas: number) => ({
    name,
    capacity_range: { required_bytes: String(SIZE), limit_bytes: '0' },
    volume_capabilities: [capability('mount')],
    parameters: {
      numberOfReplicas: String(replicas),
      [PVC_NAME]: claim,
      [PVC_NAMESPACE]: stack.namespace,
    },
  });
  const stagingPath = (id: string, n: StackNode) => join(stack.dir, 'kubelet', n.name, 'staging', id);
  const targetPath = (id: string, n: StackNode) => join(stack.dir, 'kubelet', n.name, 'pods', id, 'mount');

  async function getVolume(id: string): Promise<Volume | undefined> {
    try {
      return await volumes.get(id);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  /** The Events about the claim, oldest first (events.k8s.io, selected by the object they regard). */
  async function claimEvents(claim: string): Promise<EventsV1Event[]> {
    const list = await events.listNamespacedEvent({
      namespace: stack.namespace,
      fieldSelector: `regarding.kind=PersistentVolumeClaim,regarding.name=${claim}`,
    });
    return list.items.sort((a, b) => timeOf(a) - timeOf(b));
  }

  /** Waits for an Event of that reason about the claim whose note mentions `mentions`; returns it. */
  async function eventFor(
    claim: string,
    reason: string,
    mentions: string,
    timeoutMs = 30_000,
  ): Promise<EventsV1Event> {
    let seen: EventsV1Event[] = [];
    return until(
      `a ${reason} Event about PersistentVolumeClaim ${claim} mentioning ${mentions}`,
      async () => {
        seen = await claimEvents(claim);
        return seen.find((e) => e.reason === reason && (e.note ?? '').includes(mentions));
      },
      timeoutMs,
      250,
      () => seen.map(brief),
    );
  }

  async function createVolume(name: string, claim: string, replicas = 2): Promise<string> {
    created.add(name);
    const res = await retrying(() =>
      controller.call<CreateVolumeResponse>(
        'Controller',
        'CreateVolume',
        createRequest(name, claim, replicas),
      ),
    );
    created.add(res.volume.volume_id);
    return res.volume.volume_id;
  }

  /** Writes `mib` MiB with O_DIRECT (each write goes through the engine to the replicas). */
  async function write(file: string, mib: number): Promise<void> {
    await run('dd', [
      'if=/dev/urandom',
      `of=${file}`,
      'bs=1M',
      `count=${mib}`,
      'oflag=direct',
      'status=none',
    ]);
  }

  /** The stack's mounts and loop devices (all under its directory). */
  async function attachments() {
    const mounts = (await readMountInfo()).filter((m) => m.mountPoint.startsWith(`${stack.dir}/`));
    const loops = parseLosetupList(
      (await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'])).stdout,
    ).filter((d) => d.backFile.startsWith(`${stack.dir}/`));
    return { mounts: mounts.map((m) => m.mountPoint), loops: loops.map((l) => l.name) };
  }

  /** Everything of `id` anywhere in the stack; all empty once the volume is gone. */
  async function leftovers(id: string): Promise<string[]> {
    const secrets = await core.listNamespacedSecret({
      namespace: stack.namespace,
      labelSelector: `tandem.dev/volume=${id}`,
    });
    return [
      ...((await getVolume(id)) ? [`Volume ${id}`] : []),
      ...secrets.items.map((s) => `Secret ${s.metadata?.name}`),
      ...stack.nodes.flatMap((n) => [
        ...(existsSync(join(n.dataDir, id)) ? [`replica dir on ${n.name}`] : []),
        ...(existsSync(engineSocketPath(n.engineDir, id)) ? [`engine socket on ${n.name}`] : []),
      ]),
    ];
  }

  /** Tears the volume down as a CO does (unpublish and unstage on `n` when given), then nothing of it may remain. */
  async function teardown(id: string, n?: StackNode): Promise<void> {
    if (n) {
      const client = nodeClient(n);
      await retrying(() =>
        client.call('Node', 'NodeUnpublishVolume', { volume_id: id, target_path: targetPath(id, n) }),
      );
      await retrying(() =>
        client.call('Node', 'NodeUnstageVolume', { volume_id: id, staging_target_path: stagingPath(id, n) }),
      );
      await retrying(() =>
        controller.call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: n.name }),
      );
    }
    await retrying(() => controller.call('Controller', 'DeleteVolume', { volume_id: id }));
    let left: string[] = [];
    await until(
      `nothing of ${id} left`,
      async () => {
        left = await leftovers(id);
        return left.length === 0 ? true : undefined;
      },
      30_000,
      200,
      () => left,
    ).catch(() => undefined);
    expect(left).toEqual([]);
    created.delete(id);
  }

  beforeAll(async () => {
    stack = await CsiStack.start(2, uniqueName('ev'), {
      dataplaneArgs: ['--node-lease-duration', `${LEASE_SECONDS}s`],
      controllerArgs: ['--node-check-interval', `${NODE_CHECK_MS}ms`],
    });
    controller = new CsiClient(stack.controllerSocket);
    const kc = testKubeConfig();
    volumes = new VolumeClient(kc);
    events = kc.makeApiClient(EventsV1Api);
    core = kc.makeApiClient(CoreV1Api);
  }, 90_000);

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    if (stack) {
      // Whatever a failed case left: make sure every process runs, then tear down through CSI.
      for (const n of stack.nodes) await stack.startNode(n.name).catch(() => undefined);
      await stack.startController().catch(() => undefined);
      for (const id of created) {
        for (const n of stack.nodes) {
          const client = nodeClient(n);
          await client
            .call('Node', 'NodeUnpublishVolume', { volume_id: id, target_path: targetPath(id, n) }, 20_000)
            .catch(() => undefined);
          await client
            .call(
              'Node',
              'NodeUnstageVolume',
              { volume_id: id, staging_target_path: stagingPath(id, n) },
              20_000,
            )
            .catch(() => undefined);
        }
        await controller
          .call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: '' }, 20_000)
          .catch(() => undefined);
        await controller.call('Controller', 'DeleteVolume', { volume_id: id }, 20_000).catch(() => undefined);
      }
      // A Volume the data planes could not release would stay forever (their finalizers).
      const custom = testKubeConfig().makeApiClient(CustomObjectsApi);
      await sleep(created.size > 0 ? 3000 : 0);
      for (const id of created) {
        await custom
          .patchClusterCustomObject(
            {
              group: GROUP,
              version: VERSION,
              plural: VOLUME_PLURAL,
              name: id,
              body: { metadata: { finalizers: [] } },
            },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          )
          .catch(() => undefined);
        await volumes.delete(id).catch(() => undefined);
      }
    }
    controller?.close();
    for (const client of nodeClients.values()) client.close();
    if (stack) {
      const left = await attachments();
      await stack.destroy();
      expect(left).toEqual({ mounts: [], loops: [] });
    }
  }, 120_000);

  test('CreateVolume that cannot place its replicas: RESOURCE_EXHAUSTED and a NoRoomForReplicas Warning on the claim', async () => {
    const claim = 'data-noroom';
    const name = uniqueName('ev-noroom');
    created.add(name);
    const error = await controller
      .call<CreateVolumeResponse>('Controller', 'CreateVolume', createRequest(name, claim, 3))
      .then(
        () => undefined,
        (err: ServiceError) => err,
      );
    expect(error?.code).toBe(status.RESOURCE_EXHAUSTED);

    const event = await eventFor(claim, 'NoRoomForReplicas', node(0).name);
    expect(event.type).toBe('Warning');
    expect(event.regarding).toMatchObject({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      name: claim,
      namespace: stack.namespace,
    });
    expect(event.reportingController).toBe('csi.tandem.dev');
    // The note is the refusal: every node and why it was not enough.
    for (const n of stack.nodes) expect(event.note).toContain(n.name);
    expect(event.note).toBe(error?.details);

    // The Volume written before the placement failed is the CO's to delete (external-provisioner
    // calls DeleteVolume for a final error on a volume it may have created).
    await teardown(name);
  }, 60_000);

  test('replica node killed while the volume is written: ReplicaFailed, then RebuildStarted and RebuildFinished once it is back', async () => {
    const claim = 'data-rebuild';
    const id = await createVolume(uniqueName('ev-rebuild'), claim);
    const [n1, n2] = [node(0), node(1)];
    expect(new Set((await getVolume(id))?.status?.replicas?.map((r) => r.node))).toEqual(
      new Set([n1.name, n2.name]),
    );
    await retrying(() =>
      controller.call('Controller', 'ControllerPublishVolume', {
        volume_id: id,
        node_id: n1.name,
        volume_capability: capability('mount'),
        readonly: false,
        volume_context: {},
      }),
    );
    await retrying(() =>
      nodeClient(n1).call('Node', 'NodeStageVolume', {
        volume_id: id,
        staging_target_path: stagingPath(id, n1),
        volume_capability: capability('mount'),
        publish_context: {},
        volume_context: {},
      }),
    );
    await retrying(() =>
      nodeClient(n1).call('Node', 'NodePublishVolume', {
        volume_id: id,
        staging_target_path: stagingPath(id, n1),
        target_path: targetPath(id, n1),
        volume_capability: capability('mount'),
        readonly: false,
      }),
    );
    const target = targetPath(id, n1);
    await write(join(target, 'before.bin'), 4);
    // Nothing has failed yet: the claim has no replica Events.
    expect((await claimEvents(claim)).map(brief)).toEqual([]);

    // A writer in flight when node 2's data plane (its replica server) dies.
    const writer = spawn('dd', [
      'if=/dev/urandom',
      `of=${join(target, 'inflight.bin')}`,
      'bs=256K',
      'count=160',
      'oflag=direct',
      'status=none',
    ]);
    children.add(writer);
    const writerDone = new Promise<void>((resolve) => writer.once('exit', () => resolve()));
    await until('the writer to be under way', async () =>
      existsSync(join(target, 'inflight.bin')) ? true : undefined,
    );
    await stack.kill(`dataplane:${n2.name}`);
    // The engine fences the replica at its first write after the kill; more writes make sure one comes.
    let extra = 0;
    await until(
      `the replica on ${n2.name} to be Failed`,
      async () => {
        const replica = (await getVolume(id))?.status?.replicas?.find((r) => r.node === n2.name);
        if (replica?.mode === 'Failed') return true;
        await write(join(target, `extra-${extra++ % 4}.bin`), 1);
        return undefined;
      },
      30_000,
      200,
    );
    const failed = await eventFor(claim, 'ReplicaFailed', n2.name);
    expect(failed.type).toBe('Warning');
    expect(failed.regarding).toMatchObject({
      kind: 'PersistentVolumeClaim',
      name: claim,
      namespace: stack.namespace,
    });
    await writerDone;
    children.delete(writer);

    // Back: the engine rebuilds the replica (WriteOnly, then ReadWrite in a new epoch).
    await stack.startDataplane(n2.name);
    const started = await eventFor(claim, 'RebuildStarted', n2.name, 60_000);
    const finished = await eventFor(claim, 'RebuildFinished', n2.name, 60_000);
    expect(started.type).toBe('Normal');
    expect(finished.type).toBe('Normal');
    expect(timeOf(started)).toBeLessThanOrEqual(timeOf(finished));
    expect(timeOf(failed)).toBeLessThanOrEqual(timeOf(started));
    expect((await getVolume(id))?.status?.replicas?.map((r) => [r.node, r.mode]).sort()).toEqual(
      [
        [n1.name, 'ReadWrite'],
        [n2.name, 'ReadWrite'],
      ].sort(),
    );
    // Only node 2's replica had anything happen to it.
    const all = await claimEvents(claim);
    expect(all.filter((e) => (e.note ?? '').includes(`node ${n1.name}`)).map(brief)).toEqual([]);
    // The volume still takes writes.
    await write(join(target, 'after.bin'), 2);

    await teardown(id, n1);
  }, 180_000);

  test('a data plane stopped past its Lease: one NodeLost Warning on the claim, not repeated by later checks', async () => {
    const claim = 'data-lost';
    const id = await createVolume(uniqueName('ev-lost'), claim);
    const [n1, n2] = [node(0), node(1)];
    await stack.stop(`dataplane:${n2.name}`);
    const stoppedAt = Date.now();

    const lost = await eventFor(claim, 'NodeLost', n2.name, LEASE_SECONDS * 1000 + 30_000);
    // Not before the Lease could have expired (renewed at most a quarter of its duration before the stop).
    expect(timeOf(lost)).toBeGreaterThanOrEqual(stoppedAt + (LEASE_SECONDS * 1000 * 3) / 4 - 1000);
    expect(lost.type).toBe('Warning');
    expect(lost.regarding).toMatchObject({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      name: claim,
      namespace: stack.namespace,
    });

    // Several more checks (and the recorder's 5 s series interval) later: still the one Event, no
    // repeat counted in its series, and nothing about node 1, which kept renewing.
    await sleep(5 * NODE_CHECK_MS + 6000);
    const after = await claimEvents(claim);
    const nodeLost = after.filter((e) => e.reason === 'NodeLost');
    expect(nodeLost.map(brief)).toEqual([brief(lost)]);
    expect(nodeLost[0]?.series).toBeFalsy();
    expect(after.filter((e) => (e.note ?? '').includes(`node ${n1.name}`)).map(brief)).toEqual([]);

    await stack.startDataplane(n2.name);
    await teardown(id);
  }, 120_000);
});
