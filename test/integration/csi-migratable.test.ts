/**
 * A migratable ReadWriteMany Block volume through the driver on three simulated nodes, with the
 * pods the controller checks living in the real apiserver: a second engine is started only for a
 * virt-launcher pod of the same VM on the target node, never a third; both engines serve the same
 * data (the target reads what the source wrote); after the source is unpublished the target goes
 * on alone. Pods stay Pending (no scheduler or kubelet here): the controller reads their labels and
 * nodeName, which is what it checks.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { engineSocketPath } from '../../driver/csi/node-topology.js';
import { run } from '../../lib/exec.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { createBoundBlockPv } from '../harness/bound-pv.js';
import { testKubeConfig, uniqueName } from '../harness/cluster.js';
import { CsiClient, retrying } from '../harness/csi-client.js';
import { CsiStack } from '../harness/csi-stack.js';
import { CsiVolumeView } from '../harness/csi-volume-view.js';

const MiB = 1024 * 1024;
const CLAIM = 'vm-disk';
const block = { block: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };

describe('migratable block volume: two engines only for the pods of one VM', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const volumes = new VolumeClient(kc);
  const namespace = uniqueName('vms');
  let stack: CsiStack;
  let controller: CsiClient;
  let view: CsiVolumeView;
  let pvName = '';

  const pod = (
    name: string,
    node: string,
    vmUid: string,
    extraLabels: Record<string, string> = {},
  ): V1Pod => ({
    metadata: {
      name,
      labels: {
        'kubevirt.io': 'virt-launcher',
        'vm.kubevirt.io/name': 'vm1',
        'kubevirt.io/created-by': vmUid,
        ...extraLabels,
      },
    },
    spec: {
      nodeName: node,
      containers: [{ name: 'compute', image: 'virt-launcher:latest' }],
      volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: CLAIM } }],
    },
  });

  const publish = (id: string, node: string) =>
    controller.call('Controller', 'ControllerPublishVolume', {
      volume_id: id,
      node_id: node,
      volume_capability: block,
    });

  const codeOf = async (promise: Promise<unknown>) =>
    promise.then(
      () => 'OK',
      (err: { code?: number }) => status[err.code ?? status.UNKNOWN],
    );

  beforeAll(async () => {
    stack = await CsiStack.start(3);
    controller = new CsiClient(stack.controllerSocket);
    view = new CsiVolumeView(stack, kc);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  }, 120_000);

  afterAll(async () => {
    controller?.close();
    if (pvName) await core.deletePersistentVolume({ name: pvName }).catch(() => undefined);
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    await stack?.destroy();
  }, 120_000);

  test('second engine for the VM pod on the target, refused otherwise; both serve the same data', async () => {
    const created = await retrying(() =>
      controller.call<{ volume: { volume_id: string } }>('Controller', 'CreateVolume', {
        name: uniqueName('pvc-mig'),
        capacity_range: { required_bytes: String(64 * MiB) },
        volume_capabilities: [block],
        parameters: { numberOfReplicas: '2', migratable: 'true' },
      }),
    );
    const id = created.volume.volume_id;
    const [n1, n2, n3] = stack.nodes.map((n) => n.name) as [string, string, string];

    // The PV the provisioner would have made, bound to the VM's claim.
    pvName = id;
    await createBoundBlockPv(core, id, { namespace, name: CLAIM }, '64Mi');
    await core.createNamespacedPod({ namespace, body: pod('launcher-src', n1, 'vmi-uid-1') });

    // The source engine: the first publish needs no pod check.
    await retrying(() => publish(id, n1));
    // Publish returns once the engine holds its place (and epoch) in the membership; its socket
    // answers a moment later, which NodeStage waits for and so does this test in its place.
    await view.waitForEngineSocket(id, stack.node(n1));
    const source = engineSocketPath(stack.node(n1).engineDir, id);
    const data = randomBytes(MiB);
    const file = join(stack.dir, 'pattern.bin');
    await writeFile(file, data);
    await run('nbdcopy', ['--flush', file, `nbd+unix:///${id}?socket=${source}`], { timeoutMs: 30_000 });

    // No pod of the VM on n2 yet: refused.
    expect(await codeOf(publish(id, n2))).toBe('FAILED_PRECONDITION');
    // A pod of another VM using the claim: refused.
    await core.createNamespacedPod({ namespace, body: pod('launcher-other', n2, 'vmi-uid-2') });
    const stranger = publish(id, n2);
    await expect(stranger).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(stranger).rejects.toThrow(/more than one VM/);
    await core.deleteNamespacedPod({ name: 'launcher-other', namespace, gracePeriodSeconds: 0 });

    // The migration target of the same VM on n2: the second engine joins the same replicas.
    await core.createNamespacedPod({ namespace, body: pod('launcher-dst', n2, 'vmi-uid-1') });
    await retrying(() => publish(id, n2));
    await view.waitForEngineSocket(id, stack.node(n2));
    const both = await volumes.get(id);
    expect(both.spec.engines).toEqual([{ node: n1 }, { node: n2 }]);
    expect(both.status?.engines?.map((e) => e.node).sort()).toEqual([n1, n2].sort());
    const target = engineSocketPath(stack.node(n2).engineDir, id);
    const readBack = join(stack.dir, 'read-back.bin');
    await run('nbdcopy', [`nbd+unix:///${id}?socket=${target}`, readBack], { timeoutMs: 30_000 });
    expect((await readFile(readBack)).subarray(0, MiB).equals(data)).toBe(true);

    // Never a third engine, whoever asks.
    await core.createNamespacedPod({ namespace, body: pod('launcher-3', n3, 'vmi-uid-1') });
    const third = publish(id, n3);
    await expect(third).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(third).rejects.toThrow(/at most 2/);

    // Confirm: the source goes, the target serves alone and still has the data.
    await retrying(() =>
      controller.call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: n1 }),
    );
    const after = await volumes.get(id);
    expect(after.spec.engines).toEqual([{ node: n2 }]);
    expect(after.status?.engines?.map((e) => e.node)).toEqual([n2]);
    const again = join(stack.dir, 'read-again.bin');
    await run('nbdcopy', [`nbd+unix:///${id}?socket=${target}`, again], { timeoutMs: 30_000 });
    expect((await readFile(again)).subarray(0, MiB).equals(data)).toBe(true);

    await retrying(() =>
      controller.call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: n2 }),
    );
    await retrying(() => controller.call('Controller', 'DeleteVolume', { volume_id: id }));
  }, 240_000);
});
