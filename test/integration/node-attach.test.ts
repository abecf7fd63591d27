import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachBlockDevice, detachBlockDevice } from '../../driver/node/block-device.js';
import { ensureFilesystem, FilesystemMismatchError } from '../../driver/node/filesystem.js';
import { fuseLoopPaths, loopDevicesOf } from '../../driver/node/fuse-loop.js';
import { isMountPoint, mount, readMountInfo, unmount } from '../../driver/node/mounts.js';
import { run } from '../../lib/exec.js';
import { type LoopbackDataPlane, startLoopbackDataPlane } from '../harness/dataplane.js';
import { sha256 } from '../harness/host-inspection.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

/**
 * The node side of attaching a volume, for real: engine on a unix socket (in this process), nbdfuse
 * + loop device (the kernel here has no NBD), mkfs, mount. File contents are written and checked by
 * child processes (dd, sha256sum): this process serves the NBD socket, and blocking its threads on
 * I/O to the mount it serves could stall both.
 */
describe('attaching a volume on a node (nbdfuse + loop)', () => {
  let dp: LoopbackDataPlane;
  let dir: string;
  let stateDir: string;
  const volumeId = 'pvc-node-attach';

  beforeEach(async () => {
    dp = await startLoopbackDataPlane({ replicas: 3, sizeBytes: SIZE });
    dir = await mkdtemp(join(tmpdir(), 'tandem-node-'));
    stateDir = join(dir, 'state');
  });

  afterEach(async () => {
    // Whatever a failed test left: mounts under the temp dir (deepest first), then the attachment.
    const ours = (await readMountInfo()).filter((m) => m.mountPoint.startsWith(`${dir}/`));
    for (const m of ours.reverse())
      if (!m.mountPoint.startsWith(join(dir, 'state'))) await unmount(m.mountPoint);
    await detachBlockDevice({ stateDir, volumeId }).catch(() => undefined);
    await dp.destroy();
    const left = (await readMountInfo()).filter((m) => m.mountPoint.startsWith(dir));
    const loops = await loopDevicesOf(fuseLoopPaths(stateDir, volumeId).file);
    await rm(dir, { recursive: true, force: true });
    expect(left.map((m) => m.mountPoint)).toEqual([]);
    expect(loops).toEqual([]);
  });

  const startEngine = (node: string) => dp.startEngine(node, { socketDir: dir });

  const attach = (socket: string) =>
    attachBlockDevice({ socketPath: socket, exportName: dp.volume, stateDir, volumeId, frontend: 'nbdfuse' });

  it('formats once, keeps the files across an engine takeover, mounts read-only', async () => {
    const first = await startEngine('node-1');
    const a = await attach(first.socket);
    expect(a.devicePath).toMatch(/^\/dev\/loop\d+$/);
    // Idempotent, from state alone (as after a plugin restart): the same device again.
    expect((await attach(first.socket)).devicePath).toBe(a.devicePath);
    const fuse = (await readMountInfo()).find(
      (m) => m.mountPoint === fuseLoopPaths(stateDir, volumeId).mountDir,
    );
    expect(fuse?.fsType).toBe('fuse.nbdfuse');
    // nbdfuse runs in a session of its own, so the plugin's process group ending does not end it.
    const pid = Number((await readFile(fuseLoopPaths(stateDir, volumeId).pidFile, 'utf8')).trim());
    const sid = Number((await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ')[3]);
    expect(sid).toBe(pid);

    expect(await ensureFilesystem(a.devicePath, 'ext4')).toEqual({ formatted: true });
    expect(await ensureFilesystem(a.devicePath, 'ext4')).toEqual({ formatted: false });
    await expect(ensureFilesystem(a.devicePath, 'xfs')).rejects.toBeInstanceOf(FilesystemMismatchError);

    const target = join(dir, 'mnt with space');
    await mount(a.devicePath, target, 'ext4', [], false);
    await mount(a.devicePath, target, 'ext4', [], false); // idempotent
    expect(await isMountPoint(target)).toBe(true);
    const sums = new Map<string, string>();
    for (const [name, mib] of [
      ['a.bin', 3],
      ['b.bin', 1],
    ] as const) {
      const file = join(target, name);
      await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', `count=${mib}`, 'status=none']);
      sums.set(name, await sha256(file));
    }
    await run('sync', ['-f', target]);
    await expect(a.detach()).rejects.toThrow(/still mounted/);
    await unmount(target);
    await unmount(target); // idempotent
    await a.detach();
    await a.detach(); // idempotent
    await first.host.stop();

    const second = await startEngine('node-2');
    const b = await attach(second.socket);
    expect(await ensureFilesystem(b.devicePath, 'ext4')).toEqual({ formatted: false });
    await mount(b.devicePath, target, 'ext4', [], true);
    expect((await readMountInfo()).find((m) => m.mountPoint === target)?.options).toContain('ro');
    for (const [name, sum] of sums) expect(await sha256(join(target, name))).toBe(sum);
    const write = await run('touch', [join(target, 'new')], { allowFailure: true });
    expect(write.code).not.toBe(0);
    await unmount(target);
    await b.detach();
    expect(await isMountPoint(fuseLoopPaths(stateDir, volumeId).mountDir)).toBe(false);
  }, 60_000);

  it('serves as a raw block device: O_DIRECT write at 4 MiB reads back the same', async () => {
    const { socket } = await startEngine('node-1');
    const { devicePath } = await attach(socket);
    // The loop device reads and writes the FUSE file with O_DIRECT (see LOSETUP_ARGS).
    expect((await readFile(`/sys/block/${devicePath.slice(5)}/loop/dio`, 'utf8')).trim()).toBe('1');
    const data = join(dir, 'random.bin');
    await run('dd', ['if=/dev/urandom', `of=${data}`, 'bs=1M', 'count=1', 'status=none']);
    await run('dd', [`if=${data}`, `of=${devicePath}`, 'bs=1M', 'seek=4', 'oflag=direct', 'status=none']);
    const back = join(dir, 'back.bin');
    await run('dd', [
      `if=${devicePath}`,
      `of=${back}`,
      'bs=1M',
      'skip=4',
      'count=1',
      'iflag=direct',
      'status=none',
    ]);
    expect(await sha256(back)).toBe(await sha256(data));
    // Around it, still zeros: the write landed where it was aimed.
    await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0 0 4M', '-c', 'read -P 0 5M 1M', devicePath]);
    // Detach as a restarted plugin would: no Attachment object, only the volume id.
    await detachBlockDevice({ stateDir, volumeId });
    expect(await isMountPoint(fuseLoopPaths(stateDir, volumeId).mountDir)).toBe(false);
  }, 60_000);
});
