/**
 * An in-memory machine for the CSI Node service's unit tests: attachments, filesystems, a mount
 * table shaped like mountinfo, loop devices. Behaves like the real layer (node-ops.ts) where the
 * handlers depend on it: bind mounts of a filesystem share its device number, a device file
 * bind-mounted onto a file shows as devtmpfs with the device's name as root.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CsiVolumeCapability } from '../../driver/controller/capabilities.js';
import { FilesystemMismatchError, type FsType } from '../../driver/node/filesystem.js';
import type { MountEntry } from '../../driver/node/mounts.js';
import type { DeviceNumber, FsStats, NodeOps, PathKind } from '../../driver/node/node-ops.js';
import { nodePublishVolume } from '../../driver/node/publish.js';
import type { NodeEnv } from '../../driver/node/requests.js';
import { nodeEnv } from '../../driver/node/service.js';
import { nodeStageVolume } from '../../driver/node/stage.js';
import { silentLogger } from '../../lib/log.js';

const MiB = 1024 * 1024;

export class FakeNodeOps implements NodeOps {
  /** Engine sockets that accept connections. */
  readonly answering = new Set<string>();
  /** volume id → device path */
  readonly attached = new Map<string, string>();
  readonly sizes = new Map<string, number>();
  readonly filesystems = new Map<string, { fsType: FsType; size: number }>();
  mountTable: MountEntry[] = [];
  readonly paths = new Map<string, PathKind>();
  readonly loops = new Map<string, { backingFile: string; readOnly: boolean }>();
  /** What was done, in order: `attach pvc-1`, `mount /dev/loop0 /staging`, ... */
  readonly calls: string[] = [];
  deviceBytes = 64 * MiB;
  /** volume id → the size its engine serves now (after an expansion); else the device's size. */
  readonly served = new Map<string, number>();
  /** Attachments that cannot grow while attached (kernel NBD, the older nbdfuse layout). */
  readonly fixedSize = new Set<string>();
  private nextLoop = 0;
  private nextId = 100;

  private newLoop(): string {
    const device = `/dev/loop${this.nextLoop++}`;
    this.sizes.set(device, this.deviceBytes);
    return device;
  }

  private number(device: string): DeviceNumber | undefined {
    const match = /^\/dev\/loop(\d+)$/.exec(device);
    if (!match?.[1]) return undefined;
    const known = [...this.attached.values()].includes(device) || this.loops.has(device);
    return known ? { major: 7, minor: Number(match[1]) } : undefined;
  }

  private top(path: string): MountEntry | undefined {
    return this.mountTable.filter((m) => m.mountPoint === path).at(-1);
  }

  /** The device a path stands for: a device path, or a device file bind-mounted there. */
  private deviceAt(path: string): string | undefined {
    const entry = this.top(path);
    if (entry?.fsType === 'devtmpfs') return `/dev${entry.root}`;
    return this.number(path) ? path : undefined;
  }

  private entry(fields: Partial<MountEntry> & Pick<MountEntry, 'mountPoint'>): MountEntry {
    return {
      id: this.nextId++,
      parentId: 1,
      major: 0,
      minor: 0,
      root: '/',
      options: ['rw'],
      fsType: 'ext4',
      source: '',
      superOptions: ['rw'],
      ...fields,
    };
  }

  async socketAnswers(path: string) {
    return this.answering.has(path);
  }

  async attach(volumeId: string, socket: string) {
    this.calls.push(`attach ${volumeId}`);
    if (!this.answering.has(socket)) throw new Error(`nothing answers on ${socket}`);
    const existing = this.attached.get(volumeId);
    if (existing) return existing;
    const device = this.newLoop();
    this.attached.set(volumeId, device);
    return device;
  }

  async attachedDevice(volumeId: string) {
    return this.attached.get(volumeId);
  }

  /** Volumes whose attachment a test declares dead (nbdfuse gone). */
  readonly deadAttachments = new Set<string>();

  async attachmentProblem(volumeId: string) {
    return this.deadAttachments.has(volumeId) ? `the nbdfuse connection of ${volumeId} is gone` : undefined;
  }

  async detach(volumeId: string) {
    this.calls.push(`detach ${volumeId}`);
    const device = this.attached.get(volumeId);
    if (device === undefined) return;
    const n = this.number(device);
    if (this.mountTable.some((m) => m.major === n?.major && m.minor === n.minor))
      throw new Error(`${device} is still mounted`);
    this.attached.delete(volumeId);
  }

  async growDevice(volumeId: string, device: string, socket: string) {
    if (!this.answering.has(socket)) throw new Error(`nothing answers on ${socket}`);
    const size = this.sizes.get(device);
    if (size === undefined) throw new Error(`no device ${device}`);
    if (this.fixedSize.has(volumeId)) return { sizeBytes: size, growable: false };
    const served = this.served.get(volumeId) ?? size;
    if (served > size) {
      this.calls.push(`grow-device ${device} ${served}`);
      this.sizes.set(device, served);
    }
    return { sizeBytes: Math.max(served, size), growable: true };
  }

  async ensureFilesystem(device: string, fsType: FsType) {
    const fs = this.filesystems.get(device);
    if (fs === undefined) {
      this.calls.push(`mkfs ${fsType} ${device}`);
      this.filesystems.set(device, { fsType, size: this.sizes.get(device) ?? 0 });
      return { formatted: true };
    }
    if (fs.fsType !== fsType) throw new FilesystemMismatchError(device, fs.fsType, fsType);
    return { formatted: false };
  }

  async mount(device: string, target: string, fsType: string, flags: readonly string[], readOnly: boolean) {
    this.calls.push(
      `mount ${device} ${target}${flags.length ? ` ${flags.join(',')}` : ''}${readOnly ? ' ro' : ''}`,
    );
    const n = this.number(device);
    if (!n) throw new Error(`no device ${device}`);
    if (this.filesystems.get(device)?.fsType !== fsType) throw new Error(`${device} holds no ${fsType}`);
    if (this.top(target)) return;
    const mode = readOnly ? 'ro' : 'rw';
    this.mountTable.push(
      this.entry({ mountPoint: target, ...n, fsType, source: device, options: [mode], superOptions: [mode] }),
    );
    this.paths.set(target, 'directory');
  }

  async bindMount(source: string, target: string, readOnly: boolean) {
    this.calls.push(`bind ${source} ${target}${readOnly ? ' ro' : ''}`);
    const mode = readOnly ? 'ro' : 'rw';
    const fs = this.top(source);
    if (fs !== undefined && fs.fsType !== 'devtmpfs') {
      this.mountTable.push({ ...fs, id: this.nextId++, mountPoint: target, options: [mode] });
      this.paths.set(target, 'directory');
      return;
    }
    if (!this.number(source)) throw new Error(`cannot bind ${source}`);
    this.mountTable.push(
      this.entry({
        mountPoint: target,
        major: 0,
        minor: 6,
        root: source.replace(/^\/dev/, ''),
        fsType: 'devtmpfs',
        source: 'devtmpfs',
        options: [mode],
      }),
    );
    this.paths.set(target, 'block-device');
  }

  /** What `mountNfs` answers when set: the mount fails with it (the server cannot be reached, options refused). */
  nfsFailure: Error | undefined;

  async mountNfs(server: string, target: string, options: string) {
    this.calls.push(`mount nfs4 ${server}:/ ${target} ${options}`);
    if (this.nfsFailure) throw this.nfsFailure;
    const existing = this.top(target);
    if (existing === undefined)
      this.mountTable.push(
        this.entry({
          mountPoint: target,
          major: 0,
          minor: 90,
          fsType: 'nfs4',
          source: `${server}:/`,
          options: ['rw', ...options.split(',')],
        }),
      );
    this.paths.set(target, 'directory');
    return { options, softerrReplaced: false };
  }

  async unmount(target: string) {
    if (!this.top(target)) return;
    this.calls.push(`umount ${target}`);
    this.mountTable = this.mountTable.filter((m) => m.mountPoint !== target);
    if (this.paths.get(target) === 'block-device') this.paths.set(target, 'file');
  }

  async mounts() {
    return [...this.mountTable];
  }

  async pathKind(path: string) {
    return this.paths.get(path);
  }

  async deviceNumber(path: string) {
    const device = this.deviceAt(path);
    return device === undefined ? undefined : this.number(device);
  }

  async deviceSize(path: string) {
    const device = this.deviceAt(path) ?? path;
    const loop = this.loops.get(device);
    const size = this.sizes.get(loop ? loop.backingFile : device);
    if (size === undefined) throw new Error(`no device ${path}`);
    return size;
  }

  async filesystemSize(device: string) {
    const fs = this.filesystems.get(device);
    if (!fs) throw new Error(`no filesystem on ${device}`);
    return fs.size;
  }

  async growFilesystem(device: string, mountPoint: string | undefined) {
    this.calls.push(`grow ${device} ${mountPoint ?? 'offline'}`);
    const fs = this.filesystems.get(device);
    if (fs) fs.size = this.sizes.get(device) ?? fs.size;
  }

  async statfs(): Promise<FsStats> {
    return {
      blockSize: 4096,
      blocks: 15000,
      blocksFree: 12000,
      blocksAvailable: 11000,
      files: 16384,
      filesFree: 16370,
    };
  }

  async createReadOnlyLoop(device: string) {
    const loop = this.newLoop();
    this.loops.set(loop, { backingFile: device, readOnly: true });
    this.calls.push(`losetup ro ${loop} ${device}`);
    return loop;
  }

  async loopsBackedBy(device: string) {
    return [...this.loops].filter(([, l]) => l.backingFile === device).map(([name]) => name);
  }

  async loopInfo(device: string) {
    return this.loops.get(device);
  }

  async detachLoop(device: string) {
    this.calls.push(`losetup -d ${device}`);
    this.loops.delete(device);
  }

  async removePath(path: string) {
    this.paths.delete(path);
  }
}

