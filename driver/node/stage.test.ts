import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { silentLogger } from '../../lib/log.js';
import { blockCapability, mountCapability } from '../../test/harness/csi-requests.js';
import { type FakeNodeOps, fakeNodeEnv } from '../../test/harness/fake-node-ops.js';
import type { NodeEnv } from './requests.js';
import { nodeEnv } from './service.js';
import { type NodeStageVolumeRequest, nodeStageVolume, nodeUnstageVolume, readStageRecord } from './stage.js';

const ctx = (signal = new AbortController().signal) => ({ logger: silentLogger(), signal });

let ops: FakeNodeOps;
let env: NodeEnv;
const staging = '/var/lib/kubelet/staging/pvc-1';

let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ ops, env, cleanup } = await fakeNodeEnv('stage'));
});
afterEach(() => cleanup());

function request(overrides: Partial<NodeStageVolumeRequest> = {}): NodeStageVolumeRequest {
  return {
    volume_id: 'pvc-1',
    staging_target_path: staging,
    volume_capability: mountCapability('SINGLE_NODE_WRITER'),
    publish_context: {},
    volume_context: {},
    secrets: {},
    ...overrides,
  };
}

describe('NodeStageVolume request checks', () => {
  it.each([
    ['no volume_id', { volume_id: '' }, /volume_id is empty/],
    ['no staging_target_path', { staging_target_path: '' }, /staging_target_path is empty/],
    ['a relative staging_target_path', { staging_target_path: 'staging/x' }, /not an absolute path/],
    ['no volume_capability', { volume_capability: null }, /volume_capability is not set/],
    [
      'a capability without access mode',
      { volume_capability: { mount: {}, access_type: 'mount' as const, access_mode: null } },
      /volume_capability: access_mode is not set/,
    ],
    [
      'an unsupported fs_type',
      { volume_capability: mountCapability('SINGLE_NODE_WRITER', 'btrfs') },
      /btrfs is not supported/,
    ],
    [
      'an unsupported fs type in the volume context',
      { volume_context: { 'tandem.dev/fs-type': 'ntfs' } },
      /ntfs/,
    ],
  ])('refuses %s with INVALID_ARGUMENT before touching anything', async (_, overrides, message) => {
    await expect(nodeStageVolume(env, request(overrides), ctx())).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: expect.stringMatching(message),
    });
    expect(ops.calls).toEqual([]);
  });

  it('answers UNAVAILABLE, naming the missing engine, when nothing serves the volume', async () => {
    ops.answering.clear();
    await expect(nodeStageVolume(env, request(), ctx())).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      message: expect.stringMatching(
        /no engine serves volume pvc-1 on this node.*ControllerPublishVolume starts it/,
      ),
    });
    expect(await readStageRecord(env.stateDir, 'pvc-1')).toBeUndefined();
  });

  it('stops waiting for the engine when the call is cancelled', async () => {
    ops.answering.clear();
    const slow = { ...env, engineWaitMs: 60_000 };
    const controller = new AbortController();
    const started = Date.now();
    const staged = nodeStageVolume(slow, request(), ctx(controller.signal));
    setTimeout(() => controller.abort(), 100);
    await expect(staged).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('waits for an engine that comes up during the call', async () => {
    ops.answering.clear();
    setTimeout(() => ops.answering.add('/run/engines/pvc-1.sock'), 100);
    await nodeStageVolume({ ...env, engineWaitMs: 5000 }, request(), ctx());
    expect(ops.attached.get('pvc-1')).toBe('/dev/loop0');
  });
});

