/**
 * Restart safety of provision, attach and stage (issue 5): the controller, a node's data plane or
 * its node plugin is SIGKILLed between two steps of CreateVolume, ControllerPublishVolume or
 * NodeStageVolume, comes back, and the call — repeated as a CO repeats it — completes with nothing
 * duplicated or leaked. The whole driver runs as real processes (CsiStack: `tandem controller`,
 * per node `tandem dataplane --reconcile` + `tandem node`) against the shared test apiserver, with
 * nbdfuse + loop devices, ext4 and real mounts. Kill points are found by polling for the first
 * trace of the step (the Volume resource, spec.engines, the loop device), so the process dies while
 * the call is in flight; each case then tears down through the CSI calls and checks that no
 * Volume, Secret, replica directory, credential file, engine socket, loop device, FUSE mount or
 * nbdfuse process of the volume is left.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ServiceError, status } from '@grpc/grpc-js';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { engineSocketPath } from '../../driver/csi/node-topology.js';
import { credentialFilePath } from '../../driver/dataplane/credentials.js';
import { fuseLoopPaths, fuseSource, parseLosetupList } from '../../driver/node/fuse-loop.js';
import { type MountEntry, readMountInfo, splitDeviceNumber } from '../../driver/node/mounts.js';
import { devicesDir } from '../../driver/node/stage.js';
import { GROUP, VERSION, VOLUME_PLURAL, type Volume } from '../../lib/api/volume.js';
import { run } from '../../lib/exec.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { testKubeConfig, uniqueName } from '../harness/cluster.js';
import { CsiClient, capability, retrying } from '../harness/csi-client.js';
import { CsiStack, type StackNode } from '../harness/csi-stack.js';
import { canConnect } from '../harness/readiness.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

/** The outcome of a call left running while a process dies: resolved or the gRPC error. */
type Outcome<T> = { ok: true; value: T } | { ok: false; error: ServiceError };

function settle<T>(promise: Promise<T>): Promise<Outcome<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: ServiceError) => ({ ok: false as const, error }),
  );
}

/** Where a kill landed, for a post-mortem of a failure (TANDEM_TEST_LOG=1 prints it). */
function note(text: string): void {
  if (process.env.TANDEM_TEST_LOG) process.stderr.write(text);
}

/** Polls `check` every `everyMs` until it holds; fails after `timeoutMs` saying what was awaited. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000, everyMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

async function sha256(file: string): Promise<string> {
  return (await run('sha256sum', [file])).stdout.split(' ')[0] ?? '';
}

/** Command lines of running processes whose arguments include every one of `parts`. */
async function processesWith(...parts: string[]): Promise<{ pid: number; args: string[] }[]> {
  const found: { pid: number; args: string[] }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = await readFile(`/proc/${entry}/cmdline`, 'utf8')
      .then((s) => s.split('\0').filter((a) => a !== ''))
      .catch(() => [] as string[]);
    if (args.length > 0 && parts.every((p) => args.some((a) => a.includes(p))))
      found.push({ pid: Number(entry), args });
  }
  return found;
}

interface CreateVolumeResponse {
  volume: { volume_id: string; capacity_bytes: string };
}

