/**
 * What the CSI Node service does to the machine, behind one interface: attach and detach a
 * volume's block device, filesystems, mounts, sizes. The handlers (stage.ts, publish.ts, stats.ts,
 * expand.ts) decide; this layer acts. Unit tests replace it with an in-memory fake; `systemOps`
 * is the real one, built from block-device.ts, filesystem.ts, mounts.ts and lib/exec.ts.
 *
 * Nothing here is kept in memory: every answer is read from the machine (mountinfo, losetup,
 * sysfs, the attachment state directory), so a restarted plugin sees what its predecessor left.
 */

import { existsSync } from 'node:fs';
import { readFile, realpath, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { connect } from 'node:net';
import { basename } from 'node:path';
import { CommandError, run } from '../../lib/exec.js';
import { failedPrecondition } from '../csi/errors.js';
import { probeExportSizes } from '../nbd/probe.js';
import { attachBlockDevice, detachBlockDevice } from './block-device.js';
import { type EnsureResult, ensureFilesystem, type FsType } from './filesystem.js';
import { fuseAlive, fuseLoopPaths, loopDevicesOf, parseLosetupList } from './fuse-loop.js';
import { connectedKernelDevice } from './kernel-nbd.js';
import { loopSizeLimit, raiseLoopSizeLimit } from './loop-ioctl.js';
import {
  bindMount,
  type CommandRunner,
  findMount,
  type MountEntry,
  mount,
  readMountInfo,
  splitDeviceNumber,
  unmount,
} from './mounts.js';
import { mountNfs, type NfsMountResult } from './nfs-mount.js';

export type Frontend = 'auto' | 'kernel-nbd' | 'nbdfuse';

export interface DeviceNumber {
  major: number;
  minor: number;
}

export interface FsStats {
  blockSize: number;
  blocks: number;
  blocksFree: number;
  blocksAvailable: number;
  files: number;
  filesFree: number;
}

export type PathKind = 'directory' | 'block-device' | 'file' | 'other';

export interface NodeOps {
  /** Whether something accepts connections on the unix socket. */
  socketAnswers(path: string): Promise<boolean>;
  /** Attaches (idempotently) the engine's export `volumeId` at `socket`; the device path. */
  attach(volumeId: string, socket: string): Promise<string>;
  /** The device a volume is attached as on this node, if any. */
  attachedDevice(volumeId: string): Promise<string | undefined>;
  /** Why the volume's attachment cannot carry I/O any more (its nbdfuse connection died), if so. */
  attachmentProblem(volumeId: string): Promise<string | undefined>;
  detach(volumeId: string): Promise<void>;
  /**
   * Brings the attached `device` of a volume to the size the engine on `socket` serves now (after
   * an online expansion): raises the loop device's size limit (nbdfuse + loop over the growable
   * export), and the capacity of read-only loops over it. `growable` false: this attachment keeps
   * the size it was attached with (kernel NBD, or nbdfuse + loop of the older layout).
   */
  growDevice(
    volumeId: string,
    device: string,
    socket: string,
  ): Promise<{ sizeBytes: number; growable: boolean }>;
  ensureFilesystem(device: string, fsType: FsType): Promise<EnsureResult>;
  mount(
    device: string,
    target: string,
    fsType: string,
    flags: readonly string[],
    readOnly: boolean,
  ): Promise<void>;
  bindMount(source: string, target: string, readOnly: boolean): Promise<void>;
  /** `<server>:/` over NFSv4 at `target` (nfs-mount.ts: softerr falls back to soft where refused). */
  mountNfs(server: string, target: string, options: string): Promise<NfsMountResult>;
  unmount(target: string): Promise<void>;
  mounts(): Promise<MountEntry[]>;
  /** What `path` is (following symlinks and mounts), undefined when it does not exist. */
  pathKind(path: string): Promise<PathKind | undefined>;
  /** st_rdev of a block device file (also one bind-mounted onto a file), else undefined. */
  deviceNumber(path: string): Promise<DeviceNumber | undefined>;
  deviceSize(device: string): Promise<number>;
  /** The size the filesystem on `device` spans; xfs needs it mounted (at `mountPoint`). */
  filesystemSize(device: string, mountPoint: string | undefined, fsType: FsType): Promise<number>;
  /**
   * Grows the filesystem to its device's size: online when `mountPoint` is given, else offline
   * (ext4 only: e2fsck, then resize2fs; xfs grows only mounted).
   */
  growFilesystem(device: string, mountPoint: string | undefined, fsType: FsType): Promise<void>;
  statfs(path: string): Promise<FsStats>;
  /** A new read-only loop device over `device` (a read-only raw block publish). */
  createReadOnlyLoop(device: string): Promise<string>;
  /** Loop devices whose backing file is `device`. */
  loopsBackedBy(device: string): Promise<string[]>;
  /** The backing file of a loop device and whether it is read-only; undefined if `device` is no loop. */
  loopInfo(device: string): Promise<{ backingFile: string; readOnly: boolean } | undefined>;
  detachLoop(device: string): Promise<void>;
  /** Removes a file or an empty directory; a missing path is fine. */
  removePath(path: string): Promise<void>;
}

export interface SystemOpsOptions {
  /** Where attachments keep their state (`<state-dir>/devices`). */
  devicesDir: string;
  frontend: Frontend;
  runner?: CommandRunner;
}

/** ext4: `dumpe2fs -h`; the block count times the block size. */
export function parseDumpe2fs(text: string): number {
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
    if (!match?.[1]) throw new Error(`dumpe2fs output has no "${name}"`);
    return Number(match[1]);
  };
  return field('Block count') * field('Block size');
}

