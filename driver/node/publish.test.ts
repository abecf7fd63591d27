import { status } from '@grpc/grpc-js';
import { silentLogger } from '../../lib/log.js';
import { blockCapability, mountCapability } from '../../test/harness/csi-requests.js';
import { type FakeNodeOps, fakeNodeEnv } from '../../test/harness/fake-node-ops.js';
import type { MountEntry } from './mounts.js';
import { type NodePublishVolumeRequest, nodePublishVolume, nodeUnpublishVolume } from './publish.js';
import type { NodeEnv } from './requests.js';
import { nodeStageVolume } from './stage.js';

const ctx = () => ({ logger: silentLogger(), signal: new AbortController().signal });

let ops: FakeNodeOps;
let env: NodeEnv;
const staging = '/staging/pvc-1';
const target = '/pods/a/volumes/pvc-1/mount';

let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ ops, env, cleanup } = await fakeNodeEnv('publish'));
});
afterEach(() => cleanup());

const stage = (capability = mountCapability('SINGLE_NODE_WRITER')) =>
  nodeStageVolume(
    env,
    { volume_id: 'pvc-1', staging_target_path: staging, volume_capability: capability },
    ctx(),
  );

function request(overrides: Partial<NodePublishVolumeRequest> = {}): NodePublishVolumeRequest {
  return {
    volume_id: 'pvc-1',
    staging_target_path: staging,
    target_path: target,
    volume_capability: mountCapability('SINGLE_NODE_WRITER'),
    readonly: false,
    publish_context: {},
    volume_context: {},
    secrets: {},
    ...overrides,
  };
}

describe('NodePublishVolume', () => {
  it.each([
    ['no volume_id', { volume_id: '' }],
    ['no target_path', { target_path: '' }],
    ['a relative target_path', { target_path: 'pods/x' }],
    ['no staging_target_path', { staging_target_path: '' }],
    ['no volume_capability', { volume_capability: null }],
  ])('refuses %s with INVALID_ARGUMENT', async (_, overrides) => {
    await stage();
    await expect(nodePublishVolume(env, request(overrides), ctx())).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
  });

  it('needs a staged volume (FAILED_PRECONDITION), at that staging path, for that access type', async () => {
    await expect(nodePublishVolume(env, request(), ctx())).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: expect.stringMatching(/not staged at \/staging\/pvc-1.*NodeStageVolume comes first/),
    });
    await stage();
    await expect(
      nodePublishVolume(env, request({ staging_target_path: '/other' }), ctx()),
    ).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
    await expect(
      nodePublishVolume(env, request({ volume_capability: blockCapability('SINGLE_NODE_WRITER') }), ctx()),
    ).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: expect.stringMatching(/staged for mount access/),
    });
    ops.mountTable = []; // the staging mount vanished
    await expect(nodePublishVolume(env, request(), ctx())).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
  });

  it('bind-mounts the staging directory; idempotent; the other read-only flag is ALREADY_EXISTS', async () => {
    await stage();
    await nodePublishVolume(env, request(), ctx());
    await nodePublishVolume(env, request(), ctx());
    expect(ops.calls.filter((c) => c.startsWith('bind'))).toEqual([`bind ${staging} ${target}`]);
    await expect(nodePublishVolume(env, request({ readonly: true }), ctx())).rejects.toMatchObject({
      code: status.ALREADY_EXISTS,
      message: expect.stringMatching(/already published at .* read-write/),
    });
  });

  it('publishes read-only for readonly or a reader-only access mode', async () => {
    await stage();
    await nodePublishVolume(env, request({ target_path: '/t1', readonly: true }), ctx());
    await nodePublishVolume(
      env,
      request({ target_path: '/t2', volume_capability: mountCapability('SINGLE_NODE_READER_ONLY') }),
      ctx(),
    );
    expect(ops.mountTable.filter((m) => m.mountPoint.startsWith('/t')).map((m) => m.options)).toEqual([
      ['ro'],
      ['ro'],
    ]);
    await nodePublishVolume(env, request({ target_path: '/t1', readonly: true }), ctx());
    await expect(nodePublishVolume(env, request({ target_path: '/t1' }), ctx())).rejects.toMatchObject({
      code: status.ALREADY_EXISTS,
    });
  });

  it('refuses a target where something else is mounted', async () => {
    await stage();
    ops.mountTable.push({
      ...(ops.mountTable[0] as MountEntry),
      id: 1,
      major: 8,
      minor: 1,
      mountPoint: target,
      source: '/dev/sda1',
    });
    await expect(nodePublishVolume(env, request(), ctx())).rejects.toMatchObject({
      code: status.ALREADY_EXISTS,
    });
  });

  it('block: binds the device onto a file; read-only binds a read-only loop of its own', async () => {
    await stage(blockCapability('SINGLE_NODE_WRITER'));
    const block = { volume_capability: blockCapability('SINGLE_NODE_WRITER') };
    await nodePublishVolume(env, request({ ...block, target_path: '/dev-a' }), ctx());
    await nodePublishVolume(env, request({ ...block, target_path: '/dev-a' }), ctx());
    await nodePublishVolume(env, request({ ...block, target_path: '/dev-b', readonly: true }), ctx());
    await nodePublishVolume(env, request({ ...block, target_path: '/dev-b', readonly: true }), ctx());
    expect(ops.calls.filter((c) => c.startsWith('bind') || c.startsWith('losetup'))).toEqual([
      'bind /dev/loop0 /dev-a',
      'losetup ro /dev/loop1 /dev/loop0',
      'bind /dev/loop1 /dev-b ro',
    ]);
    await expect(
      nodePublishVolume(env, request({ ...block, target_path: '/dev-a', readonly: true }), ctx()),
    ).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
    await expect(
      nodePublishVolume(env, request({ ...block, target_path: '/dev-b' }), ctx()),
    ).rejects.toMatchObject({
      code: status.ALREADY_EXISTS,
    });

    await nodeUnpublishVolume(env, { volume_id: 'pvc-1', target_path: '/dev-b' }, ctx());
    expect(ops.loops.size).toBe(0);
    await nodeUnpublishVolume(env, { volume_id: 'pvc-1', target_path: '/dev-a' }, ctx());
    expect(ops.paths.has('/dev-a')).toBe(false);
    expect(ops.attached.get('pvc-1')).toBe('/dev/loop0'); // unpublish leaves the stage alone
  });
});

describe('NodeUnpublishVolume', () => {
  it.each([
    ['no volume_id', { volume_id: '', target_path: target }],
    ['no target_path', { volume_id: 'pvc-1', target_path: '' }],
    ['a relative target_path', { volume_id: 'pvc-1', target_path: 'x/y' }],
  ])('refuses %s with INVALID_ARGUMENT', async (_, req) => {
    await expect(nodeUnpublishVolume(env, req, ctx())).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
  });

  it('unmounts and removes the target; an unknown volume or target is OK', async () => {
    await stage();
    await nodePublishVolume(env, request(), ctx());
    await nodeUnpublishVolume(env, { volume_id: 'pvc-1', target_path: target }, ctx());
    expect(ops.mountTable.map((m) => m.mountPoint)).toEqual([staging]);
    expect(ops.paths.has(target)).toBe(false);
    await nodeUnpublishVolume(env, { volume_id: 'pvc-1', target_path: target }, ctx());
    await nodeUnpublishVolume(env, { volume_id: 'never-seen', target_path: '/nowhere' }, ctx());
  });
});