describe('restart safety: controller, data plane and node plugin killed between steps', () => {
  let stack: CsiStack;
  let controller: CsiClient;
  const nodeClients = new Map<string, CsiClient>();
  let volumes: VolumeClient;
  let core: CoreV1Api;
  /** Volumes a case created, so afterAll can clean up after a failed one. */
  const created = new Set<string>();
  /** Background processes a case started (writers), killed in afterAll if still running. */
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

  const createRequest = (name: string) => ({
    name,
    capacity_range: { required_bytes: String(SIZE), limit_bytes: '0' },
    volume_capabilities: [capability('mount')],
    parameters: { numberOfReplicas: '2' },
  });
  const publishRequest = (id: string, n: StackNode) => ({
    volume_id: id,
    node_id: n.name,
    volume_capability: capability('mount'),
    readonly: false,
    volume_context: {},
  });
  const stagingPath = (id: string, n: StackNode) => join(stack.dir, 'kubelet', n.name, 'staging', id);
  const targetPath = (id: string, n: StackNode) => join(stack.dir, 'kubelet', n.name, 'pods', id, 'mount');
  const stageRequest = (id: string, n: StackNode) => ({
    volume_id: id,
    staging_target_path: stagingPath(id, n),
    volume_capability: capability('mount'),
    publish_context: {},
    volume_context: {},
  });
  const nodePublishRequest = (id: string, n: StackNode) => ({
    volume_id: id,
    staging_target_path: stagingPath(id, n),
    target_path: targetPath(id, n),
    volume_capability: capability('mount'),
    readonly: false,
  });

  async function getVolume(id: string): Promise<Volume | undefined> {
    try {
      return await volumes.get(id);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  async function secretsOf(id: string) {
    const list = await core.listNamespacedSecret({
      namespace: stack.namespace,
      labelSelector: `tandem.dev/volume=${id}`,
    });
    return list.items;
  }

  async function createVolume(name: string): Promise<string> {
    created.add(name);
    const res = await retrying(() =>
      controller.call<CreateVolumeResponse>('Controller', 'CreateVolume', createRequest(name)),
    );
    created.add(res.volume.volume_id);
    return res.volume.volume_id;
  }

  async function publish(id: string, n: StackNode): Promise<void> {
    await retrying(() => controller.call('Controller', 'ControllerPublishVolume', publishRequest(id, n)));
  }

  async function stage(id: string, n: StackNode): Promise<void> {
    await retrying(() => nodeClient(n).call('Node', 'NodeStageVolume', stageRequest(id, n)));
  }

  async function nodePublish(id: string, n: StackNode): Promise<void> {
    await retrying(() => nodeClient(n).call('Node', 'NodePublishVolume', nodePublishRequest(id, n)));
  }

  /** The file nbdfuse serves the volume as on `n` (what its loop device is backed by). */
  function fuseFile(id: string, n: StackNode): string {
    const dir = devicesDir(n.stateDir);
    return fuseLoopPaths(existsSync(dir) ? realpathSync(dir) : dir, id).file;
  }

  async function loopsOf(id: string, n: StackNode): Promise<string[]> {
    const file = fuseFile(id, n);
    const listing = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']);
    return parseLosetupList(listing.stdout)
      .filter((d) => d.backFile === file || d.backFile === `${file} (deleted)`)
      .map((d) => d.name);
  }

  /** What the node shows of the volume: loop devices, FUSE mounts, mounts at staging, nbdfuse processes. */
  async function attachmentOf(id: string, n: StackNode) {
    const mounts = await readMountInfo();
    const dir = devicesDir(n.stateDir);
    const paths = fuseLoopPaths(existsSync(dir) ? realpathSync(dir) : dir, id);
    return {
      loops: await loopsOf(id, n),
      fuseMounts: mounts.filter((m) => m.source === fuseSource(id)).map((m) => m.mountPoint),
      stagingMounts: mounts.filter((m) => m.mountPoint === stagingPath(id, n)),
      nbdfuse: (await processesWith('nbdfuse', paths.mountDir)).map((p) => p.pid),
    };
  }

  /** Exactly one attachment on `n`: one loop device, one FUSE mount, one nbdfuse, one ext4 mount at staging on that loop. */
  async function expectStagedOnce(id: string, n: StackNode): Promise<MountEntry> {
    const seen = await attachmentOf(id, n);
    expect({
      loops: seen.loops.length,
      fuseMounts: seen.fuseMounts.length,
      nbdfuse: seen.nbdfuse.length,
      stagingMounts: seen.stagingMounts.map((m) => m.fsType),
    }).toEqual({ loops: 1, fuseMounts: 1, nbdfuse: 1, stagingMounts: ['ext4'] });
    const mount = seen.stagingMounts[0] as MountEntry;
    const loop = seen.loops[0] as string;
    const number = splitDeviceNumber((await stat(loop, { bigint: true })).rdev);
    expect(`${mount.major}:${mount.minor}`).toBe(`${number.major}:${number.minor}`);
    return mount;
  }

  /** Everything of `id` anywhere in the stack; all empty once the volume is gone. */
  async function leftovers(id: string) {
    const perNode = await Promise.all(
      stack.nodes.map(async (n) => {
        const seen = await attachmentOf(id, n);
        const items = [
          ...(existsSync(join(n.dataDir, id)) ? [`replica dir on ${n.name}`] : []),
          ...(existsSync(credentialFilePath(n.dataDir, id)) ? [`credential file on ${n.name}`] : []),
          ...(existsSync(engineSocketPath(n.engineDir, id)) ? [`engine socket on ${n.name}`] : []),
          ...(existsSync(join(devicesDir(n.stateDir), id)) ? [`attachment dir on ${n.name}`] : []),
          ...(existsSync(join(n.stateDir, 'staged', `${id}.json`)) ? [`stage record on ${n.name}`] : []),
          ...seen.loops.map((l) => `loop ${l} on ${n.name}`),
          ...seen.fuseMounts.map((m) => `FUSE mount ${m}`),
          ...seen.stagingMounts.map((m) => `mount ${m.mountPoint}`),
          ...seen.nbdfuse.map((p) => `nbdfuse pid ${p}`),
        ];
        return items;
      }),
    );
    return [
      ...((await getVolume(id)) ? [`Volume ${id}`] : []),
      ...(await secretsOf(id)).map((s) => `Secret ${s.metadata?.name}`),
      ...perNode.flat(),
    ];
  }

  /**
   * Tears the volume down as a CO does (each call retried while it says "again"): unpublish and
   * unstage on `n` when given, ControllerUnpublish, DeleteVolume; then nothing of it may remain.
   */
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
        return left.length === 0;
      },
      30_000,
      200,
    ).catch(() => undefined);
    expect(left).toEqual([]);
    created.delete(id);
  }

  /** A restarted data plane serves the volume again: one engine in status.engines, from the new process. */
  async function expectOneEngine(id: string, n: StackNode): Promise<void> {
    const pid = stack.pid(`dataplane:${n.name}`);
    await until(
      `the engine of ${id} on ${n.name} registered by data plane pid ${pid}`,
      async () => {
        const engines = (await getVolume(id))?.status?.engines ?? [];
        return engines.length === 1 && engines[0]?.id.startsWith(`${n.name}/${pid}/`) === true;
      },
      30_000,
    );
    const volume = await getVolume(id);
    expect(volume?.spec.engines).toEqual([{ node: n.name }]);
    expect(volume?.status?.engines?.map((e) => e.node)).toEqual([n.name]);
    // The engine registers before its NBD socket listens (a dirty volume is resynced in between).
    await until(`the engine socket of ${id} on ${n.name} to answer`, () =>
      canConnect({ path: engineSocketPath(n.engineDir, id) }),
    );
    // The other node runs no engine of it and has no socket.
    for (const other of stack.nodes.filter((o) => o.name !== n.name))
      expect(existsSync(engineSocketPath(other.engineDir, id))).toBe(false);
  }

  beforeAll(async () => {
    stack = await CsiStack.start(2);
    controller = new CsiClient(stack.controllerSocket);
    const kc = testKubeConfig();
    volumes = new VolumeClient(kc);
    core = kc.makeApiClient(CoreV1Api);
  }, 90_000);

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    if (stack) {
      // Whatever a failed case left: make sure every process runs, then tear down through CSI.
      for (const n of stack.nodes) {
        await stack.startDataplane(n.name).catch(() => undefined);
        await stack.startNodePlugin(n.name).catch(() => undefined);
      }
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
    const dir = stack?.dir;
    await stack?.destroy();
    if (dir) {
      const mounts = (await readMountInfo()).filter((m) => m.mountPoint.startsWith(`${dir}/`));
      const loops = parseLosetupList(
        (await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'])).stdout,
      ).filter((d) => d.backFile.startsWith(`${dir}/`));
      expect({ mounts: mounts.map((m) => m.mountPoint), loops: loops.map((l) => l.name) }).toEqual({
        mounts: [],
        loops: [],
      });
    }
  }, 120_000);

  test('controller killed while CreateVolume is in flight: the retry completes it, one Volume, one Secret, two replicas', async () => {
    const name = uniqueName('rs-create');
    created.add(name);
    const first = settle(
      controller.call<CreateVolumeResponse>('Controller', 'CreateVolume', createRequest(name)),
    );
    // The kill point: the Volume resource exists (the call's first write), the rest may not.
    await until(
      'the Volume resource of the first call',
      async () => (await getVolume(name)) !== undefined,
      30_000,
      5,
    );
    await stack.kill('controller');
    const atKill = await getVolume(name);
    const stateAtKill = {
      secret: (await secretsOf(name)).length,
      replicas: atKill?.status?.replicas?.length ?? 0,
    };
    const outcome = await first;
    await stack.startController();

    const retried = await retrying(() =>
      controller.call<CreateVolumeResponse>('Controller', 'CreateVolume', createRequest(name)),
    );
    const id = retried.volume.volume_id;
    created.add(id);
    if (outcome.ok) expect(outcome.value.volume.volume_id).toBe(id);
    else expect([status.UNAVAILABLE, status.CANCELLED, status.INTERNAL]).toContain(outcome.error.code);
    expect(id).toBe(name);
    expect(Number(retried.volume.capacity_bytes)).toBe(SIZE);
    note(
      `create: state at the kill ${JSON.stringify(stateAtKill)}, first call ${outcome.ok ? 'answered' : status[outcome.error.code]}\n`,
    );

    // Exactly one of everything.
    const all = (await volumes.list()).items.filter(
      (v) => v.metadata.annotations?.['tandem.dev/csi-name'] === name || v.metadata.name === name,
    );
    expect(all.map((v) => v.metadata.name)).toEqual([id]);
    const secrets = await secretsOf(id);
    expect(secrets).toHaveLength(1);
    const replicas = all[0]?.status?.replicas ?? [];
    expect(new Set(replicas.map((r) => r.node))).toEqual(new Set(stack.nodes.map((n) => n.name)));
    expect(replicas).toHaveLength(2);
    await until(`replica dirs of ${id} on both nodes`, async () =>
      stack.nodes.every((n) => existsSync(join(n.dataDir, id))),
    );

    // Repeating the call changes nothing: same id, same credential, still one Secret.
    const again = await controller.call<CreateVolumeResponse>(
      'Controller',
      'CreateVolume',
      createRequest(name),
    );
    expect(again.volume.volume_id).toBe(id);
    const secretsAfter = await secretsOf(id);
    expect(secretsAfter.map((s) => s.data)).toEqual(secrets.map((s) => s.data));
    expect((await getVolume(id))?.status?.replicas).toEqual(replicas);

    await teardown(id);
  }, 90_000);

  test('controller killed after the Volume was written but before its Secret: the retry completes it', async () => {
    // Deterministic kill point: a quota without status makes the apiserver refuse every Secret in
    // the namespace, so the first call stops right after writing the Volume.
    const name = uniqueName('rs-nosecret');
    created.add(name);
    const quota = 'no-secrets';
    await core.createNamespacedResourceQuota({
      namespace: stack.namespace,
      body: { metadata: { name: quota }, spec: { hard: { secrets: '0' } } },
    });
    await core.replaceNamespacedResourceQuotaStatus({
      name: quota,
      namespace: stack.namespace,
      body: {
        metadata: { name: quota },
        spec: { hard: { secrets: '0' } },
        status: { hard: { secrets: '0' }, used: { secrets: '0' } },
      },
    });
    // Quota admission works from a cache: wait until a Secret is refused before relying on it.
    await until(
      'the apiserver to enforce the quota',
      async () => {
        try {
          await core.createNamespacedSecret({
            namespace: stack.namespace,
            body: { metadata: { name: 'probe' } },
          });
        } catch (err) {
          return (err as { code?: number }).code === 403;
        }
        await core.deleteNamespacedSecret({ name: 'probe', namespace: stack.namespace });
        return false;
      },
      15_000,
      200,
    );
    try {
      const first = await settle(
        controller.call<CreateVolumeResponse>('Controller', 'CreateVolume', createRequest(name), 30_000),
      );
      expect(first.ok).toBe(false);
      const volume = await getVolume(name);
      expect(volume).toBeDefined();
      expect(await secretsOf(name)).toEqual([]);
      expect(volume?.status?.replicas ?? []).toEqual([]);
      await stack.kill('controller');
    } finally {
      await core.deleteNamespacedResourceQuota({ name: quota, namespace: stack.namespace });
    }
    await stack.startController();
    const id = await createVolume(name);
    expect(id).toBe(name);
    expect(await secretsOf(id)).toHaveLength(1);
    const replicas = (await getVolume(id))?.status?.replicas ?? [];
    expect(new Set(replicas.map((r) => r.node)).size).toBe(2);
    await until(`replica dirs of ${id} on both nodes`, async () =>
      stack.nodes.every((n) => existsSync(join(n.dataDir, id))),
    );
    await teardown(id);
  }, 90_000);

  test('data plane killed while ControllerPublishVolume waits for the engine: publish completes, one engine, no stale entry', async () => {
    const id = await createVolume(uniqueName('rs-publish'));
    const n = node(0);
    const first = settle(
      controller.call('Controller', 'ControllerPublishVolume', publishRequest(id, n), 90_000),
    );
    // The kill point: the controller has asked for the engine (spec.engines), the data plane is starting it.
    await until(
      'spec.engines naming the node',
      async () => ((await getVolume(id))?.spec.engines ?? []).some((e) => e.node === n.name),
      30_000,
      5,
    );
    await stack.kill(`dataplane:${n.name}`);
    const atKill = await getVolume(id);
    note(
      `publish: at the kill status.engines=${JSON.stringify(atKill?.status?.engines ?? [])}, socket ${existsSync(engineSocketPath(n.engineDir, id)) ? 'present' : 'absent'}\n`,
    );
    await stack.startDataplane(n.name);
    const outcome = await first;
    if (!outcome.ok) expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(outcome.error.code);
    await publish(id, n);
    await expectOneEngine(id, n);
    // Publishing again is a no-op: still one engine, the same one.
    const before = (await getVolume(id))?.status?.engines;
    await publish(id, n);
    expect((await getVolume(id))?.status?.engines).toEqual(before);

    // The volume works: stage and publish it.
    await stage(id, n);
    await nodePublish(id, n);
    await expectStagedOnce(id, n);
    await teardown(id, n);
  }, 120_000);

  test('controller killed while ControllerPublishVolume waits for the engine: the retry completes it, one engine', async () => {
    const id = await createVolume(uniqueName('rs-publish-ctl'));
    const n = node(1);
    const first = settle(controller.call('Controller', 'ControllerPublishVolume', publishRequest(id, n)));
    await until(
      'spec.engines naming the node',
      async () => ((await getVolume(id))?.spec.engines ?? []).some((e) => e.node === n.name),
      30_000,
      5,
    );
    await stack.kill('controller');
    const outcome = await first;
    if (!outcome.ok) expect([status.UNAVAILABLE, status.CANCELLED]).toContain(outcome.error.code);
    await stack.startController();
    await publish(id, n);
    await publish(id, n);
    await expectOneEngine(id, n);
    await teardown(id, n);
  }, 90_000);

  test('node plugin killed during NodeStageVolume (device attached, filesystem not yet mounted): the retry stages it once', async () => {
    const id = await createVolume(uniqueName('rs-stage'));
    const n = node(1);
    await publish(id, n);
    const first = settle(nodeClient(n).call('Node', 'NodeStageVolume', stageRequest(id, n)));
    // The kill point: the loop device over nbdfuse exists; mkfs and the mount come next.
    await until(
      'the loop device of the first stage',
      async () => (await loopsOf(id, n)).length > 0,
      60_000,
      10,
    );
    await stack.kill(`node:${n.name}`);
    const atKill = await attachmentOf(id, n);
    const outcome = await first;
    expect(outcome.ok).toBe(false);
    // mkfs or mount started by the killed plugin are not its children any more: they finish on
    // their own (in a pod the runtime kills them with the container). Wait, so the retry does
    // not race them.
    const loop = atKill.loops[0] as string;
    const orphans = await processesWith(loop);
    await until(
      'commands the killed plugin started to finish',
      async () =>
        (await processesWith(loop)).filter((p) => !p.args.some((a) => a.includes('nbdfuse'))).length === 0,
    );
    note(
      `stage: at the kill ${JSON.stringify({ ...atKill, stagingMounts: atKill.stagingMounts.length })}, running then: ${JSON.stringify(orphans.map((p) => p.args.join(' ')))}\n`,
    );
    expect(atKill.loops).toHaveLength(1);

    await stack.startNodePlugin(n.name);
    await stage(id, n);
    await stage(id, n); // and again: nothing changes
    await expectStagedOnce(id, n);
    expect(await loopsOf(id, n)).toEqual(atKill.loops); // the first attachment was reused

    // A file on the staged filesystem, then the plugin killed after a completed stage: the next
    // stage finds everything in place (the FUSE daemon and the loop outlive the plugin).
    await nodePublish(id, n);
    const file = join(targetPath(id, n), 'kept.bin');
    await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=2', 'status=none']);
    await run('sync', ['-f', file]);
    const sum = await sha256(file);
    const uuid = (await run('blkid', ['-p', '-o', 'value', '-s', 'UUID', loop])).stdout.trim();
    expect(uuid).not.toBe('');
    await stack.kill(`node:${n.name}`);
    await stack.startNodePlugin(n.name);
    await stage(id, n);
    await nodePublish(id, n);
    await expectStagedOnce(id, n);
    expect(await sha256(file)).toBe(sum);

    // Unstaged, then a stage killed right after the attach again: the filesystem already exists
    // and must be mounted as it is, never formatted again.
    await retrying(() =>
      nodeClient(n).call('Node', 'NodeUnpublishVolume', { volume_id: id, target_path: targetPath(id, n) }),
    );
    await retrying(() =>
      nodeClient(n).call('Node', 'NodeUnstageVolume', {
        volume_id: id,
        staging_target_path: stagingPath(id, n),
      }),
    );
    expect(await loopsOf(id, n)).toEqual([]);
    const second = settle(nodeClient(n).call('Node', 'NodeStageVolume', stageRequest(id, n)));
    await until(
      'the loop device of the second stage',
      async () => (await loopsOf(id, n)).length > 0,
      60_000,
      10,
    );
    await stack.kill(`node:${n.name}`);
    await second;
    const loop2 = (await loopsOf(id, n))[0] as string;
    await until(
      'commands the killed plugin started to finish',
      async () =>
        (await processesWith(loop2)).filter((p) => !p.args.some((a) => a.includes('nbdfuse'))).length === 0,
    );
    await stack.startNodePlugin(n.name);
    await stage(id, n);
    await nodePublish(id, n);
    await expectStagedOnce(id, n);
    expect((await run('blkid', ['-p', '-o', 'value', '-s', 'UUID', loop2])).stdout.trim()).toBe(uuid);
    expect(await sha256(file)).toBe(sum);

    await teardown(id, n);
  }, 150_000);

  /**
   * The engine's death takes nbdfuse with it, leaving a dead FUSE mount with a loop device over it.
   * Nothing has mounted that loop yet, so the retried stage detaches both and attaches afresh
   * (driver/node/fuse-loop.ts); this test was written against the refusal that used to leave the
   * volume stuck (a CO never unstages a stage that never succeeded).
   */
  test('data plane killed during NodeStageVolume (device attached, not yet formatted): the retry stages it', async () => {
    const id = await createVolume(uniqueName('rs-stage-dp'));
    const n = node(1);
    await publish(id, n);
    const first = settle(nodeClient(n).call('Node', 'NodeStageVolume', stageRequest(id, n)));
    await until(
      'the loop device of the first stage',
      async () => (await loopsOf(id, n)).length > 0,
      60_000,
      10,
    );
    await stack.kill(`dataplane:${n.name}`);
    await first; // fails: mkfs or the mount meets I/O errors
    await stack.startDataplane(n.name);
    await expectOneEngine(id, n);
    await stage(id, n);
    await nodePublish(id, n);
    await expectStagedOnce(id, n);
    const file = join(targetPath(id, n), 'a.bin');
    await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=1', 'status=none']);
    await run('sync', ['-f', file]);
    await teardown(id, n);
  }, 120_000);

  test('data plane killed while a staged volume is written: the engine takes over, re-staged it works, flushed data intact', async () => {
    const id = await createVolume(uniqueName('rs-io'));
    const n = node(0);
    await publish(id, n);
    await stage(id, n);
    await nodePublish(id, n);
    const target = targetPath(id, n);
    const kept = join(target, 'flushed.bin');
    await run('dd', ['if=/dev/urandom', `of=${kept}`, 'bs=1M', 'count=4', 'status=none']);
    await run('sync', ['-f', kept]);
    const sum = await sha256(kept);
    const epochBefore = (await getVolume(id))?.status?.epoch ?? 0;

    // A writer in flight when the data plane dies.
    const writer = spawn('dd', [
      'if=/dev/urandom',
      `of=${join(target, 'inflight.bin')}`,
      'bs=256K',
      'count=160',
      'oflag=direct',
      'status=none',
    ]);
    children.add(writer);
    const writerDone = new Promise<number | null>((resolve) => writer.once('exit', (code) => resolve(code)));
    await until(
      'the writer to be under way',
      async () => (await stat(join(target, 'inflight.bin'))).size >= MiB,
      30_000,
      10,
    );
    await stack.kill(`dataplane:${n.name}`);
    await stack.startDataplane(n.name);
    await expectOneEngine(id, n);
    expect((await getVolume(id))?.status?.epoch ?? 0).toBeGreaterThan(epochBefore);
    // The writer ends (its writes fail, or they went through to the new engine).
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      writerDone,
      new Promise<'hung'>((resolve) => {
        timer = setTimeout(() => resolve('hung'), 60_000);
      }),
    ]);
    clearTimeout(timer);
    children.delete(writer);
    note(`io: writer ended with ${String(code)}\n`);
    expect(code).not.toBe('hung');

    // The old attachment talked to the dead engine: unpublish, unstage, stage and publish again.
    await retrying(() =>
      nodeClient(n).call('Node', 'NodeUnpublishVolume', { volume_id: id, target_path: target }),
    );
    await retrying(() =>
      nodeClient(n).call('Node', 'NodeUnstageVolume', {
        volume_id: id,
        staging_target_path: stagingPath(id, n),
      }),
    );
    await stage(id, n);
    await nodePublish(id, n);
    await expectStagedOnce(id, n);
    expect(await sha256(kept)).toBe(sum);
    // And the volume takes new writes.
    const fresh = join(target, 'after.bin');
    await run('dd', ['if=/dev/urandom', `of=${fresh}`, 'bs=1M', 'count=2', 'status=none']);
    await run('sync', ['-f', fresh]);
    expect((await stat(fresh)).size).toBe(2 * MiB);

    await teardown(id, n);
  }, 150_000);
});