/** xfs: `xfs_info`; the data section's blocks times bsize. */
export function parseXfsInfo(text: string): number {
  const match = /^data\s+=\s+bsize=(\d+)\s+blocks=(\d+)/m.exec(text);
  if (!match?.[1] || !match[2]) throw new Error('xfs_info output has no data section');
  return Number(match[1]) * Number(match[2]);
}

/** `/dev/loop3` → `loop3`, resolving symlinks such as /dev/disk/by-id/... */
async function sysName(device: string): Promise<string> {
  return basename(await realpath(device));
}

export function systemOps(options: SystemOpsOptions): NodeOps {
  const runner = options.runner ?? run;
  const { devicesDir, frontend } = options;
  const deviceSize = async (device: string) => {
    const result = await runner('blockdev', ['--getsize64', device], { timeoutMs: 30_000 });
    const size = Number(result.stdout.trim());
    if (!Number.isSafeInteger(size))
      throw new Error(`blockdev --getsize64 ${device} printed ${result.stdout}`);
    return size;
  };
  const loopsBackedBy = async (device: string) => {
    const result = await runner('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], {
      timeoutMs: 30_000,
    });
    return parseLosetupList(result.stdout)
      .filter((d) => d.backFile === device)
      .map((d) => d.name);
  };
  const loopInfo = async (device: string) => {
    let name: string;
    try {
      name = await sysName(device);
    } catch {
      return undefined;
    }
    try {
      const backingFile = (await readFile(`/sys/block/${name}/loop/backing_file`, 'utf8')).trim();
      const readOnly = (await readFile(`/sys/block/${name}/ro`, 'utf8')).trim() === '1';
      return { backingFile, readOnly };
    } catch {
      return undefined;
    }
  };
  return {
    socketAnswers: (path) =>
      new Promise((resolve) => {
        const socket = connect(path);
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      }),
    attach: async (volumeId, socket) =>
      (
        await attachBlockDevice({
          socketPath: socket,
          exportName: volumeId,
          stateDir: devicesDir,
          volumeId,
          frontend,
          runner,
        })
      ).devicePath,
    attachedDevice: async (volumeId) => {
      if (!existsSync(devicesDir)) return undefined;
      const dir = await realpath(devicesDir);
      const kernel = await connectedKernelDevice(dir, volumeId);
      if (kernel !== undefined) return kernel;
      return (await loopDevicesOf(fuseLoopPaths(dir, volumeId).file, runner))[0];
    },
    attachmentProblem: async (volumeId) => {
      if (!existsSync(devicesDir)) return undefined;
      const paths = fuseLoopPaths(await realpath(devicesDir), volumeId);
      const mounted = await findMount(paths.mountDir);
      if (mounted === undefined || (await fuseAlive(paths.file))) return undefined;
      return `the nbdfuse connection of ${volumeId} is gone (its engine restarted), so I/O through ${paths.file} fails; stage the volume again (restart its pods)`;
    },
    detach: (volumeId) => detachBlockDevice({ stateDir: devicesDir, volumeId, runner }),
    growDevice: async (volumeId, device, socket) => {
      // Only a loop device over this volume's nbdfuse file, attached with a size limit, can grow.
      const info = await loopInfo(device);
      const dir = existsSync(devicesDir) ? await realpath(devicesDir) : devicesDir;
      const limit = await loopSizeLimit(device);
      if (info?.backingFile !== fuseLoopPaths(dir, volumeId).file || !limit)
        return { sizeBytes: await deviceSize(device), growable: false };
      const [served] = await probeExportSizes(socket, [volumeId]);
      if (served === undefined) throw new Error(`the engine on ${socket} has no export ${volumeId}`);
      if (served > limit) await raiseLoopSizeLimit(device, served, runner);
      // A read-only raw block publish is a loop over this device: it re-reads the device's size.
      for (const loop of await loopsBackedBy(device))
        await runner('losetup', ['--set-capacity', loop], { timeoutMs: 30_000 });
      return { sizeBytes: await deviceSize(device), growable: true };
    },
    ensureFilesystem: (device, fsType) => ensureFilesystem(device, fsType, runner),
    mount: (device, target, fsType, flags, readOnly) =>
      mount(device, target, fsType, flags, readOnly, { runner }),
    bindMount: (source, target, readOnly) => bindMount(source, target, readOnly, { runner }),
    mountNfs: (server, target, options) => mountNfs(server, target, options, { runner }),
    unmount: (target) => unmount(target, { runner }),
    mounts: () => readMountInfo(),
    pathKind: async (path) => {
      try {
        const info = await stat(path);
        if (info.isDirectory()) return 'directory';
        if (info.isBlockDevice()) return 'block-device';
        return info.isFile() ? 'file' : 'other';
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    },
    deviceNumber: async (path) => {
      try {
        const info = await stat(path, { bigint: true });
        return info.isBlockDevice() ? splitDeviceNumber(info.rdev) : undefined;
      } catch {
        return undefined;
      }
    },
    deviceSize,
    filesystemSize: async (device, mountPoint, fsType) => {
      if (fsType === 'ext4')
        return parseDumpe2fs((await runner('dumpe2fs', ['-h', device], { timeoutMs: 60_000 })).stdout);
      if (mountPoint === undefined) throw new Error(`the size of xfs on ${device} is read from its mount`);
      return parseXfsInfo((await runner('xfs_info', [mountPoint], { timeoutMs: 60_000 })).stdout);
    },
    growFilesystem: async (device, mountPoint, fsType) => {
      if (fsType === 'xfs') {
        if (mountPoint === undefined) throw new Error(`xfs on ${device} grows only while mounted`);
        await runner('xfs_growfs', [mountPoint], { timeoutMs: 600_000 });
        return;
      }
      if (mountPoint === undefined) {
        // Offline resize2fs insists on a freshly checked filesystem. -p repairs only what is
        // safe without questions; exit codes 0-3 mean clean or fixed, 4 and up that it is not.
        const fsck = await runner('e2fsck', ['-f', '-p', device], { allowFailure: true, timeoutMs: 600_000 });
        if (fsck.code >= 4)
          throw new Error(
            `e2fsck -f -p ${device} exited with code ${fsck.code}: ${fsck.stdout}${fsck.stderr}`.trim(),
          );
      }
      // With the filesystem mounted, resize2fs grows it online (the kernel's resize ioctl).
      await runner('resize2fs', [device], { timeoutMs: 600_000 }).catch((err: unknown) => {
        // ext4's resize ioctl needs CAP_SYS_RESOURCE; a node whose root lacks it can grow xfs only.
        if (err instanceof CommandError && /Permission denied to resize/.test(err.stderr))
          throw failedPrecondition(
            `resize2fs ${device}: the kernel refused to grow ext4 online (the node plugin lacks CAP_SYS_RESOURCE, or the filesystem has recorded errors; see dmesg). The volume itself has grown; on such nodes use a class with fsType xfs, which grows online without it`,
          );
        throw err;
      });
    },
    statfs: async (path) => {
      const s = await statfs(path);
      return {
        blockSize: s.bsize,
        blocks: s.blocks,
        blocksFree: s.bfree,
        blocksAvailable: s.bavail,
        files: s.files,
        filesFree: s.ffree,
      };
    },
    createReadOnlyLoop: async (device) =>
      (
        await runner('losetup', ['--find', '--show', '--read-only', device], { timeoutMs: 30_000 })
      ).stdout.trim(),
    loopsBackedBy,
    loopInfo,
    detachLoop: async (device) => {
      await runner('losetup', ['-d', device], { timeoutMs: 30_000 });
    },
    removePath: async (path) => {
      try {
        const info = await stat(path);
        if (info.isDirectory()) await rmdir(path);
        else await rm(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    },
  };
}
