import { status } from '@grpc/grpc-js';
import { silentLogger } from '../../lib/log.js';
import { blockCapability, mountCapability } from '../../test/harness/csi-requests.js';
import { type FakeNodeOps, fakeNodeEnv, stageAndPublish } from '../../test/harness/fake-node-ops.js';
import type { MountEntry } from './mounts.js';
import type { NodeEnv } from './requests.js';
import { nodeGetVolumeStats } from './stats.js';

const _ctx = () => ({ logger: silentLogger(), signal: new AbortController().signal });
const _socket = '/run/engines/pvc-1.sock';

let ops: FakeNodeOps;
let env: NodeEnv;

let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ ops, env, cleanup } = await fakeNodeEnv('stats'));
});
afterEach(() => cleanup());

const publish = (capability = mountCapability('SINGLE_NODE_WRITER'), readonly = false) =>
  stageAndPublish(env, capability, readonly);

describe('NodeGetVolumeStats', () => {
  it('refuses a missing volume_id or volume_path with INVALID_ARGUMENT, a path that does not exist with NOT_FOUND', async () => {
    await expect(nodeGetVolumeStats(env, { volume_id: '', volume_path: '/target' })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    await expect(nodeGetVolumeStats(env, { volume_id: 'pvc-1', volume_path: '' })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    await expect(
      nodeGetVolumeStats(env, { volume_id: 'pvc-1', volume_path: 'some/path' }),
    ).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
  });

  it('reports bytes and inodes of a filesystem from statfs, condition normal', async () => {
    await publish();
    expect(await nodeGetVolumeStats(env, { volume_id: 'pvc-1', volume_path: '/target' })).toEqual({
      usage: [
        {
          unit: 'BYTES',
          total: String(15000 * 4096),
          available: String(11000 * 4096),
          used: String(3000 * 4096),
        },
        { unit: 'INODES', total: '16384', available: '16370', used: '14' },
      ],
      volume_condition: { abnormal: false, message: 'attached as /dev/loop0, engine answers' },
    });
  });

  it('reports a raw block device by its size, also through a read-only loop', async () => {
    await publish(blockCapability('SINGLE_NODE_WRITER'), true);
    const stats = await nodeGetVolumeStats(env, { volume_id: 'pvc-1', volume_path: '/target' });
    expect(stats.usage).toEqual([
      { unit: 'BYTES', total: String(64 * 1024 * 1024), available: '0', used: '0' },
    ]);
    expect(stats.volume_condition.abnormal).toBe(false);
  });

  it('is abnormal when the engine does not answer, saying so', async () => {
    await publish();
    ops.answering.clear();
    const { volume_condition } = await nodeGetVolumeStats(env, {
      volume_id: 'pvc-1',
      volume_path: '/target',
    });
    expect(volume_condition).toEqual({
      abnormal: true,
      message: expect.stringMatching(/no engine answers on \/run\/engines\/pvc-1.sock/),
    });
  });

  it('is abnormal when the attachment died with a restarted engine, even though the engine answers again', async () => {
    await publish();
    ops.deadAttachments.add('pvc-1');
    const { volume_condition } = await nodeGetVolumeStats(env, {
      volume_id: 'pvc-1',
      volume_path: '/target',
    });
    expect(volume_condition).toEqual({
      abnormal: true,
      message: expect.stringMatching(/nbdfuse connection of pvc-1 is gone/),
    });
  });

  it('is abnormal when the path holds another device than the attached one, or nothing', async () => {
    await publish();
    ops.mountTable.push({
      ...(ops.mountTable[0] as MountEntry),
      id: 7,
      major: 8,
      minor: 3,
      mountPoint: '/target',
      source: '/dev/sda3',
    });
    const other = await nodeGetVolumeStats(env, { volume_id: 'pvc-1', volume_path: '/target' });
    expect(other.volume_condition).toEqual({
      abnormal: true,
      message: expect.stringMatching(/\/dev\/sda3 \(8:3\) mounted, not \/dev\/loop0/),
    });
    ops.mountTable = ops.mountTable.filter((m) => m.mountPoint !== '/target');
    const none = await nodeGetVolumeStats(env, { volume_id: 'pvc-1', volume_path: '/target' });
    expect(none.volume_condition.message).toMatch(/nothing is mounted at \/target/);
    ops.attached.clear();
    const detached = await nodeGetVolumeStats(env, { volume_id: 'pvc-1', volume_path: '/target' });
    expect(detached.volume_condition.message).toMatch(/no block device attached/);
  });
});
