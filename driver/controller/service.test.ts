import { status } from '@grpc/grpc-js';
import { silentLogger } from '../../lib/log.js';
import { blockCapability, createVolumeRequest, mountCapability } from '../../test/harness/csi-requests.js';
import { MemoryControllerCluster } from '../../test/harness/memory-controller-cluster.js';
import { CsiError } from '../csi/errors.js';
import type { RpcContext } from '../csi/rpc.js';
import { controllerHandlers } from './service.js';
import { eventSubject } from './volume-events.js';
import { CSI_NAME_ANNOTATION } from './volume-id.js';

const GiB = 1024 ** 3;
const context = (): RpcContext => ({ logger: silentLogger(), signal: new AbortController().signal });

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof CsiError) return status[err.code] as string;
    throw err;
  }
  return 'OK';
}

function setup(nodes = ['n1', 'n2', 'n3']) {
  const cluster = new MemoryControllerCluster();
  for (const n of nodes) cluster.addNode(n);
  const warnings: string[] = [];
  const handlers = controllerHandlers({
    cluster,
    engineWaitMs: 300,
    events: { record: (_subject, details) => warnings.push(details.reason) },
  });
  return { cluster, handlers, warnings };
}

const rwo = (name = 'pvc-1', replicas = '3') =>
  createVolumeRequest({ name, parameters: { numberOfReplicas: replicas } });

const migratable = (name = 'pvc-m') =>
  createVolumeRequest({
    name,
    volume_capabilities: [blockCapability('MULTI_NODE_MULTI_WRITER')],
    parameters: { numberOfReplicas: '2', migratable: 'true' },
  });

