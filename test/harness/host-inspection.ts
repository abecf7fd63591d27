/**
 * What the machine shows, for tests that check for leftovers: a file's sha256 (by a child process,
 * so a test serving the file's NBD export never blocks on it), loop devices and their backing
 * files, mounts under a directory, and running processes by their arguments.
 */
import { readdir, readFile } from 'node:fs/promises';
import { parseLosetupList } from '../../driver/node/fuse-loop.js';
import { type MountEntry, readMountInfo } from '../../driver/node/mounts.js';
import { run } from '../../lib/exec.js';

/** A loop device and the file behind it. */
export interface LoopDevice {
  name: string;
  backFile: string;
}

export async function sha256(file: string): Promise<string> {
  return (await run('sha256sum', [file])).stdout.split(' ')[0] ?? '';
}

/** Every loop device with its backing file (`losetup --list`). */
export async function loopDevices(): Promise<LoopDevice[]> {
  return parseLosetupList((await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'])).stdout);
}

/** Names of the loop devices whose backing file path starts with `dir`. */
export async function loopsUnder(dir: string): Promise<string[]> {
  return (await loopDevices()).filter((d) => d.backFile.startsWith(dir)).map((d) => d.name);
}

/** Mounts whose mount point starts with `prefix`. */
export async function mountsUnder(prefix: string): Promise<MountEntry[]> {
  return (await readMountInfo()).filter((m) => m.mountPoint.startsWith(prefix));
}

/** Command lines of running processes whose arguments include every one of `parts`. */
export async function processesWith(...parts: string[]): Promise<{ pid: number; args: string[] }[]> {
  const found: { pid: number; args: string[] }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = await readFile(`/proc/${entry}/cmdline`, 'utf8')
      .then((s) => s.split('\0').filter((a) => a !== ''))
      .catch(() => [] as string[]);
    if (args.length > 0 && parts.every((p) => args.some((a) => a.includes(p))))
      found.push({ pid: Number(entry), args });
  }
  return found;
}

/** A block device's size in bytes (`blockdev --getsize64`). */
export async function blockDeviceBytes(device: string): Promise<number> {
  return Number((await run('blockdev', ['--getsize64', device])).stdout.trim());
}