describe('NodeStageVolume', () => {
  it('attaches, formats ext4 by default, mounts with the capability flags and records the stage', async () => {
    const capability = mountCapability('SINGLE_NODE_WRITER');
    capability.mount = { fs_type: '', mount_flags: ['noatime'], volume_mount_group: '' };
    await nodeStageVolume(env, request({ volume_capability: capability }), ctx());
    expect(ops.calls).toEqual([
      'attach pvc-1',
      'mkfs ext4 /dev/loop0',
      `mount /dev/loop0 ${staging} noatime`,
    ]);
    expect(await readStageRecord(env.stateDir, 'pvc-1')).toEqual({
      volumeId: 'pvc-1',
      stagingTargetPath: staging,
      accessType: 'mount',
      fsType: 'ext4',
      mountFlags: ['noatime'],
      readOnly: false,
    });
  });

  it('takes the fs type from the capability first, then the volume context', async () => {
    await nodeStageVolume(env, request({ volume_context: { 'tandem.dev/fs-type': 'xfs' } }), ctx());
    expect(ops.filesystems.get('/dev/loop0')?.fsType).toBe('xfs');
  });

  it('is idempotent, and a second identical call does nothing at all', async () => {
    await nodeStageVolume(env, request(), ctx());
    const before = ops.calls.length;
    ops.answering.clear(); // not even the engine is needed to confirm
    await nodeStageVolume(env, request(), ctx());
    expect(ops.calls.length).toBe(before);
  });

  it('answers from the machine after a plugin restart (a fresh service on the same state)', async () => {
    await nodeStageVolume(env, request(), ctx());
    const restarted = nodeEnv({
      nodeId: 'node-1',
      stateDir: env.stateDir,
      engineSocketDir: '/run/engines',
      ops,
    });
    await nodeStageVolume(restarted, request(), ctx());
    await expect(
      nodeStageVolume(
        restarted,
        request({ volume_capability: blockCapability('SINGLE_NODE_WRITER') }),
        ctx(),
      ),
    ).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
  });

  it('completes a stage whose mount is gone (a node reboot) without formatting again', async () => {
    await nodeStageVolume(env, request(), ctx());
    ops.mountTable = [];
    await nodeStageVolume(env, request(), ctx());
    expect(ops.calls.filter((c) => c.startsWith('mkfs'))).toHaveLength(1);
    expect(ops.mountTable.map((m) => m.mountPoint)).toEqual([staging]);
  });

  it.each([
    ['another fs type', request({ volume_capability: mountCapability('SINGLE_NODE_WRITER', 'xfs') })],
    ['block access', request({ volume_capability: blockCapability('SINGLE_NODE_WRITER') })],
    ['another staging path', request({ staging_target_path: '/elsewhere' })],
    ['reader-only access', request({ volume_capability: mountCapability('SINGLE_NODE_READER_ONLY') })],
  ])('refuses %s for a staged volume with ALREADY_EXISTS', async (_, other) => {
    await nodeStageVolume(env, request(), ctx());
    await expect(nodeStageVolume(env, other, ctx())).rejects.toMatchObject({
      code: status.ALREADY_EXISTS,
      message: expect.stringMatching(/volume pvc-1 is staged on this node with mount access \(ext4\)/),
    });
  });

  it('refuses with FAILED_PRECONDITION to format over another filesystem', async () => {
    ops.attached.set('pvc-1', '/dev/loop0');
    ops.filesystems.set('/dev/loop0', { fsType: 'xfs', size: 1 });
    await expect(nodeStageVolume(env, request(), ctx())).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: expect.stringMatching(/holds xfs, not ext4/),
    });
  });

  it('block access attaches only', async () => {
    await nodeStageVolume(env, request({ volume_capability: blockCapability('SINGLE_NODE_WRITER') }), ctx());
    expect(ops.calls).toEqual(['attach pvc-1']);
    expect((await readStageRecord(env.stateDir, 'pvc-1'))?.accessType).toBe('block');
  });

  it('grows an ext4 filesystem smaller than its device before mounting it, xfs after', async () => {
    ops.filesystems.set('/dev/loop0', { fsType: 'ext4', size: 32 });
    ops.attached.set('pvc-1', '/dev/loop0');
    ops.sizes.set('/dev/loop0', 64);
    await nodeStageVolume(env, request(), ctx());
    expect(ops.calls).toEqual(['attach pvc-1', 'grow /dev/loop0 offline', `mount /dev/loop0 ${staging}`]);
    expect(ops.filesystems.get('/dev/loop0')?.size).toBe(64);

    ops.answering.add('/run/engines/pvc-2.sock');
    ops.attached.set('pvc-2', '/dev/loop7');
    ops.sizes.set('/dev/loop7', 64);
    ops.filesystems.set('/dev/loop7', { fsType: 'xfs', size: 32 });
    const xfs = request({
      volume_id: 'pvc-2',
      staging_target_path: '/s2',
      volume_capability: mountCapability('SINGLE_NODE_WRITER', 'xfs'),
    });
    await nodeStageVolume(env, xfs, ctx());
    expect(ops.calls.slice(-2)).toEqual(['mount /dev/loop7 /s2', 'grow /dev/loop7 /s2']);
  });

  it('mounts reader-only stages read-only and does not grow them', async () => {
    ops.filesystems.set('/dev/loop0', { fsType: 'ext4', size: 32 });
    ops.attached.set('pvc-1', '/dev/loop0');
    ops.sizes.set('/dev/loop0', 64);
    await nodeStageVolume(
      env,
      request({ volume_capability: mountCapability('MULTI_NODE_READER_ONLY') }),
      ctx(),
    );
    expect(ops.calls).toEqual(['attach pvc-1', `mount /dev/loop0 ${staging} ro`]);
  });
});