/**
 * A node service environment over FakeNodeOps for one test: node-1, engines under /run/engines
 * (pvc-1's answering), a temporary state directory that `cleanup()` removes.
 */
export async function fakeNodeEnv(
  prefix: string,
): Promise<{ dir: string; ops: FakeNodeOps; env: NodeEnv; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `tandem-${prefix}-`));
  const ops = new FakeNodeOps();
  ops.answering.add('/run/engines/pvc-1.sock');
  const env = nodeEnv({
    nodeId: 'node-1',
    stateDir: join(dir, 'state'),
    engineSocketDir: '/run/engines',
    engineWaitMs: 50,
    ops,
  });
  return { dir, ops, env, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Stages pvc-1 at /staging and publishes it at /target, as kubelet does before the calls under test. */
export async function stageAndPublish(
  env: NodeEnv,
  capability: CsiVolumeCapability,
  readonly = false,
): Promise<void> {
  const context = { logger: silentLogger(), signal: new AbortController().signal };
  await nodeStageVolume(
    env,
    { volume_id: 'pvc-1', staging_target_path: '/staging', volume_capability: capability },
    context,
  );
  await nodePublishVolume(
    env,
    {
      volume_id: 'pvc-1',
      staging_target_path: '/staging',
      target_path: '/target',
      volume_capability: capability,
      readonly,
    },
    context,
  );
}
