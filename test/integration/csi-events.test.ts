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
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ServiceError, status } from '@grpc/grpc-js';
import { EventsV1Api, type EventsV1Event } from '@kubernetes/client-node';
import { testKubeConfig, uniqueName } from '../harness/cluster.js';
import { CsiStack } from '../harness/csi-stack.js';
import { type CreateVolumeResponse, CsiVolumeSteps } from '../harness/csi-volume-steps.js';
import { dd } from '../harness/dd.js';
import { loopsUnder, mountsUnder } from '../harness/host-inspection.js';

const MiB = 1024 * 1024;
const SIZE = 128 * MiB;
/** The data planes' Lease duration (renewed every quarter of it) and the leader's check interval. */
const LEASE_SECONDS = 6;
const NODE_CHECK_MS = 1000;
const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';

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

/** Writes `mib` MiB with O_DIRECT (each write goes through the engine to the replicas). */
const write = (file: string, mib: number) =>
  dd({ from: '/dev/urandom', to: file, bs: '1M', count: mib, oflag: 'direct' });

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
  let steps: CsiVolumeSteps;
  let events: EventsV1Api;

  /** Parameters naming the claim, as external-provisioner's --extra-create-metadata passes them. */
  const forClaim = (claim: string, replicas: number) => ({
    numberOfReplicas: String(replicas),
    [PVC_NAME]: claim,
    [PVC_NAMESPACE]: stack.namespace,
  });

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

  beforeAll(async () => {
    stack = await CsiStack.start(2, uniqueName('ev'), {
      dataplaneArgs: ['--node-lease-duration', `${LEASE_SECONDS}s`],
      controllerArgs: ['--node-check-interval', `${NODE_CHECK_MS}ms`],
    });
    steps = new CsiVolumeSteps(stack, SIZE);
    events = testKubeConfig().makeApiClient(EventsV1Api);
  }, 90_000);

  afterAll(async () => {
    // Whatever a failed case left: every process running, each volume torn down through CSI.
    await steps?.releaseAll();
    if (stack) {
      const mounts = await mountsUnder(`${stack.dir}/`);
      const loops = await loopsUnder(`${stack.dir}/`);
      await stack.destroy();
      expect({ mounts: mounts.map((m) => m.mountPoint), loops }).toEqual({ mounts: [], loops: [] });
    }
  }, 120_000);

  test('CreateVolume that cannot place its replicas: RESOURCE_EXHAUSTED and a NoRoomForReplicas Warning on the claim', async () => {
    const claim = 'data-noroom';
    const name = uniqueName('ev-noroom');
    steps.created.add(name);
    const error = await steps.controller
      .call<CreateVolumeResponse>('Controller', 'CreateVolume', steps.createRequest(name, forClaim(claim, 3)))
      .then(
        () => undefined,
        (err: ServiceError) => err,
      );
    expect(error?.code).toBe(status.RESOURCE_EXHAUSTED);

    const event = await eventFor(claim, 'NoRoomForReplicas', steps.node(0).name);
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
    expect(await steps.teardown(name)).toEqual([]);
  }, 60_000);

  test('replica node killed while the volume is written: ReplicaFailed, then RebuildStarted and RebuildFinished once it is back', async () => {
    const claim = 'data-rebuild';
    const id = await steps.createVolume(uniqueName('ev-rebuild'), forClaim(claim, 2));
    const [n1, n2] = [steps.node(0), steps.node(1)];
    expect(new Set((await steps.getVolume(id))?.status?.replicas?.map((r) => r.node))).toEqual(
      new Set([n1.name, n2.name]),
    );
    await steps.publish(id, n1);
    await steps.stage(id, n1);
    await steps.nodePublish(id, n1);
    const target = steps.targetPath(id, n1);
    await write(join(target, 'before.bin'), 4);
    // Nothing has failed yet: the claim has no replica Events.
    expect((await claimEvents(claim)).map(brief)).toEqual([]);

    // A writer in flight when node 2's data plane (its replica server) dies.
    const writerDone = steps.startWriter(join(target, 'inflight.bin'));
    await until('the writer to be under way', async () =>
      existsSync(join(target, 'inflight.bin')) ? true : undefined,
    );
    await stack.kill(`dataplane:${n2.name}`);
    // The engine fences the replica at its first write after the kill; more writes make sure one comes.
    let extra = 0;
    await until(
      `the replica on ${n2.name} to be Failed`,
      async () => {
        const replica = (await steps.getVolume(id))?.status?.replicas?.find((r) => r.node === n2.name);
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

    // Back: the engine rebuilds the replica (WriteOnly, then ReadWrite in a new epoch).
    await stack.startDataplane(n2.name);
    const started = await eventFor(claim, 'RebuildStarted', n2.name, 60_000);
    const finished = await eventFor(claim, 'RebuildFinished', n2.name, 60_000);
    expect(started.type).toBe('Normal');
    expect(finished.type).toBe('Normal');
    expect(timeOf(started)).toBeLessThanOrEqual(timeOf(finished));
    expect(timeOf(failed)).toBeLessThanOrEqual(timeOf(started));
    expect((await steps.getVolume(id))?.status?.replicas?.map((r) => [r.node, r.mode]).sort()).toEqual(
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

    expect(await steps.teardown(id, n1)).toEqual([]);
  }, 180_000);

  test('a data plane stopped past its Lease: one NodeLost Warning on the claim, not repeated by later checks', async () => {
    const claim = 'data-lost';
    const id = await steps.createVolume(uniqueName('ev-lost'), forClaim(claim, 2));
    const [n1, n2] = [steps.node(0), steps.node(1)];
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
    expect(await steps.teardown(id)).toEqual([]);
  }, 120_000);
});
