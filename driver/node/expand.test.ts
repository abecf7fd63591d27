import { status } from '@grpc/grpc-js';
import { silentLogger } from '../../lib/log.js';
import { blockCapability, mountCapability } from '../../test/harness/csi-requests.js';
import { type FakeNodeOps, fakeNodeEnv, stageAndPublish } from '../../test/harness/fake-node-ops.js';
import { nodeExpandVolume } from './expand.js';
import { parseDumpe2fs, parseXfsInfo } from './node-ops.js';
import type { NodeEnv } from './requests.js';

const ctx = () => ({ logger: silentLogger(), signal: new AbortController().signal });
const MiB = 1024 * 1024;

let ops: FakeNodeOps;
let env: NodeEnv;

let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ ops, env, cleanup } = await fakeNodeEnv('expand'));
});
afterEach(() => cleanup());

const publish = (capability = mountCapability('SINGLE_NODE_WRITER')) => stageAndPublish(env, capability);

const expand = (required: number, path = '/target', volumeId = 'pvc-1') =>
  nodeExpandVolume(
    env,
    { volume_id: volumeId, volume_path: path, capacity_range: { required_bytes: String(required) } },
    ctx(),
  );

describe('NodeExpandVolume', () => {
  it('checks volume_id, volume_path (INVALID_ARGUMENT when empty, NOT_FOUND when missing) and whether the volume is here', async () => {
    await expect(expand(0, '/target', '')).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    await expect(expand(0, '')).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    await expect(expand(0, 'some/path')).rejects.toMatchObject({ code: status.NOT_FOUND });
    await publish();
    await expect(expand(0, '/target', 'pvc-other')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('grows the filesystem online when the device is larger and returns the device size', async () => {
    await publish();
    ops.sizes.set('/dev/loop0', 128 * MiB);
    expect(await expand(128 * MiB)).toEqual({ capacity_bytes: String(128 * MiB) });
    expect(ops.calls.at(-1)).toBe('grow /dev/loop0 /target');
    expect(ops.filesystems.get('/dev/loop0')?.size).toBe(128 * MiB);
    const calls = ops.calls.length;
    expect(await expand(128 * MiB)).toEqual({ capacity_bytes: String(128 * MiB) }); // already grown: nothing to do
    expect(ops.calls.length).toBe(calls);
  });

  it('grows the device to the size the engine serves, then the filesystem, while mounted', async () => {
    await publish();
    ops.served.set('pvc-1', 128 * MiB);
    expect(await expand(128 * MiB)).toEqual({ capacity_bytes: String(128 * MiB) });
    expect(ops.calls.slice(-2)).toEqual([`grow-device /dev/loop0 ${128 * MiB}`, 'grow /dev/loop0 /target']);
    expect(ops.filesystems.get('/dev/loop0')?.size).toBe(128 * MiB);
    // Without a capacity_range: whatever the engine serves now.
    ops.served.set('pvc-1', 192 * MiB);
    const response = await nodeExpandVolume(env, { volume_id: 'pvc-1', volume_path: '/target' }, ctx());
    expect(response).toEqual({ capacity_bytes: String(192 * MiB) });
  });

  it('waits for the engine to serve the size asked for, then answers UNAVAILABLE (kubelet retries)', async () => {
    await publish();
    ops.served.set('pvc-1', 96 * MiB);
    setTimeout(() => ops.served.set('pvc-1', 128 * MiB), 20);
    expect(await expand(128 * MiB)).toEqual({ capacity_bytes: String(128 * MiB) });
    ops.served.set('pvc-1', 160 * MiB);
    await expect(expand(256 * MiB)).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      message: expect.stringMatching(/engine on this node serves 167772160 bytes, fewer than the 268435456/),
    });
    expect(ops.sizes.get('/dev/loop0')).toBe(160 * MiB); // what it could reach, it did
    ops.answering.clear();
    await expect(expand(512 * MiB)).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      message: expect.stringMatching(/no engine answers/),
    });
  });

  it('answers FAILED_PRECONDITION, saying a new stage brings the size, for an attachment that cannot grow', async () => {
    await publish();
    ops.fixedSize.add('pvc-1');
    ops.served.set('pvc-1', 128 * MiB);
    await expect(expand(128 * MiB)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: expect.stringMatching(/still has 67108864 bytes.*staged again \(restart the pod\)/),
    });
  });

  it('grows a raw block device without touching a filesystem', async () => {
    await publish(blockCapability('SINGLE_NODE_WRITER'));
    ops.served.set('pvc-1', 128 * MiB);
    expect(await expand(128 * MiB)).toEqual({ capacity_bytes: String(128 * MiB) });
    expect(ops.calls.at(-1)).toBe(`grow-device /dev/loop0 ${128 * MiB}`);
    expect(ops.calls.some((c) => c.startsWith('grow /'))).toBe(false);
  });

  it('has nothing to grow for block access', async () => {
    await publish(blockCapability('SINGLE_NODE_WRITER'));
    expect(await expand(64 * MiB)).toEqual({ capacity_bytes: String(64 * MiB) });
    expect(ops.calls.some((c) => c.startsWith('grow'))).toBe(false);
  });
});

describe('filesystem sizes', () => {
  it('reads ext4 from dumpe2fs -h and xfs from xfs_info', () => {
    expect(parseDumpe2fs('Block count:              16384\nBlock size:               4096\n')).toBe(64 * MiB);
    const xfs = [
      'meta-data=/dev/loop0             isize=512    agcount=4, agsize=4096 blks',
      'data     =                       bsize=4096   blocks=16384, imaxpct=25',
      'naming   =version 2              bsize=4096   ascii-ci=0, ftype=1',
    ].join('\n');
    expect(parseXfsInfo(xfs)).toBe(64 * MiB);
    expect(() => parseDumpe2fs('nothing')).toThrow(/Block count/);
  });
});