describe('CreateVolume', () => {
  test('creates the Volume, its credential and a placement on distinct nodes', async () => {
    const { cluster, handlers } = setup();
    const { volume } = await handlers.CreateVolume(rwo(), context());
    expect(volume.volume_id).toBe('pvc-1');
    expect(volume.capacity_bytes).toBe(String(2 * GiB));
    const stored = cluster.volumes.get('pvc-1');
    expect(stored?.spec).toMatchObject({
      sizeBytes: 2 * GiB,
      numberOfReplicas: 3,
      accessMode: 'ReadWriteOnce',
    });
    const replicas = stored?.status?.replicas ?? [];
    expect(new Set(replicas.map((r) => r.node))).toEqual(new Set(['n1', 'n2', 'n3']));
    expect(replicas.every((r) => r.mode === 'ReadWrite' && r.address?.endsWith(':9500'))).toBe(true);
    expect(stored?.status?.epoch).toBe(1);
    expect(cluster.credentials.has('pvc-1')).toBe(true);
  });

  test('a retry returns the same volume; other arguments are ALREADY_EXISTS', async () => {
    const { cluster, handlers } = setup();
    const first = await handlers.CreateVolume(rwo(), context());
    const version = cluster.volumes.get('pvc-1')?.metadata.resourceVersion;
    expect(await handlers.CreateVolume(rwo(), context())).toEqual(first);
    expect(cluster.volumes.get('pvc-1')?.metadata.resourceVersion).toBe(version);
    expect(await codeOf(handlers.CreateVolume(rwo('pvc-1', '2'), context()))).toBe('ALREADY_EXISTS');
  });

  test('a retry after a crash between create and placement finishes the placement', async () => {
    const { cluster, handlers } = setup();
    cluster.nodes = [];
    expect(await codeOf(handlers.CreateVolume(rwo(), context()))).toBe('RESOURCE_EXHAUSTED');
    expect(cluster.volumes.get('pvc-1')?.status?.replicas ?? []).toEqual([]);
    for (const n of ['n1', 'n2', 'n3']) cluster.addNode(n);
    await handlers.CreateVolume(rwo(), context());
    expect(cluster.volumes.get('pvc-1')?.status?.replicas).toHaveLength(3);
  });

  test('no room is RESOURCE_EXHAUSTED and reported as a warning', async () => {
    const { handlers, warnings } = setup(['n1', 'n2']);
    const refused = handlers.CreateVolume(rwo(), context());
    await expect(refused).rejects.toThrow(/cannot place 3 replicas/);
    expect(warnings).toEqual(['NoRoomForReplicas']);
  });

  test('dead and cordoned nodes get no replicas', async () => {
    const { cluster, handlers } = setup(['n1', 'n2']);
    cluster.addNode('dead', 100 * GiB, false);
    cluster.addNode('cordoned');
    cluster.cordoned.add('cordoned');
    expect(await codeOf(handlers.CreateVolume(rwo(), context()))).toBe('RESOURCE_EXHAUSTED');
    await handlers.CreateVolume(rwo('pvc-2', '2'), context());
    expect(
      cluster.volumes
        .get('pvc-2')
        ?.status?.replicas?.map((r) => r.node)
        .sort(),
    ).toEqual(['n1', 'n2']);
  });

  test('a name that cannot be a resource name maps to a stable hashed id', async () => {
    const { cluster, handlers } = setup();
    const { volume } = await handlers.CreateVolume(rwo('Sanity-Volume-1F2E'), context());
    expect(volume.volume_id).toMatch(/^csi-[0-9a-f]{40}$/);
    expect(cluster.volumes.get(volume.volume_id)?.metadata.annotations?.[CSI_NAME_ANNOTATION]).toBe(
      'Sanity-Volume-1F2E',
    );
    expect((await handlers.CreateVolume(rwo('Sanity-Volume-1F2E'), context())).volume.volume_id).toBe(
      volume.volume_id,
    );
  });

  test('the claim named by the provisioner is recorded with its UID, so Events reach kubectl describe', async () => {
    const { cluster, handlers } = setup();
    cluster.claims.set('apps/data', 'uid-123');
    const request = createVolumeRequest({
      name: 'pvc-claim',
      parameters: {
        numberOfReplicas: '1',
        'csi.storage.k8s.io/pvc/name': 'data',
        'csi.storage.k8s.io/pvc/namespace': 'apps',
      },
    });
    await handlers.CreateVolume(request, context());
    const volume = cluster.volumes.get('pvc-claim');
    expect(volume && eventSubject(volume)).toEqual({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      name: 'data',
      namespace: 'apps',
      uid: 'uid-123',
    });
  });

  test("ReadWriteMany Filesystem gets replicas like any volume, and the share manager's settings from the class", async () => {
    const { cluster, handlers } = setup();
    cluster.claimNodes.set('apps/shared', ['n1', 'n2']);
    const request = createVolumeRequest({
      name: 'pvc-rwx',
      volume_capabilities: [mountCapability('MULTI_NODE_MULTI_WRITER')],
      parameters: {
        numberOfReplicas: '2',
        fastFailover: 'true',
        nfsOptions: 'vers=4.2,soft,timeo=100,retrans=3',
        shareManagerNodeSelector: 'role:nfs',
        shareManagerTolerations: 'dedicated=nfs:NoSchedule',
        'csi.storage.k8s.io/pvc/name': 'shared',
        'csi.storage.k8s.io/pvc/namespace': 'apps',
      },
    });
    await handlers.CreateVolume(request, context());
    const volume = cluster.volumes.get('pvc-rwx');
    expect(volume?.spec).toMatchObject({
      accessMode: 'ReadWriteMany',
      volumeMode: 'Filesystem',
      fsType: 'ext4',
    });
    expect(volume?.spec.share).toEqual({
      nfsOptions: 'vers=4.2,soft,timeo=100,retrans=3',
      fastFailover: true,
      nodeSelector: { role: 'nfs' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'nfs', effect: 'NoSchedule' }],
      nodes: ['n1', 'n2'],
    });
    expect(volume?.status?.replicas).toHaveLength(2);
    // A retry finds the same volume.
    expect((await handlers.CreateVolume(request, context())).volume.volume_id).toBe('pvc-rwx');
  });

  test('a ReadWriteOnce volume has no share manager settings', async () => {
    const { cluster, handlers } = setup();
    await handlers.CreateVolume(rwo(), context());
    expect(cluster.volumes.get('pvc-1')?.spec.share).toBeUndefined();
  });

  test('a class whose allowedTopologies admit no node is refused before anything is created', async () => {
    const { cluster, handlers } = setup();
    cluster.claimNodes.set('apps/nowhere', []);
    const request = createVolumeRequest({
      volume_capabilities: [mountCapability('MULTI_NODE_MULTI_WRITER')],
      parameters: {
        'csi.storage.k8s.io/pvc/name': 'nowhere',
        'csi.storage.k8s.io/pvc/namespace': 'apps',
      },
    });
    const error = await handlers.CreateVolume(request, context()).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CsiError);
    expect((error as CsiError).code).toBe(status.INVALID_ARGUMENT);
    expect((error as CsiError).message).toMatch(/admit no node/);
    expect(cluster.volumes.size).toBe(0);
  });
});

