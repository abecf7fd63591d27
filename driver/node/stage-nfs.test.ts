/**
 * The node plugin's NFS path with the machine faked (FakeNodeOps): no kernel NFS client exists on
 * these machines, so `mount -t nfs4` itself is covered only by nfs-mount.test.ts's command line
 * and fallback rules; the data moves through lib/nfs4 in the integration suites.
 */
import { status } from '@grpc/grpc-js';
import { silentLogger } from '../../lib/log.js';
import { blockCapability, mountCapability } from '../../test/harness/csi-requests.js';
import { type FakeNodeOps, fakeNodeEnv } from '../../test/harness/fake-node-ops.js';
import { NfsMountError } from './nfs-mount.js';
import { nodePublishVolume, nodeUnpublishVolume } from './publish.js';
import type { NodeEnv } from './requests.js';
import { type NodeStageVolumeRequest, nodeStageVolume, nodeUnstageVolume, readStageRecord } from './stage.js';

const ctx = () => ({ logger: silentLogger(), signal: new AbortController().signal });
const staging = '/var/lib/kubelet/staging/pvc-1';
const context = { nfsServer: '198.18.200.7', nfsOptions: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5' };

let ops: FakeNodeOps;
let env: NodeEnv;
let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ ops, env, cleanup } = await fakeNodeEnv('stage-nfs'));
});
afterEach(() => cleanup());

function stage(overrides: Partial<NodeStageVolumeRequest> = {}): NodeStageVolumeRequest {
  return {
    volume_id: 'pvc-1',
    staging_target_path: staging,
    volume_capability: mountCapability('MULTI_NODE_MULTI_WRITER'),
    publish_context: context,
    volume_context: {},
    secrets: {},
    ...overrides,
  };
}

const publish = (target: string) => ({
  volume_id: 'pvc-1',
  staging_target_path: staging,
  target_path: target,
  volume_capability: mountCapability('MULTI_NODE_MULTI_WRITER'),
  readonly: false,
  publish_context: context,
  volume_context: {},
});

test("stages by mounting the share manager's export with the class's options, no block device, idempotently", async () => {
  await nodeStageVolume(env, stage(), ctx());
  await nodeStageVolume(env, stage(), ctx());
  expect(ops.calls.filter((c) => c.startsWith('mount'))).toEqual([
    `mount nfs4 198.18.200.7:/ ${staging} ${context.nfsOptions}`,
  ]);
  expect(await env.ops.attachedDevice('pvc-1')).toBeUndefined();
  expect(await readStageRecord(env.stateDir, 'pvc-1')).toMatchObject({
    accessType: 'nfs',
    nfs: { server: '198.18.200.7', options: context.nfsOptions },
  });
});

test('publishes into two pods by bind mounts, and unstages only once both are gone', async () => {
  await nodeStageVolume(env, stage(), ctx());
  await nodePublishVolume(env, publish('/pods/a/vol'), ctx());
  await nodePublishVolume(env, publish('/pods/b/vol'), ctx());
  expect(ops.calls).toEqual(
    expect.arrayContaining([`bind ${staging} /pods/a/vol`, `bind ${staging} /pods/b/vol`]),
  );
  await expect(
    nodeUnstageVolume(env, { volume_id: 'pvc-1', staging_target_path: staging }, ctx()),
  ).rejects.toMatchObject({
    code: status.FAILED_PRECONDITION,
    message: expect.stringMatching(/still published at \/pods\/a\/vol, \/pods\/b\/vol/),
  });
  await nodeUnpublishVolume(env, { volume_id: 'pvc-1', target_path: '/pods/a/vol' }, ctx());
  await nodeUnpublishVolume(env, { volume_id: 'pvc-1', target_path: '/pods/b/vol' }, ctx());
  await nodeUnstageVolume(env, { volume_id: 'pvc-1', staging_target_path: staging }, ctx());
  expect((await env.ops.mounts()).filter((m) => m.fsType.startsWith('nfs'))).toEqual([]);
  expect(await readStageRecord(env.stateDir, 'pvc-1')).toBeUndefined();
});

test('a reader-only access mode mounts read-only', async () => {
  await nodeStageVolume(env, stage({ volume_capability: mountCapability('MULTI_NODE_READER_ONLY') }), ctx());
  expect(ops.calls).toContain(`mount nfs4 198.18.200.7:/ ${staging} ${context.nfsOptions},ro`);
});

test.each([
  ['a server that is no address', { nfsServer: 'a b', nfsOptions: 'vers=4.1' }, /no IP address or DNS name/],
  [
    'options with a space',
    { nfsServer: '198.18.200.7', nfsOptions: 'vers=4.1, hard' },
    /not a mount option list/,
  ],
])(
  'refuses %s in publish_context with INVALID_ARGUMENT, mounting nothing',
  async (_, publishContext, message) => {
    await expect(
      nodeStageVolume(env, stage({ publish_context: publishContext }), ctx()),
    ).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: expect.stringMatching(message),
    });
    expect(ops.calls.filter((c) => c.startsWith('mount'))).toEqual([]);
  },
);

test('block access to an NFS volume is refused', async () => {
  await expect(
    nodeStageVolume(env, stage({ volume_capability: blockCapability('MULTI_NODE_MULTI_WRITER') }), ctx()),
  ).rejects.toMatchObject({
    code: status.INVALID_ARGUMENT,
    message: expect.stringMatching(/mount access only/),
  });
});

test("a mount the kernel refuses for its options is the class's to fix; one that gets no answer is retried", async () => {
  ops.nfsFailure = new NfsMountError(
    'mount -t nfs4 -o vers=4.3 198.18.200.7:/ refused: incorrect mount option',
  );
  await expect(nodeStageVolume(env, stage(), ctx())).rejects.toMatchObject({
    code: status.INVALID_ARGUMENT,
    message: expect.stringMatching(/fix the class's nfsOptions/),
  });
  ops.nfsFailure = new NfsMountError('mount -t nfs4 198.18.200.7:/ refused: Connection timed out');
  await expect(nodeStageVolume(env, stage(), ctx())).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(await readStageRecord(env.stateDir, 'pvc-1')).toBeUndefined();
});
