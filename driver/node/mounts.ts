/**
 * Mounts on a node, read from /proc/self/mountinfo (never from memory, so a restarted node plugin
 * sees exactly what its predecessor left) and changed with util-linux `mount`/`umount`.
 */
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { run } from '../../lib/exec.js';

/** How the node code runs commands: `run` from lib/exec.ts, replaced by a fake in unit tests. */
export type CommandRunner = typeof run;

export interface MountEntry {
  id: number;
  parentId: number;
  /** Device number of the mounted filesystem (for a block device, its st_rdev). */
  major: number;
  minor: number;
  /** Path inside the source filesystem that is mounted (not `/` for bind mounts of a subtree). */
  root: string;
  mountPoint: string;
  options: string[];
  fsType: string;
  source: string;
  superOptions: string[];
}

/** Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash). */
export function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * Parses mountinfo (proc(5)): ten or more space-separated fields where the optional fields before
 * the `-` separator vary in number, so the separator is located instead of counting columns.
 */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0 || fields.length < dash + 3) throw new Error(`malformed mountinfo line: ${line}`);
    const [major, minor] = (fields[2] ?? '').split(':').map((n) => Number.parseInt(n, 10));
    if (major === undefined || minor === undefined || Number.isNaN(major) || Number.isNaN(minor))
      throw new Error(`malformed device number in mountinfo line: ${line}`);
    entries.push({
      id: Number.parseInt(fields[0] ?? '', 10),
      parentId: Number.parseInt(fields[1] ?? '', 10),
      major,
      minor,
      root: unescapeMountField(fields[3] ?? ''),
      mountPoint: unescapeMountField(fields[4] ?? ''),
      options: (fields[5] ?? '').split(','),
      fsType: unescapeMountField(fields[dash + 1] ?? ''),
      source: unescapeMountField(fields[dash + 2] ?? ''),
      superOptions: (fields[dash + 3] ?? '').split(','),
    });
  }
  return entries;
}

export async function readMountInfo(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/**
 * The topmost mount at `target` (mounts can be stacked; the last one listed is the visible one).
 * The path is only normalised, not resolved through symlinks: a dead FUSE mount cannot be stat'ed,
 * and callers pass the canonical paths they created.
 */
export async function findMount(target: string, entries?: MountEntry[]): Promise<MountEntry | undefined> {
  const path = resolve(target);
  const all = entries ?? (await readMountInfo());
  return all.filter((e) => e.mountPoint === path).at(-1);
}

export async function isMountPoint(target: string): Promise<boolean> {
  return (await findMount(target)) !== undefined;
}

/** Where a block device is mounted (any filesystem whose device number is its st_rdev). */
export async function mountsOfDevice(device: string): Promise<MountEntry[]> {
  const { major, minor } = splitDeviceNumber((await stat(device, { bigint: true })).rdev);
  return (await readMountInfo()).filter((e) => e.major === major && e.minor === minor);
}

/** glibc's major()/minor() for a 64-bit dev_t. */
export function splitDeviceNumber(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

export interface MountDeps {
  runner?: CommandRunner;
}

/**
 * Mounts a filesystem on `device` at `target` (created if missing). Idempotent: a target that
 * already has this device mounted is left alone; one with something else mounted is an error.
 */
export async function mount(
  device: string,
  target: string,
  fsType: string,
  options: readonly string[],
  readOnly: boolean,
  deps: MountDeps = {},
): Promise<void> {
  const runner = deps.runner ?? run;
  const existing = await findMount(target);
  if (existing !== undefined) {
    const own = await mountsOfDevice(device);
    if (own.some((e) => e.id === existing.id)) return;
    throw new Error(`${target} already has ${existing.source} (${existing.fsType}) mounted`);
  }
  await mkdir(target, { recursive: true });
  const opts = [...options, ...(readOnly ? ['ro'] : [])];
  await runner('mount', ['-t', fsType, ...(opts.length > 0 ? ['-o', opts.join(',')] : []), device, target], {
    timeoutMs: 120_000,
  });
}

/**
 * Bind-mounts `source` at `target`: a directory for a filesystem volume, a file standing in for the
 * device node of a raw block volume (created empty here). The kernel ignores `ro` on the initial
 * bind (MS_BIND takes no other flags), so a read-only bind is a second step: remount,bind,ro.
 */
export async function bindMount(
  source: string,
  target: string,
  readOnly: boolean,
  deps: MountDeps = {},
): Promise<void> {
  const runner = deps.runner ?? run;
  if (!(await isMountPoint(target))) {
    const info = await stat(source);
    if (info.isDirectory()) {
      await mkdir(target, { recursive: true });
    } else {
      await mkdir(dirname(target), { recursive: true });
      await (await open(target, 'a')).close();
    }
    await runner('mount', ['--bind', source, target], { timeoutMs: 30_000 });
  }
  const current = await findMount(target);
  const isReadOnly = current?.options.includes('ro') ?? false;
  // Also corrects a bind left half-done (bound, not yet remounted) by a plugin that died in between.
  if (readOnly && !isReadOnly)
    await runner('mount', ['-o', 'remount,bind,ro', target], { timeoutMs: 30_000 });
}

/**
 * Unmounts `target` until nothing is mounted there (stacked mounts included). Idempotent: a target
 * that is not a mount point, or does not exist, is fine.
 */
export async function unmount(target: string, deps: MountDeps = {}): Promise<void> {
  const runner = deps.runner ?? run;
  for (let i = 0; i < 16 && (await isMountPoint(target)); i++) {
    await runner('umount', [resolve(target)], { timeoutMs: 120_000 });
  }
  if (await isMountPoint(target)) throw new Error(`${target} is still a mount point after 16 unmounts`);
}
