/**
 * The size limit of a live loop device (`lo_sizelimit`): read from sysfs, raised with
 * `tandem-fsutil loop-sizelimit` (LOOP_GET_STATUS64 → new limit → LOOP_SET_STATUS64; util-linux
 * sets a limit only when attaching). The kernel resizes the device in place and announces it
 * (a change uevent with RESIZE=1); a filesystem on it stays mounted and can then be grown.
 */
import { readFile, realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import { run } from '../../lib/exec.js';
import { locateFsUtil } from '../replica/fsutil.js';
import type { CommandRunner } from './mounts.js';

/** `lo_sizelimit` of a loop device (0: none, the backing file's size decides); undefined for no loop. */
export async function loopSizeLimit(device: string): Promise<number | undefined> {
  try {
    const name = basename(await realpath(device));
    const text = (await readFile(`/sys/block/${name}/loop/sizelimit`, 'utf8')).trim();
    const limit = Number(text);
    return Number.isSafeInteger(limit) && limit >= 0 ? limit : undefined;
  } catch {
    return undefined;
  }
}

export interface SizeLimitResult {
  sizeLimit: number;
  /** The device's capacity afterwards: the limit, or less when the backing file is smaller. */
  sizeBytes: number;
}

export function parseSizeLimitOutput(stdout: string): SizeLimitResult {
  const parsed = JSON.parse(stdout) as { sizeLimit?: unknown; sizeBytes?: unknown };
  const { sizeLimit, sizeBytes } = parsed;
  if (
    typeof sizeLimit !== 'number' ||
    typeof sizeBytes !== 'number' ||
    !Number.isSafeInteger(sizeLimit) ||
    !Number.isSafeInteger(sizeBytes)
  )
    throw new Error(`tandem-fsutil loop-sizelimit printed ${stdout.trim()}`);
  return { sizeLimit, sizeBytes };
}

/**
 * Raises `device`'s size limit to `bytes` (a multiple of 512). The helper refuses to lower it and
 * refuses a device attached without a limit (growing it that way could shrink it instead).
 */
export async function raiseLoopSizeLimit(
  device: string,
  bytes: number,
  runner: CommandRunner = run,
  binary: string = locateFsUtil(),
): Promise<SizeLimitResult> {
  const result = await runner(binary, ['loop-sizelimit', device, String(bytes)], { timeoutMs: 60_000 });
  return parseSizeLimitOutput(result.stdout);
}

/** Reads a sysfs attribute; injectable so the direct-I/O check can be tested without a kernel. */
export type SysfsReader = (path: string) => Promise<string>;
const readSysfs: SysfsReader = (path) => readFile(path, 'utf8');

/** Whether the kernel runs a loop device with direct I/O (`/sys/block/loopN/loop/dio`); undefined for no loop. */
export async function loopDirectIo(
  device: string,
  read: SysfsReader = readSysfs,
): Promise<boolean | undefined> {
  const text = await read(`/sys/block/${basename(device)}/loop/dio`).catch(() => undefined);
  if (text === undefined) return undefined;
  return text.trim() === '1';
}

/**
 * Makes sure `loop` really runs with direct I/O, asking once more (`losetup --direct-io=on`) when
 * it does not. `losetup --direct-io=on` at attach time is only a request: the kernel silently
 * keeps buffered I/O when the backing file cannot do O_DIRECT with the device's block size. Over
 * nbdfuse that would put a second page cache (the FUSE file's) under every reader, and on a
 * migratable volume open on two nodes that cache returns what this node last read, not what the
 * other node wrote since — even to QEMU with cache=none. So a loop device without direct I/O is
 * an error, never a fallback.
 */
export async function ensureLoopDirectIo(
  loop: string,
  runner: CommandRunner = run,
  read: SysfsReader = readSysfs,
): Promise<void> {
  const before = await loopDirectIo(loop, read);
  if (before === undefined) throw new Error(`${loop} is not a loop device (no ${loop}/loop/dio in sysfs)`);
  if (before) return;
  await runner('losetup', ['--direct-io=on', loop], { timeoutMs: 30_000, allowFailure: true });
  if (await loopDirectIo(loop, read)) return;
  throw new Error(
    `the kernel runs ${loop} with buffered I/O (/sys/block/${basename(loop)}/loop/dio is 0 after losetup --direct-io=on): ` +
      `reads would come from this node's page cache of nbdfuse's file and miss what another node wrote; ` +
      `check that the FUSE mount accepts O_DIRECT and that the loop device's logical block size (512) is at least the backing file's`,
  );
}