describe('NodeUnstageVolume', () => {
  const unstage = { volume_id: 'pvc-1', staging_target_path: staging };

  it.each([
    ['no volume_id', { ...unstage, volume_id: '' }],
    ['no staging_target_path', { ...unstage, staging_target_path: '' }],
    ['a relative staging_target_path', { ...unstage, staging_target_path: 'x' }],
  ])('refuses %s with INVALID_ARGUMENT', async (_, req) => {
    await expect(nodeUnstageVolume(env, req, ctx())).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  it('unmounts, detaches, forgets the stage; again is fine; never staged is fine', async () => {
    await nodeUnstageVolume(env, unstage, ctx());
    await nodeUnstageVolume(env, { ...unstage, volume_id: '../weird' }, ctx());
    await nodeStageVolume(env, request(), ctx());
    await nodeUnstageVolume(env, unstage, ctx());
    expect(ops.mountTable).toEqual([]);
    expect(ops.attached.size).toBe(0);
    expect(await readStageRecord(env.stateDir, 'pvc-1')).toBeUndefined();
    await expect(readFile(join(env.stateDir, 'staged', 'pvc-1.json'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
    await nodeUnstageVolume(env, unstage, ctx());
  });

  it('detaches the loop device mounted at the staging path when the attachment records lost it (its FUSE mount died with a Pod)', async () => {
    await nodeStageVolume(env, request(), ctx());
    const device = ops.attached.get('pvc-1') as string;
    // What a killed share-manager Pod leaves: the filesystem still mounted from the loop device,
    // whose backing file the records can no longer name.
    ops.attached.delete('pvc-1');
    ops.loops.set(device, { backingFile: '/disk', readOnly: false });
    await nodeUnstageVolume(env, unstage, ctx());
    expect(ops.mountTable).toEqual([]);
    expect(ops.loops.has(device)).toBe(false);
    expect(ops.calls).toContain(`losetup -d ${device}`);
  });

  it('refuses with FAILED_PRECONDITION while the volume is still published', async () => {
    await nodeStageVolume(env, request(), ctx());
    await ops.bindMount(staging, '/pods/a/mount', false);
    await expect(nodeUnstageVolume(env, unstage, ctx())).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: expect.stringMatching(/still published at \/pods\/a\/mount/),
    });
    expect(ops.attached.has('pvc-1')).toBe(true);
  });

  it('sees a block publish (device file and read-only loop) as a use too, and drops unused read-only loops', async () => {
    await nodeStageVolume(env, request({ volume_capability: blockCapability('SINGLE_NODE_WRITER') }), ctx());
    const loop = await ops.createReadOnlyLoop('/dev/loop0');
    await ops.bindMount(loop, '/pods/b/dev', true);
    await expect(nodeUnstageVolume(env, unstage, ctx())).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
    await ops.unmount('/pods/b/dev');
    await nodeUnstageVolume(env, unstage, ctx());
    expect(ops.loops.size).toBe(0);
    expect(ops.attached.size).toBe(0);
  });
});
