import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Client, status } from '@grpc/grpc-js';
import { engineSocketPath } from '../../driver/csi/node-topology.js';
import { probeExportSizes } from '../../driver/nbd/probe.js';
import { attachBlockDevice } from '../../driver/node/block-device.js';
import { readMountInfo } from '../../driver/node/mounts.js';
import { run } from '../../lib/exec.js';
import { blockCapability, mountCapability } from '../harness/csi-requests.js';
import type { LoopbackEngine } from '../harness/dataplane.js';
import { dd } from '../harness/dd.js';
import { call, codeOf } from '../harness/grpc-unary.js';
import { blockDeviceBytes, sha256 } from '../harness/host-inspection.js';
import { NodePluginFixture } from '../harness/node-plugin-fixture.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

/**
 * The CSI Node service for real: engine on a unix socket at engineSocketPath (in this process),
 * the node service behind a real gRPC server and client, nbdfuse + loop devices, mkfs, mounts
 * (NodePluginFixture). File contents are written and checked by child processes (dd, sha256sum,
 * qemu-io): this process serves the NBD socket, and blocking its threads on I/O to the mount it
 * serves could stall both.
 */
describe('CSI Node service (nbdfuse + loop)', () => {
  let fx: NodePluginFixture;
  let dir: string;
  let engineDir: string;

  beforeEach(async () => {
    fx = await NodePluginFixture.create();
    ({ dir, engineDir } = fx);
  });

  afterEach(async () => {
    // Whatever a failed test left is removed; nothing may have been left that could not be.
    const left = await fx.destroy();
    expect(left.mounts).toEqual([]);
    expect(left.loops).toEqual([]);
  });

  it('stages (formats ext4), publishes, keeps files across nodes, refuses writes read-only', async () => {
    const volume = 'pvc-csi-fs';
    const node = await fx.startNode('node-a');
    // Before the engine runs, staging says what is missing.
    const staging = join(dir, 'staging');
    const stage = {
      volume_id: volume,
      staging_target_path: staging,
      volume_capability: mountCapability('SINGLE_NODE_WRITER'),
      volume_context: {},
    };
    const early = call(node, 'NodeStageVolume', stage);
    await expect(early).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      details: expect.stringMatching(
        /no engine serves volume pvc-csi-fs on this node.*ControllerPublishVolume/,
      ),
    });
    await fx.startVolume(volume, SIZE);

    await call(node, 'NodeStageVolume', stage);
    await call(node, 'NodeStageVolume', stage); // idempotent
    const staged = (await readMountInfo()).find((m) => m.mountPoint === staging);
    expect(staged?.fsType).toBe('ext4');
    expect(
      await codeOf(
        call(node, 'NodeStageVolume', {
          ...stage,
          volume_capability: mountCapability('SINGLE_NODE_WRITER', 'xfs'),
        }),
      ),
    ).toBe(status.ALREADY_EXISTS);

    const target = join(dir, 'pods', 'a', 'mount');
    const publish = {
      volume_id: volume,
      staging_target_path: staging,
      target_path: target,
      volume_capability: mountCapability('SINGLE_NODE_WRITER'),
      readonly: false,
    };
    await call(node, 'NodePublishVolume', publish);
    await call(node, 'NodePublishVolume', publish); // idempotent
    expect(await codeOf(call(node, 'NodePublishVolume', { ...publish, readonly: true }))).toBe(
      status.ALREADY_EXISTS,
    );
    const sums = new Map<string, string>();
    for (const [name, mib] of [
      ['a.bin', 5],
      ['b.bin', 1],
    ] as const) {
      const file = join(target, name);
      await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', `count=${mib}`, 'status=none']);
      sums.set(name, await sha256(file));
    }
    await run('sync', ['-f', target]);

    const stats = await call<{
      usage: { unit: string; total: string; used: string; available: string }[];
      volume_condition: { abnormal: boolean; message: string };
    }>(node, 'NodeGetVolumeStats', { volume_id: volume, volume_path: target });
    const bytes = stats.usage.find((u) => u.unit === 'BYTES');
    const inodes = stats.usage.find((u) => u.unit === 'INODES');
    expect(Number(bytes?.total)).toBeGreaterThan(40 * MiB);
    expect(Number(bytes?.total)).toBeLessThanOrEqual(SIZE);
    expect(Number(bytes?.used)).toBeGreaterThanOrEqual(6 * MiB);
    expect(Number(bytes?.available)).toBeLessThan(Number(bytes?.total) - 6 * MiB);
    expect(Number(inodes?.total)).toBeGreaterThan(1000);
    expect(Number(inodes?.used)).toBeGreaterThanOrEqual(13); // root, lost+found, reserved ones, two files
    expect(stats.volume_condition.abnormal).toBe(false);
    expect(
      await codeOf(call(node, 'NodeGetVolumeStats', { volume_id: volume, volume_path: join(dir, 'nope') })),
    ).toBe(status.NOT_FOUND);

    // Expansion: asking for more than the engine serves waits for it, then says it has not come.
    const expanded = await call(node, 'NodeExpandVolume', {
      volume_id: volume,
      volume_path: target,
      capacity_range: { required_bytes: String(SIZE) },
    });
    expect(Number(expanded.capacity_bytes)).toBe(SIZE);
    await expect(
      call(node, 'NodeExpandVolume', {
        volume_id: volume,
        volume_path: target,
        capacity_range: { required_bytes: String(2 * SIZE) },
      }),
    ).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      details: expect.stringMatching(/serves 67108864 bytes.*every replica has grown/),
    });

    // A read-only publish of the same staged volume refuses writes.
    const roTarget = join(dir, 'pods', 'b', 'mount');
    await call(node, 'NodePublishVolume', { ...publish, target_path: roTarget, readonly: true });
    expect(await sha256(join(roTarget, 'a.bin'))).toBe(sums.get('a.bin'));
    expect((await run('touch', [join(roTarget, 'new')], { allowFailure: true })).code).not.toBe(0);

    // Unstage while published is refused; unpublish removes the target directory.
    expect(
      await codeOf(call(node, 'NodeUnstageVolume', { volume_id: volume, staging_target_path: staging })),
    ).toBe(status.FAILED_PRECONDITION);
    for (const t of [target, roTarget]) {
      await call(node, 'NodeUnpublishVolume', { volume_id: volume, target_path: t });
      await call(node, 'NodeUnpublishVolume', { volume_id: volume, target_path: t }); // idempotent
      await expect(stat(t)).rejects.toMatchObject({ code: 'ENOENT' });
    }
    await call(node, 'NodeUnstageVolume', { volume_id: volume, staging_target_path: staging });
    await call(node, 'NodeUnstageVolume', { volume_id: volume, staging_target_path: staging }); // idempotent
    expect((await readMountInfo()).filter((m) => m.mountPoint.startsWith(join(dir, 'state-node-a')))).toEqual(
      [],
    );
    expect(await codeOf(call(node, 'NodePublishVolume', publish))).toBe(status.FAILED_PRECONDITION);

    // Another node, same engine socket: the files are there, intact; no second format.
    const other = await fx.startNode('node-b');
    const staging2 = join(dir, 'staging-b');
    await call(other, 'NodeStageVolume', { ...stage, staging_target_path: staging2 });
    const target2 = join(dir, 'pods', 'c', 'mount');
    await call(other, 'NodePublishVolume', {
      ...publish,
      staging_target_path: staging2,
      target_path: target2,
    });
    for (const [name, sum] of sums) expect(await sha256(join(target2, name))).toBe(sum);
    await call(other, 'NodeUnpublishVolume', { volume_id: volume, target_path: target2 });
    await call(other, 'NodeUnstageVolume', { volume_id: volume, staging_target_path: staging2 });
  }, 60_000);

  it('hands a raw block device to dd and qemu-io, read-only refuses writes, grows a small filesystem at stage', async () => {
    const volume = 'pvc-csi-block';
    const node = await fx.startNode('node-a');
    await fx.startVolume(volume, SIZE);
    const staging = join(dir, 'staging');
    const stage = {
      volume_id: volume,
      staging_target_path: staging,
      volume_capability: blockCapability('SINGLE_NODE_WRITER'),
    };
    await call(node, 'NodeStageVolume', stage);
    await call(node, 'NodeStageVolume', stage);
    const target = join(dir, 'pods', 'a', 'dev');
    const publish = { ...stage, target_path: target, readonly: false };
    await call(node, 'NodePublishVolume', publish);
    await call(node, 'NodePublishVolume', publish);
    expect((await stat(target)).isBlockDevice()).toBe(true);

    const data = join(dir, 'random.bin');
    await run('dd', ['if=/dev/urandom', `of=${data}`, 'bs=1M', 'count=1', 'status=none']);
    await run('dd', [`if=${data}`, `of=${target}`, 'bs=1M', 'seek=4', 'oflag=direct', 'status=none']);
    const back = join(dir, 'back.bin');
    await dd({ from: target, to: back, bs: '1M', skip: 4, count: 1, iflag: 'direct' });
    expect(await sha256(back)).toBe(await sha256(data));
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 8M 1M', '-c', 'read -P 0xab 8M 1M', target]);
    await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0 0 4M', target]);

    const stats = await call<{
      usage: { unit: string; total: string }[];
      volume_condition: { abnormal: boolean };
    }>(node, 'NodeGetVolumeStats', { volume_id: volume, volume_path: target });
    expect(stats.usage).toEqual([expect.objectContaining({ unit: 'BYTES', total: String(SIZE) })]);
    expect(stats.volume_condition.abnormal).toBe(false);

    // Read-only: a loop device of its own, which refuses writes at the device.
    const roTarget = join(dir, 'pods', 'b', 'dev');
    await call(node, 'NodePublishVolume', { ...publish, target_path: roTarget, readonly: true });
    await call(node, 'NodePublishVolume', { ...publish, target_path: roTarget, readonly: true });
    expect(await codeOf(call(node, 'NodePublishVolume', { ...publish, target_path: roTarget }))).toBe(
      status.ALREADY_EXISTS,
    );
    await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0xab 8M 1M', roTarget]);
    const write = await run('dd', [`if=${data}`, `of=${roTarget}`, 'bs=1M', 'count=1', 'status=none'], {
      allowFailure: true,
    });
    expect(write.code).not.toBe(0);
    const roStats = await call<{ volume_condition: { abnormal: boolean; message: string } }>(
      node,
      'NodeGetVolumeStats',
      { volume_id: volume, volume_path: roTarget },
    );
    expect(roStats.volume_condition).toMatchObject({ abnormal: false });

    // A filesystem smaller than the device (as after an expansion): made here, grown by the next stage.
    await run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-E', 'nodiscard', target, String((32 * MiB) / 4096)]);
    for (const t of [target, roTarget]) {
      await call(node, 'NodeUnpublishVolume', { volume_id: volume, target_path: t });
      await expect(stat(t)).rejects.toMatchObject({ code: 'ENOENT' });
    }
    await call(node, 'NodeUnstageVolume', stage);
    const fsStage = { ...stage, volume_capability: mountCapability('SINGLE_NODE_WRITER', 'ext4') };
    await call(node, 'NodeStageVolume', fsStage);
    const fsStats = await call<{ usage: { unit: string; total: string }[] }>(node, 'NodeGetVolumeStats', {
      volume_id: volume,
      volume_path: staging,
    });
    expect(Number(fsStats.usage.find((u) => u.unit === 'BYTES')?.total)).toBeGreaterThan(48 * MiB);
    const size = (
      await run('dumpe2fs', [
        '-h',
        (await readMountInfo()).find((m) => m.mountPoint === staging)?.source ?? '',
      ])
    ).stdout;
    expect(Number(/^Block count:\s+(\d+)/m.exec(size)?.[1]) * 4096).toBe(SIZE);
    await call(node, 'NodeUnstageVolume', fsStage);
    expect(await readFile(join(dir, 'state-node-a', 'staged', `${volume}.json`)).catch(() => 'gone')).toBe(
      'gone',
    );
  }, 60_000);

  /** ControllerExpandVolume's effect on the data plane: every replica grows, then the engine. */
  async function expandVolume(engine: LoopbackEngine, sizeBytes: number): Promise<void> {
    expect(await fx.growVolume(engine, sizeBytes)).toEqual({ sizeBytes, wanted: sizeBytes });
  }

  it('grows a published raw block device online: NodeExpandVolume raises the loop limit', async () => {
    const volume = 'pvc-csi-grow';
    const node = await fx.startNode('node-a');
    const engine = await fx.startVolume(volume, SIZE);
    const staging = join(dir, 'staging');
    const stage = {
      volume_id: volume,
      staging_target_path: staging,
      volume_capability: blockCapability('SINGLE_NODE_WRITER'),
    };
    await call(node, 'NodeStageVolume', stage);
    const target = join(dir, 'pods', 'a', 'dev');
    const publish = { ...stage, target_path: target, readonly: false };
    await call(node, 'NodePublishVolume', publish);
    const roTarget = join(dir, 'pods', 'b', 'dev');
    await call(node, 'NodePublishVolume', { ...publish, target_path: roTarget, readonly: true });
    expect(await blockDeviceBytes(target)).toBe(SIZE);
    const marker = join(dir, 'marker.bin');
    await run('dd', ['if=/dev/urandom', `of=${marker}`, 'bs=4096', 'count=1', 'status=none']);
    const last = (size: number) => String(size / 4096 - 1);
    await dd({ from: marker, to: target, bs: '4096', seek: last(SIZE), oflag: 'direct' });

    const BIG = 2 * SIZE;
    await expandVolume(engine, BIG);
    const expand = {
      volume_id: volume,
      volume_path: target,
      capacity_range: { required_bytes: String(BIG) },
    };
    expect(await call(node, 'NodeExpandVolume', expand)).toEqual({ capacity_bytes: String(BIG) });
    expect(await call(node, 'NodeExpandVolume', expand)).toEqual({ capacity_bytes: String(BIG) });
    expect(await blockDeviceBytes(target)).toBe(BIG);
    expect(await blockDeviceBytes(roTarget)).toBe(BIG); // the read-only loop over it follows
    const lastBlock = join(dir, 'last.bin');
    const readLast = async (device: string, size: number) => {
      await dd({ from: device, to: lastBlock, bs: '4096', skip: last(size), count: 1, iflag: 'direct' });
      return sha256(lastBlock);
    };
    expect(await readLast(target, SIZE)).toBe(await sha256(marker));
    await run('dd', ['if=/dev/urandom', `of=${marker}`, 'bs=4096', 'count=1', 'status=none']);
    await dd({ from: marker, to: target, bs: '4096', seek: last(BIG), oflag: 'direct' });
    expect(await readLast(target, BIG)).toBe(await sha256(marker));
    expect(await readLast(roTarget, BIG)).toBe(await sha256(marker));
    // Nothing past the device's end, and the engine's own export still has the volume's exact size.
    const past = await dd({ from: marker, to: target, bs: '4096', seek: BIG / 4096, oflag: 'direct' }, true);
    expect(past.code).not.toBe(0);
    const info = await run('nbdinfo', [
      '--size',
      `nbd+unix:///${volume}?socket=${engineSocketPath(engineDir, volume)}`,
    ]);
    expect(Number(info.stdout.trim())).toBe(BIG);

    // More than the engine serves: UNAVAILABLE after the wait (kubelet retries).
    const tooBig = { ...expand, capacity_range: { required_bytes: String(4 * SIZE) } };
    expect(await codeOf(call(node, 'NodeExpandVolume', tooBig))).toBe(status.UNAVAILABLE);

    for (const t of [target, roTarget])
      await call(node, 'NodeUnpublishVolume', { volume_id: volume, target_path: t });
    await call(node, 'NodeUnstageVolume', stage);

    // An attachment of the older layout (nbdfuse on the volume's own export, a loop device without
    // a size limit), as an earlier plugin left it: staged again as is, and it cannot grow in place.
    await attachBlockDevice({
      socketPath: engineSocketPath(engineDir, volume),
      exportName: volume,
      stateDir: join(dir, 'state-node-a', 'devices'),
      volumeId: volume,
      frontend: 'nbdfuse',
      probe: async (socket, names) => [(await probeExportSizes(socket, names.slice(0, 1)))[0], undefined],
    });
    await call(node, 'NodeStageVolume', stage);
    await call(node, 'NodePublishVolume', publish);
    expect(await blockDeviceBytes(target)).toBe(BIG);
    await expandVolume(engine, 3 * SIZE);
    expect(
      await codeOf(
        call(node, 'NodeExpandVolume', { ...expand, capacity_range: { required_bytes: String(3 * SIZE) } }),
      ),
    ).toBe(status.FAILED_PRECONDITION);
    await call(node, 'NodeUnpublishVolume', { volume_id: volume, target_path: target });
    await call(node, 'NodeUnstageVolume', stage);
    // Staged afresh, it gets the new layout and the new size.
    await call(node, 'NodeStageVolume', stage);
    await call(node, 'NodePublishVolume', publish);
    expect(await blockDeviceBytes(target)).toBe(3 * SIZE);
    await call(node, 'NodeUnpublishVolume', { volume_id: volume, target_path: target });
    await call(node, 'NodeUnstageVolume', stage);
  }, 60_000);

  it('grows a mounted xfs online, also after the node plugin restarted', async () => {
    const volume = 'pvc-csi-xfs';
    const XFS = 320 * MiB;
    const node = await fx.startNode('node-a');
    const engine = await fx.startVolume(volume, XFS);
    const staging = join(dir, 'staging');
    const capability = mountCapability('SINGLE_NODE_WRITER', 'xfs');
    const stage = { volume_id: volume, staging_target_path: staging, volume_capability: capability };
    await call(node, 'NodeStageVolume', stage);
    const target = join(dir, 'pods', 'a', 'mnt');
    const publish = { ...stage, target_path: target, readonly: false };
    await call(node, 'NodePublishVolume', publish);
    const file = join(target, 'data.bin');
    await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=8', 'conv=fsync', 'status=none']);
    const sum = await sha256(file);
    const dfBytes = async () =>
      Number((await run('df', ['-B1', '--output=size', target])).stdout.trim().split('\n').at(-1));
    const before = await dfBytes();
    expect(before).toBeLessThan(XFS);

    const grow = async (client: Client, sizeBytes: number) => {
      await expandVolume(engine, sizeBytes);
      const response = await call(client, 'NodeExpandVolume', {
        volume_id: volume,
        volume_path: target,
        capacity_range: { required_bytes: String(sizeBytes) },
        volume_capability: capability,
      });
      expect(response).toEqual({ capacity_bytes: String(sizeBytes) });
    };
    await grow(node, 2 * XFS);
    const grown = await dfBytes();
    expect(grown).toBeGreaterThan(before + XFS - 32 * MiB);
    expect(await sha256(file)).toBe(sum);
    await dd({ from: '/dev/urandom', to: join(target, 'more.bin'), bs: '1M', count: 400, conv: 'fsync' });

    // A new plugin process finds the attachment (and its size limit) from the machine alone.
    await fx.stopNodes();
    const restarted = await fx.startNode('node-a');
    await call(restarted, 'NodeStageVolume', stage);
    await call(restarted, 'NodePublishVolume', publish);
    await grow(restarted, 3 * XFS);
    expect(await dfBytes()).toBeGreaterThan(grown + XFS - 32 * MiB);
    expect(await sha256(file)).toBe(sum);

    await call(restarted, 'NodeUnpublishVolume', { volume_id: volume, target_path: target });
    await call(restarted, 'NodeUnstageVolume', stage);
  }, 120_000);
});
