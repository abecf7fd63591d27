/**
 * A Tandem volume as a block device on this node (the first half of NodeStage): the kernel NBD
 * client where the kernel has one, nbdfuse + a loop device otherwise (docs/dataplane.md, DESIGN.md
 * "Frontend on a node"). Attach and detach are idempotent and work from what the node shows
 * (mountinfo, losetup, sysfs, files in the state directory), so a restarted plugin picks up where
 * its predecessor stopped. Calls for one volume are serialised within the process; the CSI layer
 * already answers ABORTED to concurrent calls on one volume.
 */
import { existsSync } from 'node:fs';
import { mkdir, realpath } from 'node:fs/promises';
import { run } from '../../lib/exec.js';
import { growableExportName } from '../nbd/growable.js';
import { probeExportSizes } from '../nbd/probe.js';
import { attachFuseLoop, detachFuseLoop, fuseLoopPaths } from './fuse-loop.js';
import {
  attachKernelNbd,
  connectedKernelDevice,
  detachKernelNbd,
  kernelNbdUsable,
  parseNbdUri,
} from './kernel-nbd.js';
import type { CommandRunner } from './mounts.js';

export type AttachTarget = { nbdUri: string } | { socketPath: string; exportName: string };

export type AttachOptions = AttachTarget & {
  /** Where attachments keep their mount points and files (e.g. /var/lib/tandem/node). */
  stateDir: string;
  volumeId: string;
  /** auto (default): the kernel NBD client when usable, else nbdfuse + loop. */
  frontend?: 'auto' | 'kernel-nbd' | 'nbdfuse';
  runner?: CommandRunner;
  /** Test hook: the sizes of exports on a unix socket (default: probeExportSizes). */
  probe?: ExportProbe;
};

/** The sizes a new connection is offered for each name; undefined for a name not served. */
export type ExportProbe = (socketPath: string, names: readonly string[]) => Promise<(number | undefined)[]>;

/**
 * What nbdfuse connects to for an engine's export, and the loop device's size limit: the growable
 * export bounded to the volume's current size when the engine offers it, else the export itself
 * with no limit (an engine from before the growable export: the device then keeps its size).
 */
export async function fuseLoopTarget(
  socketPath: string,
  exportName: string,
  probe: ExportProbe = probeExportSizes,
): Promise<{ uri: string; sizeLimit?: number }> {
  const growable = growableExportName(exportName);
  const [size, growableSize] = await probe(socketPath, [exportName, growable]);
  if (size === undefined) throw new Error(`the NBD server on ${socketPath} has no export ${exportName}`);
  if (growableSize === undefined || growableSize < size || size === 0)
    return { uri: unixSocketUri(socketPath, exportName) };
  return { uri: unixSocketUri(socketPath, growable), sizeLimit: size };
}

export interface DetachOptions {
  stateDir: string;
  volumeId: string;
  runner?: CommandRunner;
}

export interface Attachment {
  devicePath: string;
  detach(): Promise<void>;
}

/** Volume ids become path components: one component, no dot-dot, nothing the shell-free tools mind. */
const VOLUME_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function checkVolumeId(volumeId: string): void {
  if (!VOLUME_ID.test(volumeId))
    throw new Error(`volume id ${JSON.stringify(volumeId)} cannot name a directory`);
}

/**
 * The NBD URI for an engine's unix socket (RFC-style nbd+unix, as libnbd parses it): the export
 * name is the path, the socket a query parameter; both percent-encoded except for slashes.
 */
export function unixSocketUri(socketPath: string, exportName: string): string {
  const encode = (s: string) => encodeURIComponent(s).replace(/%2F/g, '/');
  return `nbd+unix:///${encode(exportName)}?socket=${encode(socketPath)}`;
}

export function targetUri(target: AttachTarget): string {
  return 'nbdUri' in target ? target.nbdUri : unixSocketUri(target.socketPath, target.exportName);
}

/** Canonical (symlink-free) state directory: losetup and mountinfo report resolved paths. */
async function canonicalStateDir(stateDir: string): Promise<string> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  return realpath(stateDir);
}

const locks = new Map<string, Promise<unknown>>();

async function serialised<T>(key: string, work: () => Promise<T>): Promise<T> {
  const previous = locks.get(key) ?? Promise.resolve();
  const current = previous.catch(() => undefined).then(work);
  locks.set(key, current);
  try {
    return await current;
  } finally {
    if (locks.get(key) === current) locks.delete(key);
  }
}

export async function attachBlockDevice(options: AttachOptions): Promise<Attachment> {
  checkVolumeId(options.volumeId);
  const runner = options.runner ?? run;
  const stateDir = await canonicalStateDir(options.stateDir);
  const uri = targetUri(options);
  const frontend = options.frontend ?? 'auto';
  const kernel = frontend === 'kernel-nbd' || (frontend === 'auto' && kernelNbdUsable());
  const devicePath = await serialised(`${stateDir}\0${options.volumeId}`, async () => {
    if (kernel) return attachKernelNbd(stateDir, options.volumeId, parseNbdUri(uri), runner);
    // Never two frontends for one volume: an attachment through the other one is reused as is.
    const other = await connectedKernelDevice(stateDir, options.volumeId);
    if (other !== undefined) return other;
    const target =
      'nbdUri' in options
        ? { uri }
        : await fuseLoopTarget(options.socketPath, options.exportName, options.probe);
    return attachFuseLoop(fuseLoopPaths(stateDir, options.volumeId), target.uri, runner, target.sizeLimit);
  });
  return {
    devicePath,
    detach: () => detachBlockDevice({ stateDir, volumeId: options.volumeId, runner }),
  };
}

/** Undoes attachBlockDevice, whichever frontend it used; a volume not attached is fine. */
export async function detachBlockDevice(options: DetachOptions): Promise<void> {
  checkVolumeId(options.volumeId);
  const runner = options.runner ?? run;
  if (!existsSync(options.stateDir)) return;
  const stateDir = await realpath(options.stateDir);
  await serialised(`${stateDir}\0${options.volumeId}`, async () => {
    await detachKernelNbd(stateDir, options.volumeId, runner);
    await detachFuseLoop(fuseLoopPaths(stateDir, options.volumeId), runner);
  });
}
