/**
 * The real kubernetes-csi sidecars (external-provisioner, external-attacher, external-resizer,
 * built from Go modules) against the real kube-apiserver and the driver on two simulated nodes:
 * a claim is provisioned, a VolumeAttachment attached, the claim expanded, then everything is
 * deleted and no Volume, replica, credential or engine is left.
 *
 * No kube-controller-manager or kubelet runs here, so the test does by hand the few steps their
 * controllers would: the Node and CSINode objects kubelet registers, the PVC's provisioner
 * annotation and the PV/PVC binding the PV controller writes, and the PV's Released phase after the
 * claim is deleted. Every Tandem-side step is the sidecars calling the driver.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoreV1Api,
  PatchStrategy,
  StorageV1Api,
  setHeaderOptions,
  type V1PersistentVolume,
} from '@kubernetes/client-node';
import { TOPOLOGY_NODE_KEY } from '../../driver/csi/node-topology.js';
import { credentialSecretName } from '../../driver/dataplane/credentials.js';
import { type ToolName, toolPath } from '../../lab/tools.js';
import { CSI_DRIVER_NAME } from '../../lib/api/volume.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { eventually, TEST_KUBECONFIG_ENV, testKubeConfig, uniqueName } from '../harness/cluster.js';
import { CsiStack } from '../harness/csi-stack.js';

const MiB = 1024 * 1024;

describe('external-provisioner, -attacher and -resizer against the driver', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const storage = kc.makeApiClient(StorageV1Api);
  const volumes = new VolumeClient(kc);
  const namespace = uniqueName('sidecars');
  const className = uniqueName('tandem');
  const sidecars: ChildProcess[] = [];
  let stack: CsiStack;

  const startSidecar = (tool: ToolName, args: string[]) => {
    const child = spawn(toolPath(tool), [
      `--csi-address=${stack.controllerSocket}`,
      `--kubeconfig=${process.env[TEST_KUBECONFIG_ENV]}`,
      '--timeout=60s',
      '--v=4',
      ...args,
    ]);
    const log = createWriteStream(join(stack.dir, `${tool}.log`));
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    sidecars.push(child);
  };

  beforeAll(async () => {
    stack = await CsiStack.start(2);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    // What kubelet registers on each node: the Node (with the topology label) and the CSINode entry.
    for (const node of stack.nodes) {
      await core.createNode({
        body: { metadata: { name: node.name, labels: { [TOPOLOGY_NODE_KEY]: node.name } } },
      });
      await storage.createCSINode({
        body: {
          metadata: { name: node.name },
          spec: {
            drivers: [{ name: CSI_DRIVER_NAME, nodeID: node.name, topologyKeys: [TOPOLOGY_NODE_KEY] }],
          },
        },
      });
    }
    await storage.createStorageClass({
      body: {
        metadata: { name: className },
        provisioner: CSI_DRIVER_NAME,
        parameters: { numberOfReplicas: '2' },
        allowVolumeExpansion: true,
        reclaimPolicy: 'Delete',
        volumeBindingMode: 'Immediate',
      },
    });
    startSidecar('csi-provisioner', [
      '--extra-create-metadata',
      '--default-fstype=ext4',
      '--retry-interval-max=5s',
    ]);
    startSidecar('csi-attacher', ['--retry-interval-max=5s']);
    startSidecar('csi-resizer', ['--handle-volume-inuse-error=false', '--retry-interval-max=5s']);
  }, 120_000);

  afterAll(async () => {
    for (const child of sidecars) child.kill('SIGTERM');
    await Promise.all(
      sidecars.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)),
    );
    for (const node of stack?.nodes ?? []) {
      await storage.deleteCSINode({ name: node.name }).catch(() => undefined);
      await core.deleteNode({ name: node.name }).catch(() => undefined);
    }
    await storage.deleteStorageClass({ name: className }).catch(() => undefined);
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    await stack?.destroy();
  }, 120_000);

  test('provision, attach, expand, detach, delete: nothing left behind', async () => {
    const claim = 'data';
    await core.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: {
          name: claim,
          // The PV controller's hand-off to the external provisioner.
          annotations: { 'volume.kubernetes.io/storage-provisioner': CSI_DRIVER_NAME },
        },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: className,
          resources: { requests: { storage: '64Mi' } },
        },
      },
    });

    // Provisioned: a PV for the claim, a Volume with two replicas, a replica on each node.
    const pv = await eventually(async () => {
      const list = await core.listPersistentVolume();
      return list.items.find(
        (p) => p.spec?.claimRef?.name === claim && p.spec.claimRef.namespace === namespace,
      );
    }, 60_000);
    const volumeId = pv.spec?.csi?.volumeHandle ?? '';
    expect(pv.spec?.csi?.driver).toBe(CSI_DRIVER_NAME);
    const volume = await volumes.get(volumeId);
    expect(volume.spec).toMatchObject({
      sizeBytes: 64 * MiB,
      numberOfReplicas: 2,
      accessMode: 'ReadWriteOnce',
    });
    expect(volume.metadata.name).toBe(pv.metadata?.name);
    // The claim is recorded with its UID, which `kubectl describe pvc` selects Events by.
    const pvc = await core.readNamespacedPersistentVolumeClaim({ name: claim, namespace });
    expect(volume.metadata.annotations).toMatchObject({
      'tandem.dev/pvc-name': claim,
      'tandem.dev/pvc-namespace': namespace,
      'tandem.dev/pvc-uid': pvc.metadata?.uid,
    });
    await eventually(
      () => stack.nodes.every((n) => existsSync(join(n.dataDir, volumeId, 'meta.json'))) || undefined,
      30_000,
    );

    await bind(pv, claim);

    // Attached: the attacher calls ControllerPublishVolume, which returns once the engine serves.
    const attachment = uniqueName('va');
    const node = stack.nodes[0]?.name ?? '';
    await storage.createVolumeAttachment({
      body: {
        metadata: { name: attachment },
        spec: {
          attacher: CSI_DRIVER_NAME,
          nodeName: node,
          source: { persistentVolumeName: pv.metadata?.name },
        },
      },
    });
    await eventually(
      async () => (await storage.readVolumeAttachment({ name: attachment })).status?.attached || undefined,
      90_000,
    );
    const attached = await volumes.get(volumeId);
    expect(attached.spec.engines).toEqual([{ node }]);
    expect(attached.status?.engines?.map((e) => e.node)).toEqual([node]);
    expect(existsSync(join(stack.node(node).engineDir, `${volumeId}.sock`))).toBe(true);

    // Expanded online: the resizer calls ControllerExpandVolume; the PV and the Volume grow.
    await core.patchNamespacedPersistentVolumeClaim(
      {
        name: claim,
        namespace,
        body: [{ op: 'replace', path: '/spec/resources/requests/storage', value: '128Mi' }],
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    await eventually(async () => {
      const grown = await core.readPersistentVolume({ name: pv.metadata?.name ?? '' });
      return grown.spec?.capacity?.storage === '128Mi' || undefined;
    }, 60_000);
    expect((await volumes.get(volumeId)).spec.sizeBytes).toBe(128 * MiB);

    // Detached: deleting the VolumeAttachment makes the attacher unpublish; the engine stops.
    await storage.deleteVolumeAttachment({ name: attachment });
    await eventually(async () => {
      const list = await storage.listVolumeAttachment();
      return list.items.every((va) => va.metadata?.name !== attachment) || undefined;
    }, 60_000);
    const detached = await volumes.get(volumeId);
    expect(detached.spec.engines).toEqual([]);
    expect(detached.status?.engines ?? []).toEqual([]);

    // Deleted: the claim goes, the PV controller would mark the PV Released, the provisioner deletes.
    await core.deleteNamespacedPersistentVolumeClaim({ name: claim, namespace });
    await core.replacePersistentVolumeStatus({
      name: pv.metadata?.name ?? '',
      body: {
        ...(await core.readPersistentVolume({ name: pv.metadata?.name ?? '' })),
        status: { phase: 'Released' },
      },
    });
    // The provisioner deletes the volume, then the PV; the apiserver's StorageObjectInUseProtection
    // admission gave the PV the pv-protection finalizer, which the (absent) pv-protection
    // controller would remove: done here once the provisioner has deleted the PV.
    const pvName = pv.metadata?.name ?? '';
    await eventually(async () => {
      const list = await core.listPersistentVolume();
      const left = list.items.find((p) => p.metadata?.name === pvName);
      return left === undefined || left.metadata?.deletionTimestamp !== undefined || undefined;
    }, 60_000);
    await core
      .patchPersistentVolume(
        { name: pvName, body: [{ op: 'replace', path: '/metadata/finalizers', value: [] }] },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      )
      .catch(() => undefined);
    await eventually(
      async () => ((await volumes.list()).items.some((v) => v.metadata.name === volumeId) ? undefined : true),
      30_000,
    );
    await eventually(
      () => stack.nodes.every((n) => !existsSync(join(n.dataDir, volumeId))) || undefined,
      30_000,
    );
    for (const n of stack.nodes) expect(existsSync(join(n.engineDir, `${volumeId}.sock`))).toBe(false);
    await expect(
      core.readNamespacedSecret({ name: credentialSecretName(volumeId), namespace: stack.namespace }),
    ).rejects.toMatchObject({ code: 404 });
  }, 300_000);

  /** The PV controller's binding: claim → volume, both phases Bound. */
  async function bind(pv: V1PersistentVolume, claim: string): Promise<void> {
    const name = pv.metadata?.name ?? '';
    const pvc = await core.readNamespacedPersistentVolumeClaim({ name: claim, namespace });
    await core.replaceNamespacedPersistentVolumeClaim({
      name: claim,
      namespace,
      body: { ...pvc, spec: { ...pvc.spec, volumeName: name } },
    });
    const bound = await core.readNamespacedPersistentVolumeClaim({ name: claim, namespace });
    await core.replaceNamespacedPersistentVolumeClaimStatus({
      name: claim,
      namespace,
      body: {
        ...bound,
        status: { phase: 'Bound', accessModes: ['ReadWriteOnce'], capacity: { storage: '64Mi' } },
      },
    });
    const current = await core.readPersistentVolume({ name });
    await core.replacePersistentVolumeStatus({ name, body: { ...current, status: { phase: 'Bound' } } });
  }
});