describe('DeleteVolume', () => {
  test('is idempotent, removes the credential, and refuses while attached', async () => {
    const { cluster, handlers } = setup();
    await handlers.CreateVolume(rwo(), context());
    await handlers.ControllerPublishVolume(publish('pvc-1', 'n1'), context());
    expect(await codeOf(handlers.DeleteVolume({ volume_id: 'pvc-1' }, context()))).toBe(
      'FAILED_PRECONDITION',
    );
    await handlers.ControllerUnpublishVolume({ volume_id: 'pvc-1', node_id: 'n1' }, context());
    await handlers.DeleteVolume({ volume_id: 'pvc-1' }, context());
    expect(cluster.volumes.has('pvc-1')).toBe(false);
    expect(cluster.credentials.has('pvc-1')).toBe(false);
    await handlers.DeleteVolume({ volume_id: 'pvc-1' }, context());
    expect(await codeOf(handlers.DeleteVolume({ volume_id: '' }, context()))).toBe('INVALID_ARGUMENT');
  });
});

function publish(volume: string, node: string, capability = mountCapability('SINGLE_NODE_MULTI_WRITER')) {
  return {
    volume_id: volume,
    node_id: node,
    volume_capability: capability,
    readonly: false,
    volume_context: {},
  };
}

describe('ControllerPublishVolume / ControllerUnpublishVolume', () => {
  test('publishes once the engine serves; idempotent; another node is FAILED_PRECONDITION', async () => {
    const { cluster, handlers } = setup();
    await handlers.CreateVolume(rwo(), context());
    await handlers.ControllerPublishVolume(publish('pvc-1', 'n2'), context());
    expect(cluster.volumes.get('pvc-1')?.spec.engines).toEqual([{ node: 'n2' }]);
    await handlers.ControllerPublishVolume(publish('pvc-1', 'n2'), context());
    expect(cluster.volumes.get('pvc-1')?.spec.engines).toHaveLength(1);
    const other = handlers.ControllerPublishVolume(publish('pvc-1', 'n3'), context());
    await expect(other).rejects.toThrow(/already published on node n2/);
  });

  test('unknown volume or node is NOT_FOUND; missing fields INVALID_ARGUMENT', async () => {
    const { handlers } = setup();
    await handlers.CreateVolume(rwo(), context());
    expect(await codeOf(handlers.ControllerPublishVolume(publish('nope', 'n1'), context()))).toBe(
      'NOT_FOUND',
    );
    expect(await codeOf(handlers.ControllerPublishVolume(publish('pvc-1', 'nope'), context()))).toBe(
      'NOT_FOUND',
    );
    expect(await codeOf(handlers.ControllerPublishVolume(publish('pvc-1', ''), context()))).toBe(
      'INVALID_ARGUMENT',
    );
    const noCapability = { ...publish('pvc-1', 'n1'), volume_capability: null };
    expect(await codeOf(handlers.ControllerPublishVolume(noCapability, context()))).toBe('INVALID_ARGUMENT');
    const block = publish('pvc-1', 'n1', blockCapability('SINGLE_NODE_MULTI_WRITER'));
    expect(await codeOf(handlers.ControllerPublishVolume(block, context()))).toBe('INVALID_ARGUMENT');
  });

  test('an engine that never comes is UNAVAILABLE, and the request stays recorded for the retry', async () => {
    const { cluster, handlers } = setup();
    cluster.dataPlane = false;
    await handlers.CreateVolume(rwo(), context());
    expect(await codeOf(handlers.ControllerPublishVolume(publish('pvc-1', 'n1'), context()))).toBe(
      'UNAVAILABLE',
    );
    expect(cluster.volumes.get('pvc-1')?.spec.engines).toEqual([{ node: 'n1' }]);
  });

  test('a migratable volume gets a second engine only for pods of one VM, never a third', async () => {
    const { cluster, handlers } = setup();
    await handlers.CreateVolume(migratable(), context());
    const cap = blockCapability('MULTI_NODE_MULTI_WRITER');
    await handlers.ControllerPublishVolume(publish('pvc-m', 'n1', cap), context());
    const pod = (name: string, node: string, uid: string) => ({
      namespace: 'vms',
      name,
      node,
      labels: { 'kubevirt.io': 'virt-launcher', 'vm.kubevirt.io/name': 'vm1', 'kubevirt.io/created-by': uid },
      ownerKinds: ['VirtualMachineInstance'],
    });
    cluster.pods = undefined;
    expect(await codeOf(handlers.ControllerPublishVolume(publish('pvc-m', 'n2', cap), context()))).toBe(
      'FAILED_PRECONDITION',
    );
    cluster.pods = [pod('a', 'n1', 'uid-1'), pod('b', 'n2', 'uid-2')];
    await expect(handlers.ControllerPublishVolume(publish('pvc-m', 'n2', cap), context())).rejects.toThrow(
      /more than one VM/,
    );
    cluster.pods = [pod('a', 'n1', 'uid-1'), { ...pod('b', 'n2', 'uid-1'), labels: { app: 'db' } }];
    await expect(handlers.ControllerPublishVolume(publish('pvc-m', 'n2', cap), context())).rejects.toThrow(
      /not a virt-launcher/,
    );
    cluster.pods = [pod('a', 'n1', 'uid-1'), pod('b', 'n2', 'uid-1')];
    await handlers.ControllerPublishVolume(publish('pvc-m', 'n2', cap), context());
    expect(cluster.volumes.get('pvc-m')?.spec.engines).toEqual([{ node: 'n1' }, { node: 'n2' }]);
    await expect(handlers.ControllerPublishVolume(publish('pvc-m', 'n3', cap), context())).rejects.toThrow(
      /at most 2/,
    );
  });

  test('unpublish waits for the engine to leave; a lost node is struck with a new epoch', async () => {
    const { cluster, handlers } = setup();
    await handlers.CreateVolume(rwo(), context());
    await handlers.ControllerPublishVolume(publish('pvc-1', 'n1'), context());
    await handlers.ControllerUnpublishVolume({ volume_id: 'pvc-1', node_id: 'n1' }, context());
    expect(cluster.volumes.get('pvc-1')?.status?.engines).toEqual([]);

    await handlers.ControllerPublishVolume(publish('pvc-1', 'n1'), context());
    cluster.dataPlane = false;
    const n1 = cluster.nodes.find((n) => n.node === 'n1');
    if (n1) n1.renewedAtMs = 0;
    const epoch = cluster.volumes.get('pvc-1')?.status?.epoch ?? 0;
    await handlers.ControllerUnpublishVolume({ volume_id: 'pvc-1', node_id: 'n1' }, context());
    expect(cluster.volumes.get('pvc-1')?.status?.engines).toEqual([]);
    expect(cluster.volumes.get('pvc-1')?.status?.epoch).toBe(epoch + 1);
    // Already gone: fine.
    await handlers.ControllerUnpublishVolume({ volume_id: 'pvc-1', node_id: 'n1' }, context());
    await handlers.ControllerUnpublishVolume({ volume_id: 'gone', node_id: 'n1' }, context());
  });
});

describe('ListVolumes', () => {
  test('pages by name; survives deletions between pages; foreign tokens are ABORTED', async () => {
    const { cluster, handlers } = setup();
    for (const name of ['v-a', 'v-b', 'v-c', 'v-d', 'v-e']) await handlers.CreateVolume(rwo(name), context());
    const first = await handlers.ListVolumes({ max_entries: 2, starting_token: '' });
    expect(first.entries.map((e) => e.volume.volume_id)).toEqual(['v-a', 'v-b']);
    cluster.volumes.delete('v-b');
    const second = await handlers.ListVolumes({ max_entries: 2, starting_token: first.next_token });
    expect(second.entries.map((e) => e.volume.volume_id)).toEqual(['v-c', 'v-d']);
    const last = await handlers.ListVolumes({ max_entries: 2, starting_token: second.next_token });
    expect(last.entries.map((e) => e.volume.volume_id)).toEqual(['v-e']);
    expect(last.next_token).toBe('');
    expect((await handlers.ListVolumes({})).entries).toHaveLength(4);
    expect(await codeOf(handlers.ListVolumes({ starting_token: 'invalid-token' }))).toBe('ABORTED');
    expect(await codeOf(handlers.ListVolumes({ max_entries: -1 }))).toBe('INVALID_ARGUMENT');
  });

  test('entries carry published nodes and the condition, which counts replicas on lost nodes', async () => {
    const { cluster, handlers } = setup();
    await handlers.CreateVolume(rwo(), context());
    await handlers.ControllerPublishVolume(publish('pvc-1', 'n3'), context());
    const entry = await handlers.ControllerGetVolume({ volume_id: 'pvc-1' });
    expect(entry.status.published_node_ids).toEqual(['n3']);
    expect(entry.status.volume_condition).toEqual({ abnormal: false, message: '3 of 3 replicas healthy' });
    const n2 = cluster.nodes.find((n) => n.node === 'n2');
    if (n2) n2.renewedAtMs = 0;
    const lost = await handlers.ControllerGetVolume({ volume_id: 'pvc-1' });
    expect(lost.status.volume_condition).toEqual({
      abnormal: true,
      message: expect.stringMatching(/node n2 \(replica ReadWrite\) stopped renewing its registration/),
    });
  });
});

describe('ControllerExpandVolume and GetCapacity', () => {
  test('grows in whole blocks, never shrinks, waits while migrating', async () => {
    const { cluster, handlers } = setup();
    await handlers.CreateVolume(rwo(), context());
    const grown = await handlers.ControllerExpandVolume(
      { volume_id: 'pvc-1', capacity_range: { required_bytes: String(3 * GiB + 1) } },
      context(),
    );
    expect(grown).toEqual({ capacity_bytes: String(3 * GiB + 4096), node_expansion_required: true });
    const smaller = await handlers.ControllerExpandVolume(
      { volume_id: 'pvc-1', capacity_range: { required_bytes: String(GiB) } },
      context(),
    );
    expect(smaller.capacity_bytes).toBe(String(3 * GiB + 4096));
    expect(cluster.volumes.get('pvc-1')?.spec.sizeBytes).toBe(3 * GiB + 4096);
    expect(
      await codeOf(
        handlers.ControllerExpandVolume(
          { volume_id: 'nope', capacity_range: { required_bytes: '1' } },
          context(),
        ),
      ),
    ).toBe('NOT_FOUND');
    expect(
      await codeOf(handlers.ControllerExpandVolume({ volume_id: 'pvc-1', capacity_range: null }, context())),
    ).toBe('INVALID_ARGUMENT');
    const volume = cluster.volumes.get('pvc-1');
    if (volume) volume.spec.engines = [{ node: 'n1' }, { node: 'n2' }];
    expect(
      await codeOf(
        handlers.ControllerExpandVolume(
          { volume_id: 'pvc-1', capacity_range: { required_bytes: String(4 * GiB) } },
          context(),
        ),
      ),
    ).toBe('FAILED_PRECONDITION');
  });

  test('an RWX Filesystem volume needs no NodeExpandVolume: its share manager grows the filesystem, clients hold NFS mounts', async () => {
    const { handlers } = setup();
    await handlers.CreateVolume(
      createVolumeRequest({
        name: 'pvc-rwx',
        volume_capabilities: [mountCapability('MULTI_NODE_MULTI_WRITER')],
        parameters: { numberOfReplicas: '2' },
      }),
      context(),
    );
    const grown = await handlers.ControllerExpandVolume(
      { volume_id: 'pvc-rwx', capacity_range: { required_bytes: String(2 * GiB) } },
      context(),
    );
    expect(grown).toEqual({ capacity_bytes: String(2 * GiB), node_expansion_required: false });
  });

  test('capacity: the n-th roomiest node bounds one volume; unknown node segments have none', async () => {
    const { cluster, handlers } = setup([]);
    cluster.addNode('a', 10 * GiB);
    cluster.addNode('b', 20 * GiB);
    cluster.addNode('c', 30 * GiB);
    const two = await handlers.GetCapacity({ parameters: { numberOfReplicas: '2' } });
    expect(two).toMatchObject({
      available_capacity: String(30 * GiB),
      maximum_volume_size: { value: String(20 * GiB) },
    });
    const unknown = await handlers.GetCapacity({
      parameters: { numberOfReplicas: '1' },
      accessible_topology: { segments: { 'topology.csi.tandem.dev/node': 'zz' } },
    });
    expect(unknown.available_capacity).toBe('0');
    expect(await codeOf(handlers.GetCapacity({ parameters: { numberOfReplicas: 'many' } }))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});
